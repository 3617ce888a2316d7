"""Scene styles: the same objects (masks, boxes, captions) in every style, another background,
and a real domain shift for the shipped demo model (evaluation on unseen scenes)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.demo.sample_data import SampleConfig, write_sample
from engine.demo.scenes import render_scene
from engine.demo.styles import STYLES, check_style


@pytest.mark.parametrize("style", sorted(STYLES))
def test_a_style_changes_the_background_and_never_the_objects(style):
    for seed in (3, 11, 40):
        plain, styled = render_scene(seed), render_scene(seed, style=style)
        assert styled.caption == plain.caption and styled.image.size == plain.image.size
        assert [(o.category, o.color, o.bbox, o.text) for o in styled.objects] == \
            [(o.category, o.color, o.bbox, o.text) for o in plain.objects]
        assert all(np.array_equal(a.mask, b.mask) for a, b in zip(styled.objects, plain.objects))
        covered = np.any([o.mask for o in plain.objects], axis=0) if plain.objects else np.zeros(plain.image.size[::-1], bool)
        drawn = np.asarray(plain.image)[~covered], np.asarray(styled.image)[~covered]
        if style == "plain":
            assert np.array_equal(*drawn)
        else:  # the background is another one
            assert np.abs(drawn[0].astype(int) - drawn[1].astype(int)).mean() > 3
        assert np.array_equal(np.asarray(styled.image), np.asarray(render_scene(seed, style=style).image))  # seeded


def test_the_sample_records_its_style_and_unknown_styles_are_refused(tmp_path):
    write_sample(tmp_path / "grid", SampleConfig(images=4, images_per_shard=4, style="grid"))
    assert json.loads((tmp_path / "grid" / "ground_truth.json").read_text())["info"]["style"] == "grid"
    with pytest.raises(ValueError, match="known: plain, grid, textured"):
        check_style("sepia")
    with pytest.raises(ValueError, match="unknown scene style"):
        SampleConfig(style="sepia")


def test_the_demo_style_is_a_domain_shift_for_the_shipped_model():
    """The shipped checkpoint (pre-trained on plain scenes) finds the shapes of unseen plain scenes
    far better than those of unseen grid scenes: the demo's loop has something to learn."""
    from engine.config import EngineConfig
    from engine.demo.model_quality import model_quality
    from engine.demo.report import DEMO_CHECKPOINT, DEMO_TRAINING, demo_annotator_table

    settings = EngineConfig.from_dict({"training": DEMO_TRAINING, "model": {"annotator": demo_annotator_table()}}
                                      ).current_model_settings()
    plain = model_quality(DEMO_CHECKPOINT, settings, "plain", count=16)
    grid = model_quality(DEMO_CHECKPOINT, settings, "grid", count=16)
    assert plain["shape_ap50"] > 0.5 and plain["shape_ap50"] > grid["shape_ap50"] + 0.15, (plain, grid)
