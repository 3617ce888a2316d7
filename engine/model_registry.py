"""Which Florence-2 checkpoint is current: the last promoted one, else the configured base.

The base is a checkpoint directory, or ``tiny``/``base``/``large``: a randomly initialised
model of that size, built offline once into ``ROOT/models/base-SIZE`` (deterministic).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from storage.atomic import write_text_atomic
from storage.catalog import Catalog
from storage.layout import DataRoot

BUILT_SIZES = ("tiny", "base", "large")


def base_checkpoint(root: DataRoot, base: str) -> Path:
    """The directory of the configured base model, building a from-config one when asked."""
    if base in BUILT_SIZES:
        from annotators.florence2_checkpoint import build_checkpoint

        target = root.path / "models" / f"base-{base}"
        done = target / "fld-built.json"
        if not done.exists():
            build_checkpoint(target, size=base, seed=0)
            write_text_atomic(json.dumps({"size": base, "seed": 0}), done)
        return target
    path = Path(base).expanduser()
    if not (path / "config.json").exists():
        raise ValueError(f"model.base {base!r} is not a checkpoint directory (no config.json) nor one of "
                         f"{', '.join(BUILT_SIZES)}")
    return path.resolve()


def promoted_model(root: DataRoot, before_round: int) -> Path | None:
    """The checkpoint promoted most recently in a round before ``before_round``, if any."""
    with Catalog(root) as catalog:
        rows = catalog.query("select path from models where promoted and round < ? order by round desc limit 1",
                             [before_round])
    return Path(rows[0][0]) if rows else None


def current_model(root: DataRoot, round_: int, config: Any) -> Path:
    """The model that annotates and is fine-tuned in ``round_``."""
    return promoted_model(root, round_) or base_checkpoint(root, config.model.base)
