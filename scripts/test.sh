#!/usr/bin/env bash
# The test command: installs everything (scripts/setup.sh, Label Studio's own venv, chromium), lints with ruff,
# then runs the whole suite.
# pytest's own exit code is returned, so "no tests collected" (5) fails like any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
# Label Studio (its own venv, tests/review/) installs beside the engine's set-up, not after it
bash scripts/install_label_studio.sh > .label-studio-install.log 2>&1 &
label_studio=$!
# FiftyOne (its own venv, tests/engine/release/test_release_fiftyone.py) likewise
bash scripts/install_fiftyone.sh > .fiftyone-install.log 2>&1 &
fiftyone=$!
bash scripts/setup.sh
bash scripts/install_browser.sh || echo "test.sh: chromium could not be installed; the dashboard browser test will skip" >&2
if ! wait "$label_studio"; then
  echo "test.sh: Label Studio could not be installed (.label-studio-install.log):" >&2
  tail -n 20 .label-studio-install.log >&2
  exit 1
fi
wait "$fiftyone" || echo "test.sh: FiftyOne could not be installed (.fiftyone-install.log); its release test will skip" >&2
export FLD_REQUIRE_LABEL_STUDIO=1  # the review tests run against a real Label Studio: never skipped here
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# lint first (pyproject.toml [tool.ruff]: line length, import order, pyflakes): one line per finding
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
