"""The train / validation split of an image: deterministic per image id, so training, the
evaluation and a release's per-split files agree.

An image is in validation when the first 8 bytes of sha256(f"{seed}:{image_id}") / 2**64 <
``eval_fraction``; all its examples go with it.
"""

from __future__ import annotations

import hashlib


def split_of(image_id: str, eval_fraction: float, seed: int = 0) -> str:
    """``"validation"`` or ``"train"``: a pure function of (seed, image_id)."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return "validation" if int.from_bytes(digest[:8], "big") / 2.0 ** 64 < eval_fraction else "train"
