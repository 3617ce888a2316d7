"""Decorator registry of annotators: ``@register_annotator("name")`` and lookup by name."""

from __future__ import annotations

import importlib
from typing import Any, Callable, TypeVar

from annotators.base import Annotator, AnnotatorError
from storage.plugins import load_plugins

_REGISTRY: dict[str, type[Annotator]] = {}
A = TypeVar("A", bound=type[Annotator])

#: modules imported on every lookup so their ``@register_annotator`` decorators run (then the
#: user's ``FLD_PLUGINS`` modules, see ``storage.plugins``)
BUILTIN_MODULES: tuple[str, ...] = (
    "annotators.florence2",
    "annotators.detector",
    "annotators.grounding",
    "annotators.segmenter",
    "annotators.ocr",
    "annotators.region_captioner",
    "annotators.region_text_matcher",
    "annotators.caption_scorer",
    "annotators.caption_composer",
    "annotators.coco_labels",
    "annotators.sidecar_captions",
)


def register_annotator(name: str) -> Callable[[A], A]:
    """Class decorator: register an :class:`Annotator` subclass under ``name``."""

    def wrap(cls: A) -> A:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"annotator {name!r} is already registered by {_REGISTRY[name].__qualname__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _load_builtins() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    load_plugins()


def annotator_names() -> list[str]:
    """Names of every registered annotator, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def annotator_class(name: str) -> type[Annotator]:
    """The class registered as ``name``; unknown names raise with the list of known ones."""
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise AnnotatorError(f"unknown annotator {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def build_annotator(name: str, **settings: Any) -> Annotator:
    """Construct the annotator ``name`` with its settings (from the engine config)."""
    return annotator_class(name)(**settings)
