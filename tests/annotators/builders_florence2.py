"""Test-size builder of the ``florence2`` annotator (for the annotator contract test)."""

from __future__ import annotations

from pathlib import Path

from annotators.base import Annotator
from annotators.registry import build_annotator
from florence2.checkpoint import build_checkpoint
from tests.annotators.builders import tiny_builder


@tiny_builder("florence2")
def build_florence2(tmp_path: Path) -> Annotator:
    """A tiny random Florence-2 checkpoint saved into ``tmp_path``, loaded by path as production does."""
    model_dir = build_checkpoint(tmp_path / "florence2-tiny", size="tiny", seed=0)
    return build_annotator("florence2", model=str(model_dir), device="cpu", dtype="fp32",
                           batch_size=4, max_new_tokens=8, num_beams=1)
