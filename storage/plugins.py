"""The user's plugin modules: importing them runs their ``@register_annotator`` and
``@register_filter`` decorators.

``FLD_PLUGINS`` holds importable module names separated by commas (the engine config's
``plugins`` list is added to it, so Beam workers and child processes inherit it). Both
registries call :func:`load_plugins` before a lookup; a module that cannot be imported
raises one line naming it and the variable.
"""

from __future__ import annotations

import importlib
import os

PLUGINS_VARIABLE = "FLD_PLUGINS"


def plugin_modules() -> list[str]:
    """The module names listed in ``FLD_PLUGINS`` (empty entries ignored)."""
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def add_plugins(modules: list[str] | tuple[str, ...]) -> None:
    """Add ``modules`` to ``FLD_PLUGINS`` (kept once each, in order) and import them."""
    names = list(dict.fromkeys([*plugin_modules(), *modules]))
    os.environ[PLUGINS_VARIABLE] = ",".join(names)
    load_plugins()


def load_plugins() -> None:
    """Import every module of ``FLD_PLUGINS`` (each once; Python caches imports)."""
    for name in plugin_modules():
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ImportError(f"plugin module {name!r} (from {PLUGINS_VARIABLE}) cannot be imported: {exc}") from None
