"""Builders of the model-free benchmark annotators for the contract test."""

from __future__ import annotations

from pathlib import Path

import tests.fake_annotators  # noqa: F401  (registers noop and dark_patch)
from annotators.registry import build_annotator
from tests.annotators.builders import tiny_builder


@tiny_builder("noop")
def build_noop(folder: Path):
    return build_annotator("noop")


@tiny_builder("dark_patch")
def build_dark_patch(folder: Path):
    return build_annotator("dark_patch", patch=8)


@tiny_builder("sidecar_captions")
def build_sidecar_captions(folder: Path):
    return build_annotator("sidecar_captions")
