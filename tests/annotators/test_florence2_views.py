"""florence2 view consistency (``views``): flips, boxes mapped back, the averaged score, and the
annotator's rows when the test chooses what the model "generates" on each view.

The scripted generations: ``_generate`` is replaced by a function that looks at each image it is
given, recognises which item and which view it is (the images are asymmetric, so every view
differs), and returns a chosen text with chosen token statistics: every label token has
probability ``p`` and every coordinate mass 1, so a box's own score is exactly ``p``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from annotators.base import ImageBatch, ImageItem
from annotators.registry import build_annotator
from florence2.checkpoint import build_checkpoint
from florence2.model import Generation
from florence2.scores import TokenStats
from florence2.views import box_to_upright, consistency_scores, fused_views, label_key, view_image


# ----------------------------------------------------------------------- pure functions
def test_boxes_map_back_exactly_and_flips_are_involutions():
    assert box_to_upright([60, 10, 90, 30], "hflip", 100, 50) == [10.0, 10.0, 40.0, 30.0]
    assert box_to_upright([60.25, 10.5, 90.75, 30], "hflip", 101, 50) == [10.25, 10.5, 40.75, 30.0]
    assert box_to_upright([10, 5, 40, 20], "vflip", 100, 50) == [10.0, 30.0, 40.0, 45.0]
    for view in ("hflip", "vflip"):
        box = [3.5, 7.0, 61.0, 44.25]
        assert box_to_upright(box_to_upright(box, view, 100, 50), view, 100, 50) == box
    with pytest.raises(ValueError, match="unknown view"):
        box_to_upright([0, 0, 1, 1], "rot90", 10, 10)


def test_view_images_are_flips_of_the_same_size():
    image = Image.fromarray(np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3))
    array = np.asarray(image)
    assert np.array_equal(np.asarray(view_image(image, "hflip")), array[:, ::-1])
    assert np.array_equal(np.asarray(view_image(image, "vflip")), array[::-1])


def test_consistency_scores_follow_the_formula():
    original = [("Square", [0, 0, 10, 10], 0.8), ("circle", [20, 20, 30, 30], 0.5), ("star", [40, 0, 50, 10], 0.4)]
    hflip = [(" square ", [0, 0, 10, 10], 0.6),       # same label up to case and white space, IoU 1
             ("square", [0, 0, 10, 6], 0.95),         # IoU 0.6: the IoU-1 box is the match
             ("triangle", [20, 20, 30, 30], 0.9),     # another label: no confirmation
             ("star", [40, 0, 50, 5], 0.3),           # IoU exactly 0.5: confirms at view_iou 0.5
             ("boat", [70, 0, 80, 10], 0.99)]         # only in the view: ignored
    scores, confirmed = consistency_scores(original, [hflip], 0.5)
    assert scores == pytest.approx([(0.8 + 0.6) / 2, 0.5 / 2, (0.4 + 0.3) / 2])
    assert confirmed == [2]
    scores, confirmed = consistency_scores(original, [hflip], 0.51)
    assert scores == pytest.approx([0.7, 0.25, 0.2]) and confirmed == [1]
    # two views: divided by 3; one view with nothing confirms nothing
    scores, confirmed = consistency_scores(original, [hflip, []], 0.5)
    assert scores == pytest.approx([1.4 / 3, 0.5 / 3, 0.7 / 3]) and confirmed == [2, 0]
    # a box fewer views confirm than asked scores 0
    scores, _ = consistency_scores(original, [hflip, []], 0.5, min_confirmations=1)
    assert scores == pytest.approx([1.4 / 3, 0.0, 0.7 / 3])
    assert consistency_scores(original, [hflip, []], 0.5, min_confirmations=2)[0] == [0.0, 0.0, 0.0]
    # equal IoU: the higher score is the match
    tie = [("circle", [20, 20, 30, 30], 0.2), ("circle", [20, 20, 30, 30], 0.7)]
    assert consistency_scores(original[1:2], [tie], 0.5)[0] == pytest.approx([0.6])
    assert consistency_scores([], [hflip], 0.5) == ([], [0])
    assert label_key("  Red\tSquare ") == "red square"


# ------------------------------------------------------------ the annotator, scripted
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_checkpoint(tmp_path_factory.mktemp("f2v") / "tiny", seed=0)


def _image(width: int, height: int, colour: str) -> Image.Image:
    """An image no flip leaves unchanged: a coloured block in the top-left corner."""
    image = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(image).rectangle((0, 0, width // 3, height // 3), fill=colour)
    return image


def _items() -> list[ImageItem]:
    return [ImageItem(image_id="a", image=_image(100, 50, "red"), width=100, height=50),
            ImageItem(image_id="b", image=_image(200, 80, "blue"), width=200, height=80)]


def _generation(boxes: list[tuple[str, list[int], float]]) -> Generation:
    """An OD generation of ``(label, 4 location bins, p)`` boxes, each scoring exactly ``p``."""
    pieces, logp, mass = ["<s>"], [0.0], [None]
    for label, bins, p in boxes:
        pieces += [label, *(f"<loc_{b}>" for b in bins)]
        logp += [float(np.log(p)), 0.0, 0.0, 0.0, 0.0]
        mass += [None, 1.0, 1.0, 1.0, 1.0]
    pieces.append("</s>")
    logp.append(0.0)
    mass.append(None)
    return Generation("".join(pieces), TokenStats(tuple(pieces), tuple(logp), tuple(mass)))


def scripted(model_dir, monkeypatch, outputs, **settings):
    """The annotator with ``_generate`` answering ``outputs[(image_id, view)]`` (view None: the image
    itself); records each call's ``(image_id, view)`` list in the returned ``calls``."""
    annotator = build_annotator("florence2", model=str(model_dir), device="cpu", tasks=["OD"], **settings)
    annotator.load()
    known = {}
    for item in _items():
        for view in (None, "hflip", "vflip"):
            image = item.image if view is None else view_image(item.image, view)
            known[np.asarray(image).tobytes() + bytes(str(image.size), "ascii")] = (item.image_id, view)
    calls: list[list[tuple[str, str | None]]] = []

    def generate(prompts, images):
        assert all(p == "<OD>" for p in prompts)
        which = [known[np.asarray(image).tobytes() + bytes(str(image.size), "ascii")] for image in images]
        calls.append(which)
        return [_generation(outputs.get(w, [])) for w in which]

    monkeypatch.setattr(annotator.model, "generate", generate)
    return annotator, calls


# image "a" is 100 x 50 px: x bin b -> int((b + 0.5) / 10) px, y bin b -> int((b + 0.5) / 20) px
OUTPUTS = {
    ("a", None): [("square", [100, 200, 400, 600], 0.8),     # [10, 10, 40, 30]
                  ("circle", [500, 0, 700, 400], 0.5),       # [50, 0, 70, 20]
                  ("circle", [100, 700, 300, 999], 0.4)],    # [10, 35, 30, 49]
    ("a", "hflip"): [("Square", [600, 200, 900, 600], 0.6),  # [60, 10, 90, 30] -> back [10, 10, 40, 30]
                     ("triangle", [300, 0, 500, 400], 0.9),  # the circle's place, another label
                     ("circle", [100, 700, 300, 999], 0.7),  # the 2nd circle's place NOT mirrored: no match
                     ("star", [0, 0, 200, 200], 0.99)],      # only in the mirror
    ("b", None): [("square", [0, 0, 500, 500], 0.3)],        # [0, 0, 100, 40]
    ("b", "hflip"): [("square", [500, 0, 999, 500], 0.9)],   # [100, 0, 199, 40] -> back [1, 0, 100, 40]
}


def _but_score(rows):
    """Every column but the score (and the creation time)."""
    return [{k: v for k, v in r.items() if k not in ("score", "created_at")} for r in rows]


def _by_box(rows, image_id):
    return {(r["text"], tuple(r["bbox"])): r for r in rows if r["image_id"] == image_id}


def test_mirror_confirms_boxes_and_only_original_boxes_make_rows(model_dir, monkeypatch):
    plain, plain_calls = scripted(model_dir, monkeypatch, OUTPUTS, batch_size=2)
    before = plain.annotate(ImageBatch(_items(), round=1))
    annotator, calls = scripted(model_dir, monkeypatch, OUTPUTS, batch_size=2, views=["hflip"])
    rows = annotator.annotate(ImageBatch(_items(), round=1))
    # one generate call: both images, each followed by its mirror
    assert plain_calls == [[("a", None), ("b", None)]]
    assert calls == [[("a", None), ("a", "hflip"), ("b", None), ("b", "hflip")]]
    a = _by_box(rows, "a")
    assert set(a) == {("square", (10.0, 10.0, 40.0, 30.0)), ("circle", (50.0, 0.0, 70.0, 20.0)),
                      ("circle", (10.0, 35.0, 30.0, 49.0))}  # the star of the mirror made no row
    assert a[("square", (10.0, 10.0, 40.0, 30.0))]["score"] == pytest.approx((0.8 + 0.6) / 2)
    assert a[("circle", (50.0, 0.0, 70.0, 20.0))]["score"] == pytest.approx(0.5 / 2)
    assert a[("circle", (10.0, 35.0, 30.0, 49.0))]["score"] == pytest.approx(0.4 / 2)
    b = _by_box(rows, "b")  # mirrored back [1, 0, 100, 40]: IoU 0.99
    assert b[("square", (0.0, 0.0, 100.0, 40.0))]["score"] == pytest.approx((0.3 + 0.9) / 2)
    # without views: each box's own score; with: the same rows (ids, order, columns) but the score
    assert {k: r["score"] for k, r in _by_box(before, "a").items()} == pytest.approx({
        ("square", (10.0, 10.0, 40.0, 30.0)): 0.8, ("circle", (50.0, 0.0, 70.0, 20.0)): 0.5,
        ("circle", (10.0, 35.0, 30.0, 49.0)): 0.4})
    assert [r["annotation_id"] for r in rows] == [r["annotation_id"] for r in before]
    assert _but_score(rows) == _but_score(before)
    assert annotator.stats["generations"] == plain.stats["generations"] == 2
    assert annotator.stats["view_generations"] == 2 and annotator.stats["view_confirmed/hflip"] == 2
    assert annotator.stats["parse_failures"] == annotator.stats["view_parse_failures"] == 0


def test_two_views_average_over_three_and_batches_hold_whole_images(model_dir, monkeypatch):
    outputs = {("a", None): [("square", [100, 200, 400, 600], 0.8)],
               ("a", "hflip"): [("square", [600, 200, 900, 600], 0.6)],
               ("a", "vflip"): [("square", [100, 400, 400, 800], 0.3)],  # [10, 20, 40, 40] -> back [10, 10, 40, 30]
               ("b", None): [("square", [0, 0, 500, 500], 0.3)]}           # b's views find nothing
    annotator, calls = scripted(model_dir, monkeypatch, outputs, batch_size=1, views=["vflip", "hflip"])
    assert annotator.settings.views == ("hflip", "vflip")
    rows = annotator.annotate(ImageBatch(_items(), round=1))
    assert calls == [[("a", None), ("a", "hflip"), ("a", "vflip")], [("b", None), ("b", "hflip"), ("b", "vflip")]]
    assert [r["score"] for r in rows] == pytest.approx([(0.8 + 0.6 + 0.3) / 3, 0.3 / 3])
    assert annotator.stats["view_parse_failures/OD"] == 2 and annotator.stats["parse_failures"] == 0


def test_view_iou_sets_the_confirmation_threshold(model_dir, monkeypatch):
    outputs = {("a", None): [("square", [100, 200, 400, 600], 0.8)],       # [10, 10, 40, 30]
               ("a", "hflip"): [("square", [600, 200, 800, 600], 0.6)]}    # back [20, 10, 40, 30]: IoU 2/3
    for view_iou, want in ((0.6, 0.7), (0.7, 0.4)):
        annotator, _ = scripted(model_dir, monkeypatch, outputs, views=["hflip"], view_iou=view_iou)
        (row,) = annotator.annotate(ImageBatch(_items()[:1], round=1))
        assert row["score"] == pytest.approx(want)
    # a box the mirror does not confirm scores 0 once one confirmation is asked; the row stays
    annotator, _ = scripted(model_dir, monkeypatch, outputs, views=["hflip"], view_iou=0.7, view_min_confirmations=1)
    (row,) = annotator.annotate(ImageBatch(_items()[:1], round=1))
    assert row["score"] == 0.0


def test_fused_views_cluster_one_box_per_view_and_weight_by_score():
    original = [("square", [0, 0, 10, 10], 0.6), ("circle", [20, 20, 30, 30], 0.4)]
    hflip = [("Square", [2, 0, 12, 10], 0.2),        # IoU 8/12 with the square, but the next box is closer
             ("square", [0, 0, 10, 10], 0.1),        # IoU 1: joins the square
             ("star", [40, 0, 50, 10], 0.5)]         # only here: one box, below 1 + 1 confirmation
    vflip = [("star", [41, 0, 51, 10], 0.3),         # with the mirror's star: a new, fused box
             ("circle", [60, 60, 70, 70], 0.9)]      # far from the circle: its own lone cluster
    clusters = fused_views(original, [hflip, vflip], 0.5, min_confirmations=1)
    by_label = {}
    for c in clusters:
        by_label.setdefault(label_key(c.label), []).append(c)
    assert len(clusters) == 3  # the further square and the far circle, of one view alone: dropped
    (square,) = by_label["square"]
    assert square.original == 0 and square.in_view == (True, False)
    assert square.box == pytest.approx([0, 0, 10, 10]) and square.score == pytest.approx((0.6 + 0.1) / 3)
    # the fused box is the score-weighted mean
    (moved,) = fused_views(original[:1], [hflip[:1]], 0.5)
    assert moved.box == pytest.approx([(0.6 * 0 + 0.2 * 2) / 0.8, 0, (0.6 * 10 + 0.2 * 12) / 0.8, 10])
    assert moved.score == pytest.approx(0.8 / 2)
    circle = by_label["circle"]
    assert [(c.original, c.score) for c in circle] == [(1, 0.0)]  # the original's circle stays, at 0
    (star,) = by_label["star"]
    assert star.original is None and star.in_view == (True, True)
    assert star.box == pytest.approx([(0.5 * 40 + 0.3 * 41) / 0.8, 0, (0.5 * 50 + 0.3 * 51) / 0.8, 10])
    assert star.score == pytest.approx(0.8 / 3)
    # without a confirmation asked, every box is a cluster; the originals' come first, in order
    clusters = fused_views(original, [hflip, vflip], 0.5)
    assert [c.original for c in clusters][:2] == [0, 1] and len(clusters) == 5
    assert all(c.original is None for c in clusters[2:])
    assert fused_views([], [[], []], 0.5) == []


def test_view_fusion_adds_what_two_views_found_and_fuses_the_rest(model_dir, monkeypatch):
    outputs = {("a", None): [("square", [100, 200, 400, 600], 0.8)],          # [10, 10, 40, 30]
               ("a", "hflip"): [("square", [600, 200, 900, 600], 0.4),         # back [10, 10, 40, 30]
                                ("star", [0, 0, 200, 200], 0.6)],              # back [80, 0, 100, 10]
               ("a", "vflip"): [("star", [800, 800, 999, 999], 0.3)]}          # back [80, 0, 99, 10]
    annotator, _ = scripted(model_dir, monkeypatch, outputs, batch_size=1, views=["hflip", "vflip"],
                            view_fusion=True, view_min_confirmations=1)
    rows = annotator.annotate(ImageBatch(_items()[:1], round=1))
    a = {r["text"]: r for r in rows}
    assert set(a) == {"square", "star"}
    assert a["square"]["bbox"] == pytest.approx([10, 10, 40, 30]) and a["square"]["score"] == pytest.approx(1.2 / 3)
    assert a["star"]["bbox"] == pytest.approx([80, 0.3 / 0.9, (0.6 * 100 + 0.3 * 99) / 0.9, 10])  # vflip: back [80, 1, 99, 10]
    assert a["star"]["score"] == pytest.approx(0.9 / 3)
    assert a["star"]["kind"] == "region" and a["star"]["region_type"] == "object"
    assert annotator.stats["view_added"] == 1
    # rescoring only (the default) keeps the original's boxes alone
    plain, _ = scripted(model_dir, monkeypatch, outputs, batch_size=1, views=["hflip", "vflip"], view_min_confirmations=1)
    assert [r["text"] for r in plain.annotate(ImageBatch(_items()[:1], round=1))] == ["square"]


def test_views_settings_are_validated(model_dir):
    for change, message in [({"views": "hflip"}, "list of view names"), ({"views": ["rot90"]}, "rot90"),
                            ({"views": ["hflip", "hflip"]}, "distinct"), ({"view_iou": 0}, "view_iou"),
                            ({"view_iou": 1.5}, "view_iou"), ({"view_iou": True}, "view_iou"),
                            ({"views": ["hflip"], "tasks": ["CAPTION"]}, "box task"),
                            ({"views": ["hflip"], "view_min_confirmations": 2}, "at most the number of views"),
                            ({"views": ["hflip"], "view_min_confirmations": -1}, "view_min_confirmations"),
                            ({"views": ["hflip"], "view_fusion": "yes"}, "view_fusion")]:
        with pytest.raises(ValueError, match=message):
            build_annotator("florence2", model=str(model_dir), **change)
    settings = build_annotator("florence2", model=str(model_dir)).settings
    assert settings.views == () and settings.view_iou == 0.5
