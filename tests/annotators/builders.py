"""Registry of test-size builders: one per registered annotator, used by the contract test.

Each builder takes a ``tmp_path`` (a fresh folder for checkpoints it saves) and returns a
ready annotator built exactly as production builds it (``build_annotator(name, model=DIR)``
after ``save_pretrained`` of a test-size model into DIR). The contract test fails when a
registered annotator has no builder here.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Callable

from annotators.base import Annotator

Builder = Callable[[Path], Annotator]
BUILDERS: dict[str, Builder] = {}
BUILDER_MODULES = (
    "tests.annotators.builders_florence2",
    "tests.annotators.builders_vision",
    "tests.annotators.builders_language",
    "tests.annotators.builders_bench",
)


def tiny_builder(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register the test-size builder of annotator ``name``."""

    def wrap(fn: Builder) -> Builder:
        BUILDERS[name] = fn
        return fn

    return wrap


def all_builders() -> dict[str, Builder]:
    for module in BUILDER_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    return dict(BUILDERS)
