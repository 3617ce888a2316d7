"""The pixels of existing scenes never change: the demo's measured figures depend on them.

The digests were taken from the renderer before the scenes gained their detailed texts (issue
31): the same seed and style must give the same image bytes, shard bytes and noisy labels, in
this project's environment (its Pillow, libjpeg and FreeType).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from engine.demo.sample_data import SampleConfig, write_sample
from engine.demo.scenes import render_scene

SEEDS = (0, 3, 11, 3000009, 10000)
PIXELS = {
    "plain": "455ae1e6f68ad230de4f888825db4c9788f2bc314875af4f2902e504567dd513",
    "grid": "fd98ac63489f71af92936b49bb1fd50bd67399877cd4760a96562f595ed9ca09",
    "textured": "fdaae45a755fccde395fb4910c380a1df1a60f4a15c34b33ba1355963aecd40d",
}
#: ``fld sample --images 8 --seed 3 --style grid``
SAMPLE = {
    "shards/shard-00000.tar": "32a5f44e80160e0c357aae0eaa6f0d10c50a2684291867683303c42340f44364",
    "noisy_labels.json": "b8fec617740b3def36b8c20b51259e7067db31e43ae716c6e2e43d2c521a88f3",
}


@pytest.mark.parametrize("style", sorted(PIXELS))
def test_rendered_pixels_are_unchanged(style):
    digest = hashlib.sha256()
    for seed in SEEDS:
        digest.update(np.asarray(render_scene(seed, style=style).image).tobytes())
    assert digest.hexdigest() == PIXELS[style]


def test_sample_shards_and_noisy_labels_are_unchanged(tmp_path):
    write_sample(tmp_path, SampleConfig(images=8, seed=3, style="grid"))
    assert {name: hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() for name in SAMPLE} == SAMPLE
