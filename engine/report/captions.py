"""Image-to-text retrieval of a round's curated captions: R@1 and mean image-text similarity.

Why a report function and not the annotator's rows: R@1 asks, for each image, whether its own
caption is the most similar among all captions, so it needs the similarity of every image
against every caption (an images x captions matrix). The ``caption_scorer`` rows hold only
each caption against its own image, and emitting the matrix from the annotator would cost
quadratic rows and depend on how images were batched. So this module loads the round's
CLIP-style model with the same settings the annotator ran with and computes the matrix over a
bounded, deterministic sample of the curated set:

* **model**: ``[annotators.caption_scorer]`` of the round's resolved config (``rounds.config``,
  saved in ``rounds/round=R/config.json``), else ``model``/``device``/``dtype`` of
  ``[annotators.region_text_matcher]`` (the same kind of checkpoint); ``settings`` overrides.
  Built through ``build_annotator("caption_scorer", ...)``, so embeddings are exactly the
  annotator's (:mod:`annotators.clip_features`).
* **sample**: the first ``max_images`` images (by ``image_id``, a sha256: deterministic and
  unrelated to content) of round R's curated set (``curated_round = R``) that have a
  top-level caption with text; the candidates are every such caption of those images.
  Images whose bytes cannot be read back are left out (``note`` says how many).
* **similarity** ``s(i, j) = (1 + cos(image_i, caption_j)) / 2``, unitless, in [0, 1].
* **R@1**: the fraction of sampled images whose most similar candidate (argmax over the
  candidates; a tie goes to the earlier caption in ``(image_id, annotation_id)`` order) is
  one of their own captions. It falls as the sample grows, so ``chance_r_at_1`` (the R@1 of
  a random ranking: the mean over images of own captions / candidates) is given beside it.
* **mean_similarity**: the mean of ``s`` over the candidate captions, each with its own image.

The figures are given over all granularities together and per granularity (the candidates
limited to captions of that granularity, over the images that have one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from annotators.clip_features import similarity01
from annotators.registry import build_annotator
from engine.dataset.locations import image_locations, read_images
from engine.report.stats import GRANULARITY_NAMES, open_catalog
from storage.catalog import Catalog
from storage.decode import decode_rgb
from storage.layout import DataRoot

SCORER = "caption_scorer"
#: settings of the region-text matcher that also describe the caption scorer's model
SHARED_SETTINGS = ("model", "device", "dtype")
METRICS = ("images", "captions", "r_at_1", "chance_r_at_1", "mean_similarity")

_CAPTIONS_SQL = ("select image_id, annotation_id, granularity, text from curated where curated_round = ? "
                 "and kind = 'caption' and parent_id is null and trim(coalesce(text, '')) <> ''")


def retrieval_metrics(similarity: np.ndarray, owner: np.ndarray) -> dict[str, float | int]:
    """R@1, chance R@1 and mean similarity of ``similarity`` (images x captions, in [0, 1]),
    where ``owner[j]`` is the row of caption ``j``'s image. Images that own no caption are
    left out; with no image left every figure but the counts is None."""
    similarity = np.asarray(similarity, np.float64)
    owner = np.asarray(owner, np.int64)
    counts = np.bincount(owner, minlength=similarity.shape[0]) if len(owner) else np.zeros(similarity.shape[0], int)
    rows = np.flatnonzero(counts > 0)
    out: dict[str, Any] = {"images": int(len(rows)), "captions": int(len(owner)), "r_at_1": None,
                           "chance_r_at_1": None, "mean_similarity": None}
    if len(rows) == 0:
        return out
    best = np.argmax(similarity[rows], axis=1)  # the first maximum: ties go to the earlier caption
    out["r_at_1"] = float(np.mean(owner[best] == rows))
    out["chance_r_at_1"] = float(np.mean(counts[rows] / len(owner)))
    out["mean_similarity"] = float(np.mean(similarity[owner, np.arange(len(owner))]))
    return out


def scorer_settings(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The caption scorer's settings from a resolved engine config (plain data): its own
    ``annotators.caption_scorer`` table, else the model settings of ``region_text_matcher``,
    else None."""
    annotators = (config or {}).get("annotators") or {}
    if isinstance(annotators.get(SCORER), Mapping):
        return dict(annotators[SCORER])
    matcher = annotators.get("region_text_matcher")
    if isinstance(matcher, Mapping) and matcher.get("model"):
        return {k: matcher[k] for k in SHARED_SETTINGS if k in matcher}
    return None


def round_scorer_settings(catalog: Catalog, round_: int) -> dict[str, Any] | None:
    """:func:`scorer_settings` of round ``round_``'s config in the rounds table (None when not recorded)."""
    rows = catalog.query("select config from rounds where round = ?", [int(round_)])
    return scorer_settings(json.loads(rows[0][0])) if rows and rows[0][0] else None


def _embed_images(scorer: Any, catalog: Catalog, ids: list[str]) -> tuple[dict[str, np.ndarray], str]:
    """image_id -> embedding of the images whose bytes read back, streamed in the scorer's
    batches; and a note on those that did not."""
    locations = image_locations(catalog, ids)
    out: dict[str, np.ndarray] = {}
    batch: list[tuple[str, Any]] = []

    def flush() -> None:
        for (image_id, _), emb in zip(batch, scorer.embed_images([image for _, image in batch])):
            out[image_id] = emb
        batch.clear()

    note = ""
    try:
        for location, data in read_images(locations):
            batch.append((location.image_id, decode_rgb(data)))
            if len(batch) >= scorer.batch_size:
                flush()
    except Exception as exc:  # a moved shard costs its images, not the report
        note = f"some images could not be read ({exc}); "
    flush()
    missing = len(ids) - len(out)
    return out, (note + f"{missing} sampled images left out; " if missing else "")


def caption_retrieval(source: Catalog | DataRoot | str | Path, round_: int, max_images: int = 200,
                      settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """R@1 and mean similarity of round ``round_``'s curated captions (module docstring):
    ``{"round", "available", "note", "model", "version", "overall": {METRICS}, "by_granularity":
    {granularity as printed: {METRICS}}}``; ``available`` is False (and ``note`` says why) when
    no model is configured or it cannot be built."""
    if isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be an integer >= 1, got {max_images!r}")
    result: dict[str, Any] = {"round": int(round_), "available": False, "note": "", "model": None, "version": None,
                              "overall": retrieval_metrics(np.zeros((0, 0)), np.zeros(0)), "by_granularity": {}}
    with open_catalog(source) as catalog:
        settings = dict(settings) if settings is not None else round_scorer_settings(catalog, round_)
        if not settings:
            result["note"] = (f"n/a: no CLIP-style model in round {int(round_)}'s config "
                              "([annotators.caption_scorer] or [annotators.region_text_matcher])")
            return result
        try:
            scorer = build_annotator(SCORER, **settings)
            scorer.load()
        except Exception as exc:  # a missing checkpoint must not cost the whole report
            result["note"] = f"n/a: the caption scorer could not be built: {exc}"
            return result
        result.update(model=str(scorer.model_dir), version=scorer.version)
        ids = [r[0] for r in catalog.query(f"select image_id from ({_CAPTIONS_SQL}) group by image_id "
                                           "order by image_id limit ?", [int(round_), max_images])]
        captions = catalog.query(f"select * from ({_CAPTIONS_SQL}) where list_contains(?, image_id) "
                                 "order by image_id, annotation_id", [int(round_), ids]) if ids else []
        images, note = _embed_images(scorer, catalog, ids)
    kept = [c for c in captions if c[0] in images]
    order = [i for i in ids if i in images]
    row = {image_id: k for k, image_id in enumerate(order)}
    if kept:
        sims = similarity01(np.stack([images[i] for i in order]) @ scorer.embed_texts([c[3] for c in kept]).T)
        owner = np.array([row[c[0]] for c in kept])
        result["overall"] = retrieval_metrics(sims, owner)
        for granularity in sorted({c[2] for c in kept}, key=lambda g: (g not in GRANULARITY_NAMES, str(g))):
            cols = np.array([k for k, c in enumerate(kept) if c[2] == granularity])
            name = GRANULARITY_NAMES.get(granularity, granularity or "unknown")
            result["by_granularity"][name] = retrieval_metrics(sims[:, cols], owner[cols])
    result["available"] = True
    result["note"] = (f"{note}{len(order)} images, {len(kept)} curated captions; similarity (1 + cos) / 2 of "
                      f"{Path(result['model']).name}")
    return result


def retrieval_grid(result: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows of :func:`caption_retrieval`'s figures (overall first), numbers to 3 places."""
    def cells(name: str, m: Mapping[str, Any]) -> list[str]:
        return [name] + [str(m[k]) if k in ("images", "captions") else ("n/a" if m[k] is None else f"{m[k]:.3f}")
                         for k in METRICS]

    grid = [cells("all", result["overall"])] + [cells(g, m) for g, m in result["by_granularity"].items()]
    return ["granularity", "images", "captions", "R@1", "chance R@1", "mean similarity"], grid
