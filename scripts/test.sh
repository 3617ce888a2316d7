#!/usr/bin/env bash
# The test command: installs everything (scripts/setup.sh), lints with ruff, then runs the whole suite.
# pytest's own exit code is returned, so "no tests collected" (5) fails like any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_browser.sh || echo "test.sh: chromium could not be installed; the dashboard browser test will skip" >&2
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# lint first (pyproject.toml [tool.ruff]: line length, import order, pyflakes): one line per finding
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
