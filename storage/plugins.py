"""The user's plugin modules: importing them runs their ``@register_annotator`` and
``@register_filter`` decorators.

``FLD_PLUGINS`` holds importable module names separated by commas (the engine config's
``plugins`` list is added to it, so Beam workers and child processes inherit it). Both
registries call :func:`load_plugins` before a lookup; a module that cannot be imported
raises :class:`PluginError` (a ``ValueError``: the user's to fix), one line naming it and where
it was named (the variable, or the config's ``plugins``, which is left out of the variable then).
"""

from __future__ import annotations

import importlib
import os

PLUGINS_VARIABLE = "FLD_PLUGINS"


class PluginError(ValueError):
    """A plugin module named by the user cannot be imported."""


def _import(name: str, where: str) -> None:
    try:
        importlib.import_module(name)
    except (ImportError, ValueError, TypeError) as exc:  # missing, empty or relative ("." first) names
        raise PluginError(f"{where} names the module {name!r}, which cannot be imported ({exc}); install it or "
                          f"put it on PYTHONPATH, or remove it from {where}") from None


def plugin_modules() -> list[str]:
    """The module names listed in ``FLD_PLUGINS`` (empty entries ignored)."""
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def add_plugins(modules: list[str] | tuple[str, ...], where: str = "plugins") -> None:
    """Import ``modules`` (named by ``where``, for the message) and add them to ``FLD_PLUGINS``
    (kept once each, in order); the variable is left as it was when one cannot be imported."""
    for name in modules:
        _import(name, where)
    names = list(dict.fromkeys([*plugin_modules(), *modules]))
    os.environ[PLUGINS_VARIABLE] = ",".join(names)
    load_plugins()


def load_plugins() -> None:
    """Import every module of ``FLD_PLUGINS`` (each once; Python caches imports)."""
    for name in plugin_modules():
        _import(name, PLUGINS_VARIABLE)
