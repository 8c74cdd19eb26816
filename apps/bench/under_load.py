#!/usr/bin/env python3
"""Training speed on an idle machine against the same run with competing busy processes.

Runs a short `vit train` probe (or any `vit`/`lra train` command: the speed is the median of the
logged training speeds in metrics.jsonl after the first line) alternately idle and beside `--competitors` copies of `sh -c 'while :; do :; done'`, for each
environment variant given with --variant, and reports the median speeds and the loaded / idle ratio.

    apps/bench/under_load.py --rounds 3 --json under_load.json
    apps/bench/under_load.py --variant default= --variant passive=OMP_WAIT_POLICY=passive

Run it on an otherwise idle machine: anything else running makes both columns wrong.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

DEFAULT_PROBE = ("build/bin/vit train --preset fmnist-tiny --max-steps 200 --no-flip --crop-padding 0 "
                 "--log-every 20 --val-limit 1000 --test-limit 1000")


def parse_variant(text):
    """'name=K1=V1,K2=V2' -> (name, {K1: V1, K2: V2}); 'name=' is the unchanged environment."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant {text!r}: expected NAME=[VAR=VALUE[,VAR=VALUE...]]")
    env = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"--variant {text!r}: {item!r} is not VAR=VALUE")
        env[key] = value
    return name, env


def speed_of(out_dir):
    """The median of the logged training speeds after the first log line (a --max-steps run writes no summary)."""
    path = os.path.join(out_dir, "metrics.jsonl")
    speeds = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") != "train":
                continue
            for key in ("images_per_s", "tokens_per_s"):
                if key in rec:
                    speeds.setdefault(key, []).append(float(rec[key]))
    for key, values in speeds.items():
        if len(values) >= 2:
            return key, statistics.median(values[1:])
    raise SystemExit(f"{path}: fewer than two training log lines with a speed (raise --max-steps or lower --log-every)")


def run_probe(command, env_extra, competitors):
    out_dir = tempfile.mkdtemp(prefix="mixgrad-under-load-")
    env = dict(os.environ, **env_extra)
    busy = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(competitors)]
    try:
        start = time.monotonic()
        result = subprocess.run(command.split() + ["--out", out_dir, "--overwrite"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.monotonic() - start
    finally:
        for p in busy:
            p.kill()
            p.wait()
    try:
        if result.returncode != 0:
            raise SystemExit(f"probe failed (exit {result.returncode}): {command}\n{result.stderr[-2000:]}")
        key, value = speed_of(out_dir)
        return key, value, wall
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--command", default=DEFAULT_PROBE, help="probe command (--out and --overwrite are appended)")
    ap.add_argument("--variant", action="append", type=parse_variant,
                    help="NAME=[VAR=VALUE,...] environment variant (repeatable; default: the unchanged environment)")
    ap.add_argument("--competitors", type=int, default=1, help="busy processes beside the loaded runs")
    ap.add_argument("--rounds", type=int, default=2, help="idle/loaded pairs per variant (order alternates)")
    ap.add_argument("--json", help="write the records here")
    args = ap.parse_args()
    if args.rounds < 1 or args.competitors < 1:
        ap.error("--rounds and --competitors must be at least 1")
    variants = args.variant or [("default", {})]
    records = []
    for name, env in variants:
        idle, loaded = [], []
        unit = None
        for r in range(args.rounds):
            order = [0, args.competitors] if r % 2 == 0 else [args.competitors, 0]
            for competitors in order:
                unit, value, wall = run_probe(args.command, env, competitors)
                (loaded if competitors else idle).append(value)
                print(f"{name} round {r + 1} {'loaded' if competitors else 'idle  '}: {value:9.1f} "
                      f"{unit} ({wall:.1f} s)", flush=True)
        rec = {"variant": name, "env": env, "unit": unit, "competitors": args.competitors,
               "idle": idle, "loaded": loaded, "idle_median": statistics.median(idle),
               "loaded_median": statistics.median(loaded)}
        rec["loaded_over_idle"] = rec["loaded_median"] / rec["idle_median"]
        print(f"{name}: idle {rec['idle_median']:.1f}, loaded {rec['loaded_median']:.1f} {unit}: "
              f"{100 * rec['loaded_over_idle']:.0f} % of idle", flush=True)
        records.append(rec)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"command": args.command, "nproc": os.cpu_count(), "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
