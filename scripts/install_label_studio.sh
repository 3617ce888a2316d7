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

MIGRATED="$VENV/migrated"

# a database with every migration applied: the tests' servers start on a copy of it (seconds, not a minute)
migrate() {
  local site work
  site="$("$VENV/bin/python" -c 'import label_studio, os; print(os.path.dirname(label_studio.__file__))')"
  work="$(mktemp -d)"
  env -u PYTHONPATH -u DJANGO_SETTINGS_MODULE LABEL_STUDIO_BASE_DATA_DIR="$work" \
    LABEL_STUDIO_DATABASE_NAME="$work/label_studio.sqlite3" PYTHONPATH="$site" \
    DJANGO_SETTINGS_MODULE=core.settings.label_studio "$VENV/bin/python" -c \
    'import django; django.setup(); from django.core.management import call_command; call_command("migrate", "--no-color", verbosity=0)' \
    > "$work/migrate.log" 2>&1 || { cat "$work/migrate.log" >&2; rm -rf "$work"; return 1; }
  mkdir -p "$MIGRATED"
  mv "$work/label_studio.sqlite3" "$MIGRATED/label_studio.sqlite3"
  rm -rf "$work"
}

if [ -f "$MARKER" ] && [ -x "$VENV/bin/label-studio" ] && [ "$(cat "$MARKER")" = "label-studio==$LABEL_STUDIO_VERSION" ] \
   && [ -f "$MIGRATED/label_studio.sqlite3" ]; then
  echo "label-studio $LABEL_STUDIO_VERSION already installed in $VENV"
  exit 0
fi

rm -f "$MARKER"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
# sentry-sdk 3 refuses the options Label Studio 1.23 passes it at start ("Unknown option 'send_default_pii'")
"$VENV/bin/python" -m pip install --quiet "label-studio==$LABEL_STUDIO_VERSION" "sentry-sdk<3"
installed="$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("label-studio"))')"
if [ "$installed" != "$LABEL_STUDIO_VERSION" ]; then
  echo "expected label-studio $LABEL_STUDIO_VERSION in $VENV, found $installed" >&2
  exit 1
fi
rm -rf "$MIGRATED"
migrate
echo "label-studio==$LABEL_STUDIO_VERSION" > "$MARKER"
echo "label-studio $installed installed in $VENV"
