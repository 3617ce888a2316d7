"""Region-text matcher: a CLIP-style model picks the best of the candidate texts of a region.

For every object region row already made for the image (``item.context["annotations"]``,
``kind = "region"``, ``region_type = "object"``, source not in ``exclude_sources``) the
candidate texts are, in this order, deduplicated case-insensitively:

1. the region's own text (e.g. the detector's category name);
2. the texts of ``region`` rows from ``captioner_source`` whose ``parent_id`` is the region;
3. the noun phrases (:mod:`annotators.noun_phrases`) of those captions.

Each candidate is scored against the region's crop (:func:`annotators.crops.crop_region`):
``logit = exp(logit_scale) * cos(image_embed, text_embed)``, softmax over the region's
candidates (:func:`choose_best`). One ``region`` row per region with candidates:
``text`` = the best candidate, ``score`` = its softmax probability (0..1, 1.0 when it is the
only candidate), ``bbox`` = the region's box (absolute pixels of the upright image,
``[x0, y0, x1, y1]``), ``parent_id`` = the region's ``annotation_id``.
Loads any ``AutoModel`` with ``get_text_features``/``get_image_features``/``logit_scale``
(CLIP and its relatives) with its ``AutoProcessor``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.clip_features import image_embeddings, text_embeddings
from annotators.crops import crop_region
from annotators.noun_phrases import NounPhraseExtractor
from annotators.pretrained import PretrainedAnnotator
from annotators.region_captioner import DERIVED_SOURCES, MARGIN_UNIT, object_regions
from annotators.registry import register_annotator
from annotators.text_utils import dedupe
from hf.settings import ModelSettings, check_bool, check_range, check_str, str_tuple
from storage.schema import KIND_REGION, annotation_row

__all__ = ["RegionTextMatcher", "RegionTextMatcherSettings", "choose_best", "dedupe"]


@dataclass(frozen=True)
class RegionTextMatcherSettings(ModelSettings):
    """Settings of the ``region_text_matcher`` annotator (``[annotators.region_text_matcher]``).

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`.
    ``batch_size``: regions per forward pass.
    ``margin``: fraction of the box size added on each side of the crop, in [0, 10].
    ``captioner_source``: source whose region captions are candidates.
    ``use_phrases``: also offer the noun phrases of those captions.
    ``spacy_model``: spaCy pipeline for noun chunks ("" = the rule-based chunker).
    ``exclude_sources``: region sources that are not matched.
    """

    batch_size: int = 16
    margin: float = 0.1
    captioner_source: str = "region_captioner"
    use_phrases: bool = True
    spacy_model: str = ""
    exclude_sources: tuple[str, ...] = field(default=DERIVED_SOURCES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("margin", self.margin, 0, 10, MARGIN_UNIT)
        check_str("captioner_source", self.captioner_source)
        check_bool("use_phrases", self.use_phrases)
        check_str("spacy_model", self.spacy_model)
        object.__setattr__(self, "exclude_sources", str_tuple("exclude_sources", self.exclude_sources))


def choose_best(candidates: Sequence[str], scores: Sequence[float]) -> tuple[str, float]:
    """The candidate with the highest score and its softmax probability over all candidates.

    ``scores`` are logits, one per candidate; ties go to the earlier candidate. Raises
    ``ValueError`` when the lengths differ, there are no candidates, or a score is not finite.
    """
    if len(candidates) != len(scores):
        raise ValueError(f"{len(candidates)} candidates but {len(scores)} scores")
    if not candidates:
        raise ValueError("choose_best needs at least one candidate")
    values = [float(s) for s in scores]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"scores must be finite, got {values!r}")
    best = max(range(len(values)), key=lambda i: (values[i], -i))
    top = values[best]
    total = sum(math.exp(v - top) for v in values)
    return candidates[best], 1.0 / total


@register_annotator("region_text_matcher")
class RegionTextMatcher(PretrainedAnnotator):
    """Picks, per object region, the candidate text most similar to its crop (CLIP-style)."""

    kinds = (KIND_REGION,)
    needs = ("annotations",)
    reads = (Rows(KIND_REGION, derived=False, region_type="object"),  # the regions, and the candidate texts
             Rows(KIND_REGION, derived=True, region_type="object", source=RegionTextMatcherSettings.captioner_source))
    emits = (Rows(KIND_REGION, derived=True, region_type="object"),)
    settings_class = RegionTextMatcherSettings
    model_class = "AutoModel"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.phrases = NounPhraseExtractor(self.settings.spacy_model)

    def candidates(self, item: ImageItem, region: Mapping[str, Any]) -> list[str]:
        """Candidate texts of ``region`` from ``item``'s context (see the module docstring)."""
        captions = [row.get("text") or "" for row in item.context.get("annotations", ())
                    if row.get("source") == self.settings.captioner_source and row.get("kind") == KIND_REGION
                    and row.get("parent_id") == region.get("annotation_id")]
        texts = [region.get("text") or "", *captions]
        if self.settings.use_phrases:
            texts += [p.text for caption in captions for p in self.phrases(caption)]
        return dedupe(texts)

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        jobs = []
        for item in batch.items:
            for region in object_regions(item, self.settings.exclude_sources):
                candidates = self.candidates(item, region)
                if candidates:
                    jobs.append((item, region, candidates))
        rows = []
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            crops = [crop_region(item.image.convert("RGB"), region["bbox"], self.settings.margin)
                     for item, region, _ in chunk]
            for (item, region, candidates), logits in zip(chunk, self.logits(crops, [c for *_, c in chunk])):
                text, prob = choose_best(candidates, logits)
                rows.append(annotation_row(
                    image_id=item.image_id, round_=batch.round, source=self.name, source_version=self.version,
                    kind=KIND_REGION, region_type="object", text=text, bbox=[float(v) for v in region["bbox"]],
                    parent_id=region["annotation_id"], score=prob,
                ))
        return rows

    def logits(self, images: Sequence[Any], candidates: Sequence[Sequence[str]]) -> list[list[float]]:
        """Per image, ``exp(logit_scale) * cosine`` against each of its own candidate texts."""
        self.load()
        texts = [text for group in candidates for text in group]
        text_emb = text_embeddings(self._model, self._processor, texts, self._device)
        image_emb = image_embeddings(self._model, self._processor, images, self._device, self._dtype)
        scale = self._model.logit_scale.detach().float().exp()
        out, offset = [], 0
        for i, group in enumerate(candidates):
            sims = text_emb[offset:offset + len(group)] @ image_emb[i]
            out.append((scale * sims).tolist())
            offset += len(group)
        return out
