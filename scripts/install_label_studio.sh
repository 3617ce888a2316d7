#!/usr/bin/env bash
# Installs a real Label Studio server into its own virtual environment, ./.venv-label-studio.
# Label Studio's pins do not resolve beside the engine's (Prefect, fastapi), so it never shares .venv.
# The review round-trip tests (tests/review/) start this server on 127.0.0.1; they skip while it is absent.
#   PYTHON   the interpreter that creates the venv (default: python3)
# Idempotent: a finished install leaves .venv-label-studio/.fld-installed, and a later run with the
# same version pinned is a fast no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
LABEL_STUDIO_VERSION="1.23.2"
VENV=.venv-label-studio
MARKER="$VENV/.fld-installed"

if [ -f "$MARKER" ] && [ -x "$VENV/bin/label-studio" ] && [ "$(cat "$MARKER")" = "label-studio==$LABEL_STUDIO_VERSION" ]; then
  echo "label-studio $LABEL_STUDIO_VERSION already installed in $VENV"
  exit 0
fi

rm -f "$MARKER"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION"
installed="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("label-studio"))')"
if [ "$installed" != "$LABEL_STUDIO_VERSION" ]; then
  echo "expected label-studio $LABEL_STUDIO_VERSION in $VENV, found $installed" >&2
  exit 1
fi
echo "label-studio==$LABEL_STUDIO_VERSION" > "$MARKER"
echo "label-studio $installed installed in $VENV"
