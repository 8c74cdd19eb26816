#!/usr/bin/env python3
"""One JSON line for a mixgrad training run's speed, from its metrics.jsonl: the median images/s (or tokens/s) of
the train records after the first (which includes start-up), labelled with the precision given.

Usage: python3 apps/bench/peers/metrics_rate.py RUN/metrics.jsonl PRECISION   (scripts/gpu-check vit uses it)
"""
import json
import statistics
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, precision = sys.argv[1], sys.argv[2]
    records = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    sys.exit(f"metrics_rate.py: {path} line {n} is not JSON ({e})")
    except OSError as e:
        sys.exit(f"metrics_rate.py: cannot read {path}: {e.strerror}")
    train = [r for r in records if r.get("kind") == "train"]
    key = "images_per_s" if any("images_per_s" in r for r in train) else "tokens_per_s"
    rates = [r[key] for r in train[1:] if key in r]
    if not rates:
        sys.exit(f"metrics_rate.py: {path} has fewer than two train records with {key}")
    print(json.dumps({"framework": "mixgrad", "precision": precision, key: statistics.median(rates),
                      "records": len(rates), "last_step": train[-1].get("step"), "source": path}))


if __name__ == "__main__":
    main()
