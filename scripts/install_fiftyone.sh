#!/usr/bin/env bash
# Installs FiftyOne into its own virtual environment, ./.venv-fiftyone, for the release test that reads
# a release's COCO with FiftyOne's importer (tests/engine/release/test_release_fiftyone.py skips while
# it is absent). FiftyOne never shares .venv: its pins do not resolve beside the engine's (FiftyOne
# 1.x pins pymongo~=4.9.2, Beam's constraint here is 4.20.0, so pip would fall back to FiftyOne 0.25),
# and it brings opencv-python-headless, which overwrites the cv2 package of the engine's opencv-python.
# Only FiftyOne's importers are used: no MongoDB is needed (fiftyone-db's own download of one may
# fail offline; the install still succeeds).
#   PYTHON   the interpreter that creates the venv (default: python3)
# Idempotent: a finished install leaves .venv-fiftyone/.fld-installed, and a later run with the same
# version pinned is a fast no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
FIFTYONE_VERSION="1.22.1"
VENV=.venv-fiftyone
MARKER="$VENV/.fld-installed"

if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "fiftyone==$FIFTYONE_VERSION" ] && [ -x "$VENV/bin/python" ]; then
  echo "fiftyone $FIFTYONE_VERSION already installed in $VENV"
  exit 0
fi

rm -f "$MARKER"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# pycocotools: FiftyOne decodes COCO RLE masks (the releases' segmentations) with it
"$VENV/bin/python" -m pip install --quiet "fiftyone==$FIFTYONE_VERSION" pycocotools
# the importer the test uses, imported the way the test does: no database is started or reached
FIFTYONE_DO_NOT_TRACK=true "$VENV/bin/python" -c 'import fiftyone.utils.coco, pycocotools.mask'
installed="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("fiftyone"))')"
if [ "$installed" != "$FIFTYONE_VERSION" ]; then
  echo "expected fiftyone $FIFTYONE_VERSION in $VENV, found $installed" >&2
  exit 1
fi
echo "fiftyone==$FIFTYONE_VERSION" > "$MARKER"
echo "fiftyone $installed installed in $VENV"
