#!/usr/bin/env bash
# Issue 11 §5, one targeted experiment: at quick scale the hard loss's tolerance does not rise
# with τ. Hypothesis: Eq. 9 keeps K = 8.19 % of the 5,000-entry bank (410 entries), fewer than
# one class (500 images), so its negatives are mostly same-class neighbours whatever τ is, and
# pushing all of them away pins tolerance at its floor. If so, a larger K (half the bank) lets
# τ buy tolerance again. Runs the hard loss at τ = 0.3 and 1.0 with --hard-fraction 0.5.
# Usage: scripts/fidelity.sh DATA_ROOT [OUT=runs/fidelity] [PARALLEL=2]
set -euo pipefail
DATA=${1:?usage: scripts/fidelity.sh DATA_ROOT [OUT] [PARALLEL]}
OUT=${2:-runs/fidelity}
PAR=${3:-2}
PY=${PY:-.venv/bin/python}
exec "$PY" -m cl_analysis sweep --profile quick --data-root "$DATA" --losses hard \
    --temperatures 0.3 1.0 --hard-fraction 0.5 --workers "$PAR" --out "$OUT" --no-progress
