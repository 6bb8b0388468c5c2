#!/usr/bin/env bash
# Temperature dynamics on the quick profile (issue 11 §3): constant τ vs Kukleva's cosine τ vs a
# learnable τ vs MACL's alignment-driven τ, on CIFAR-10 and on its long-tailed subset (exponential
# class profile, imbalance ratio 100, seeded), one run each, evaluated with per-class accuracy.
# Usage: scripts/tau_dynamics.sh DATA_ROOT [OUT=runs/tau-dynamics] [PARALLEL=2]
set -euo pipefail
DATA=${1:?usage: scripts/tau_dynamics.sh DATA_ROOT [OUT] [PARALLEL]}
OUT=${2:-runs/tau-dynamics}
PAR=${3:-2}
PY=${PY:-.venv/bin/python}
THREADS=$(( $(nproc) / PAR )); [ "$THREADS" -ge 1 ] || THREADS=1
jobs=()
for data in balanced long_tail; do
  extra=""; [ "$data" = long_tail ] && extra="--long-tail-ratio 100"
  jobs+=("constant-$data --temperature 0.3 $extra")
  jobs+=("cosine-$data --temperature-schedule cosine --temperature-min 0.1 --temperature-max 1.0 --temperature-period 40 --temperature 0.3 $extra")
  jobs+=("learnable-$data --temperature-schedule learnable --temperature 0.3 --temperature-min 0.05 --temperature-max 1.0 $extra")
  jobs+=("macl-$data --temperature-schedule macl --temperature 0.2 $extra")
done
printf '%s\n' "${jobs[@]}" | xargs -P "$PAR" -I{} bash -c '
  set -- {}; name=$1; shift
  if [ -f "'"$OUT"'/$name/eval.json" ]; then echo "$name: done"; exit 0; fi
  resume=""; [ -f "'"$OUT"'/$name/checkpoint.pt" ] && resume="--resume"
  '"$PY"' -m cl_analysis pretrain --profile quick --data-root "'"$DATA"'" --loss info_nce \
    --num-threads '"$THREADS"' --out "'"$OUT"'/$name" --evaluate --no-progress $resume "$@" \
    > "'"$OUT"'/$name.log" 2>&1 && echo "$name: finished" || { echo "$name: FAILED (see '"$OUT"'/$name.log)"; exit 1; }'
