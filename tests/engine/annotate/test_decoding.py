"""A batch's images decode on several threads with the outcomes of one thread."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest
from PIL import Image

from engine.annotate import elements
from engine.annotate.decoding import AUTO_DECODE_THREADS_MAX, decode_batch, decode_thread_count
from engine.annotate.elements import ImageJob
from engine.annotate.handler import AnnotatorModelHandler
from engine.annotate.plan import AnnotateRequest
from engine.config import RunnerSection
from storage.decode import DecodeLimits
from tests.fake_annotators import DarkPatchAnnotator  # noqa: F401  (registers dark_patch)


def _jpeg(seed: int, size: tuple[int, int] = (64, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


def _batch() -> list[ImageJob]:
    data = [_jpeg(1), b"not an image", _jpeg(2, (400, 300)), _jpeg(3), _jpeg(4)[:200], _jpeg(5)]
    return [ImageJob("s0", ("a",), key=f"k{i}", name=f"k{i}.jpg", image_id=f"id{i}", data=d, meta={},
                     context_rows=[]) for i, d in enumerate(data)]


def test_threads_decode_the_same_pixels_and_refuse_the_same_images(monkeypatch):
    limits = DecodeLimits(max_pixels=300 * 300)
    names: list[str] = []
    original = elements.decode_rgb

    def recording(data, limits):
        names.append(threading.current_thread().name)
        return original(data, limits)

    monkeypatch.setattr(elements, "decode_rgb", recording)
    one_ok, one_refused = decode_batch(_batch(), limits, 1)
    assert not any(n.startswith("fld-decode") for n in names)
    names.clear()
    many_ok, many_refused = decode_batch(_batch(), limits, 3)
    assert any(n.startswith("fld-decode") for n in names)  # the pool did the work
    assert [j.key for j in many_ok] == [j.key for j in one_ok] == ["k0", "k3", "k5"]
    for a, b in zip(one_ok, many_ok):
        assert np.array_equal(np.asarray(a.item(limits).image), np.asarray(b.item(limits).image))
    assert [(j.key, r) for j, r in many_refused] == [(j.key, r) for j, r in one_refused]
    assert [j.key for j, _ in many_refused] == ["k1", "k2", "k4"]
    assert "not an image" in many_refused[0][1] and "too large" in many_refused[1][1]


def _decode_in_child(queue) -> None:
    ok, refused = decode_batch(_batch(), DecodeLimits(), 3)
    queue.put(([j.key for j in ok], [j.key for j, _ in refused]))


def test_a_forked_worker_decodes_on_threads_of_its_own():
    import multiprocessing

    decode_batch(_batch(), DecodeLimits(), 3)  # this process's pool exists now
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_decode_in_child, args=(queue,))
    child.start()
    try:
        keys = queue.get(timeout=60)  # the inherited pool has no threads: without a fresh one this hangs
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert keys == (["k0", "k2", "k3", "k5"], ["k1", "k4"])


def test_decode_thread_count_is_automatic_at_zero_and_refuses_negatives():
    assert 1 <= decode_thread_count(0) <= AUTO_DECODE_THREADS_MAX
    assert decode_thread_count(7) == 7
    with pytest.raises(ValueError, match="decode_threads must be >= 0"):
        decode_thread_count(-1)
    with pytest.raises(ValueError, match="decode_threads must be >= 0"):
        AnnotateRequest(round=0, annotators={"dark_patch": {}}, decode_threads=-2)
    with pytest.raises(ValueError, match="runner.decode_threads"):
        RunnerSection(decode_threads=-1)
    with pytest.raises(ValueError, match="decode_threads must be >= 0"):
        AnnotatorModelHandler("dark_patch", {}, decode_threads=-1)
    assert AnnotatorModelHandler("dark_patch", {}).decode_threads == 0  # resolved on the worker
