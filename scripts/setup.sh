#!/usr/bin/env bash
# Create .venv (if missing) and install cl-analysis with its dev tools. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  # On the project's reference machine (x86_64, Python 3.11) these releases lie on disk;
  # elsewhere pip picks the newest torch/torchvision pair for the platform.
  if [ "$(uname -m)" = "x86_64" ] && .venv/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    .venv/bin/python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
  else
    .venv/bin/python -m pip install --quiet torch torchvision
  fi
fi
# PYTHONWARNINGS: setuptools' build backend prints an informational banner about editable
# installs to every user; nothing in it needs acting on.
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "cl-analysis installed in $(pwd)/.venv"
