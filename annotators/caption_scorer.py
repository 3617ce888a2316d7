"""Caption scorer: a CLIP-style model scores every caption of the round against its image.

Florence-2's FLD-900M was curated with an image-text similarity model; this annotator gives
curation that similarity. For every top-level caption row already made for the image
(``item.context["annotations"]``: ``kind = "caption"``, no ``parent_id``, non-empty text, a
source other than this one, in ``sources`` and ``granularities`` when they are set) it emits
one ``caption`` row:

* ``parent_id`` = the caption's ``annotation_id``; ``granularity`` = the caption's;
* ``text`` = null (the parent holds the text; a null text also keeps every reader of captions,
  e.g. ``grounding``, from taking this row for a caption);
* ``score`` = the image-text similarity ``(1 + cos(e_image, e_text)) / 2``, where ``e_*`` are
  the model's projected embeddings (:mod:`annotators.clip_features`) of the whole image (the
  processor's resize and centre crop) and of the caption (truncated to the text tower's
  length). Unitless, in [0, 1]: 0.5 = orthogonal, 1 = same direction. No ``logit_scale``
  (temperature) and no softmax, so a score does not depend on the other captions. For
  OpenAI's CLIP ViT-B/32 a matching caption has a cosine of about 0.3 (score ~0.65) and an
  unrelated one about 0.1-0.15 (score ~0.56).

The ``caption_similarity`` rule (``filters/caption_similarity.py``) drops captions whose score
is below its ``min_similarity`` and consumes these rows. This is a separate annotator from
``region_text_matcher`` (which may load the same checkpoint) because it reads other rows and
so runs in another stage: after every caption maker (``engine.annotate.stages``), while the
matcher waits for the region captioner; each module stays one job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.clip_features import image_embeddings, similarity01, text_embeddings
from annotators.pretrained import PretrainedAnnotator
from annotators.registry import register_annotator
from hf.settings import ModelSettings, str_tuple
from storage.schema import GRANULARITIES, KIND_CAPTION, annotation_row

__all__ = ["CaptionScorer", "CaptionScorerSettings"]


@dataclass(frozen=True)
class CaptionScorerSettings(ModelSettings):
    """Settings of the ``caption_scorer`` annotator (``[annotators.caption_scorer]``).

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`
    (a CLIP-style checkpoint directory, e.g. the region-text matcher's).
    ``batch_size``: images per forward pass (their captions are embedded in passes of the same
    size). ``sources``: caption sources scored (empty: every source). ``granularities``:
    caption granularities scored (empty: all of brief, detailed, more_detailed).
    """

    batch_size: int = 32
    sources: tuple[str, ...] = ()
    granularities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sources", str_tuple("sources", self.sources))
        granularities = str_tuple("granularities", self.granularities, "granularities")
        if bad := [g for g in granularities if g not in GRANULARITIES]:
            raise ValueError(f"granularities must be a list of {GRANULARITIES}, got {bad!r}")
        object.__setattr__(self, "granularities", granularities)


@register_annotator("caption_scorer")
class CaptionScorer(PretrainedAnnotator):
    """Scores each caption of the round by its image-text similarity (CLIP-style)."""

    kinds = (KIND_CAPTION,)
    needs = ("annotations",)
    reads = (Rows(KIND_CAPTION, derived=False),)
    emits = (Rows(KIND_CAPTION, derived=True),)  # a score row under each caption
    settings_class = CaptionScorerSettings
    model_class = "AutoModel"

    def captions(self, item: ImageItem) -> list[Mapping[str, Any]]:
        """The caption rows of ``item``'s context this annotator scores (module docstring)."""
        sources, granularities = self.settings.sources, self.settings.granularities
        return [row for row in item.context.get("annotations", ())
                if row.get("kind") == KIND_CAPTION and row.get("parent_id") is None
                and (row.get("text") or "").strip() and row.get("source") != self.name
                and (not sources or row.get("source") in sources)
                and (not granularities or row.get("granularity") in granularities)]

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        jobs = [(item, captions) for item in batch.items if (captions := self.captions(item))]
        rows = []
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start:start + self.batch_size]
            image_emb = self.embed_images([item.image for item, _ in chunk])
            texts = list(dict.fromkeys(row["text"] for _, captions in chunk for row in captions))
            text_emb = self.embed_texts(texts)
            column = {text: j for j, text in enumerate(texts)}
            for i, (item, captions) in enumerate(chunk):
                for caption in captions:
                    cosine = float(image_emb[i] @ text_emb[column[caption["text"]]])
                    rows.append(annotation_row(
                        image_id=item.image_id, round_=batch.round, source=self.name, source_version=self.version,
                        kind=KIND_CAPTION, granularity=caption.get("granularity"), parent_id=caption["annotation_id"],
                        score=min(1.0, max(0.0, similarity01(cosine))),
                    ))
        return rows

    def embed_images(self, images: Sequence[Any]) -> Any:
        """``(len(images), d)`` float32 numpy array of unit-length embeddings of PIL images
        (converted to RGB), in passes of ``batch_size``."""
        import numpy as np

        self.load()
        parts = [image_embeddings(self._model, self._processor, [im.convert("RGB") for im in images[s:s + self.batch_size]],
                                  self._device, self._dtype).cpu().numpy() for s in range(0, len(images), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    def embed_texts(self, texts: Sequence[str]) -> Any:
        """``(len(texts), d)`` float32 numpy array of unit-length text embeddings, in passes of
        ``batch_size``."""
        import numpy as np

        self.load()
        parts = [text_embeddings(self._model, self._processor, list(texts[s:s + self.batch_size]), self._device)
                 .cpu().numpy() for s in range(0, len(texts), self.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
