#!/usr/bin/env bash
# Installs fld-engine and everything it needs into ./.venv.
#   TORCH_SPEC   the torch requirement installed first (default: torch==2.13.0, the CPU build
#                this machine has on disk; e.g. TORCH_SPEC="torch --index-url
#                https://download.pytorch.org/whl/cu124" on a GPU machine)
#   PYTHON       the interpreter that creates the venv (default: python3)
#   FLD_EXTRAS   extras to install (default: all,test,bench)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
FLD_EXTRAS="${FLD_EXTRAS:-all,test,bench}"

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first, so no dependency resolution can pull a multi-GB CUDA build by accident
# shellcheck disable=SC2086
.venv/bin/python -m pip install --quiet $TORCH_SPEC
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[${FLD_EXTRAS}]"
echo "fld-engine installed in .venv ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
