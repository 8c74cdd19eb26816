#!/usr/bin/env bash
# Training throughput of mixgrad's `lra train` against the PyTorch peer (lra_train_torch.py) on the same ListOps data,
# the two run in turn PAIRS times so that drift of the machine's speed hits both (docs/benchmarks/lra-cpu.md).
#
#   apps/bench/peers/lra_compare.sh PRESET DATA_DIR [PAIRS] [STEPS] [-- extra flags for both, e.g. --batch-size 8]
#
# mixgrad: `lra train --max-steps STEPS --log-every 5` in a scratch folder; its tok/s is the median of the progress
# intervals after the first (the first holds the warm-up). PyTorch: `--warmup-steps 2 --steps STEPS-5`, median step.
# Both count valid tokens (not padding, not a class token) per second. Prints one JSON object per run.
set -euo pipefail
cd "$(dirname "$0")/../../.."
preset=${1:?preset (mini or paper)} data=${2:?ListOps data folder (basic_train.tsv ...)}
pairs=${3:-3} steps=${4:-30}
shift $(( $# < 4 ? $# : 4 ))
[ "${1:-}" = "--" ] && shift
extra=("$@")
lra=${LRA:-build/bin/lra}
python=${PYTHON:-/usr/bin/python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

mixgrad_run() {
  "$lra" train --task listops --preset "$preset" --data "$data" --device cpu --max-steps "$steps" --log-every 5 \
    --out "$scratch/run" --overwrite --quiet "${extra[@]}" >/dev/null
  "$python" - "$scratch/run/metrics.jsonl" "$preset" <<'EOF'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rates = [r["tokens_per_s"] for r in recs if r.get("kind") == "train"][1:]
print(json.dumps({"peer": "mixgrad", "preset": sys.argv[2], "tokens_per_s": statistics.median(rates),
                  "intervals": len(rates)}))
EOF
}

torch_run() {
  "$python" apps/bench/peers/lra_train_torch.py --preset "$preset" --data "$data" --device cpu \
    --warmup-steps 2 --steps $((steps - 5)) "${extra[@]}" 2>/dev/null
}

for _ in $(seq "$pairs"); do
  mixgrad_run
  torch_run
done
