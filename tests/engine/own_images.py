"""A new user's own images, as issue 32 tried them: a folder of JPEG photographs with a ``KEY.txt``
caption beside each ``KEY.jpg`` (the WebDataset convention), ingested, annotated by
``sidecar_captions`` and curated through the ``fld`` command line with no config at all."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CAPTIONS = ("a brown dog running on a sandy beach", "two people sitting at a wooden table",
            "a red car parked next to a tall building")
ROUND = 7


def write_photos(folder: Path, images: int = 6) -> list[str]:
    """``images`` noisy JPEG photographs ``IMG_NNNN.jpg``, each with its ``IMG_NNNN.txt`` caption;
    returns the keys."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(32)
    keys = []
    for i in range(images):
        key = f"IMG_{i:04d}"
        pixels = (rng.random((96, 128, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).save(folder / f"{key}.jpg", quality=85)
        (folder / f"{key}.txt").write_text(CAPTIONS[i % len(CAPTIONS)] + "\n")
        keys.append(key)
    return keys


def fld(*args: str) -> int:
    from flows.main import main

    return main(list(args))


@pytest.fixture(scope="module")
def own_images(tmp_path_factory) -> dict:
    """``{"photos", "root", "keys", "curate_err"}``: the folder, the data root with round 7
    annotated and curated by the CLI without a config, and what ``fld curate`` wrote to stderr."""
    tmp = tmp_path_factory.mktemp("own-images")
    photos, root = tmp / "photos", tmp / "fld-data"
    keys = write_photos(photos)
    assert fld("ingest", "--root", str(root), "--quiet", str(photos)) == 0
    assert fld("annotate", "--root", str(root), "--round", str(ROUND), "--annotator", "sidecar_captions",
               "--quiet") == 0
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = fld("curate", "--root", str(root), "--round", str(ROUND))
    assert code == 0, err.getvalue()
    return {"photos": photos, "root": root, "keys": keys, "curate_err": err.getvalue()}
