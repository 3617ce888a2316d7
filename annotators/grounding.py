"""Phrase grounding annotator: Grounding DINO boxes for the noun phrases of each caption.

For every ``caption`` row already made for the image (``item.context["annotations"]``), the
caption's noun phrases (:mod:`annotators.noun_phrases`) are joined into Grounding DINO's
prompt format, ``"phrase one. phrase two."`` (lowercased), and the model
(``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor``, e.g.
``IDEA-Research/grounding-dino-tiny``) is run on the image with it.

Each query box is given to one phrase: a phrase's score for a box is the mean of the
sigmoid token probabilities over the phrase's tokens (found through the tokenizer's offset
mapping). A box is kept when its highest token probability over all phrase tokens is above
``box_threshold`` (Grounding DINO's rule) and its best phrase's score is above
``text_threshold``. One ``phrase`` row per kept box:

- ``text`` = the phrase as written in the caption, ``span_start``/``span_end`` = its
  character span in the caption (``caption[span_start:span_end] == text``);
- ``parent_id`` = the caption's ``annotation_id``; ``granularity`` = the caption's;
- ``bbox = [x0, y0, x1, y1]`` in absolute pixels of the upright image (the processor's
  ``post_process_grounded_object_detection`` scaled to ``(height, width)``), clipped to the
  image; boxes empty after clipping are dropped; ``score`` = the phrase score (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.noun_phrases import NounPhraseExtractor, Phrase
from annotators.pretrained import PretrainedAnnotator
from annotators.registry import register_annotator
from hf.settings import ModelSettings, check_positive_int, check_range, check_str, subset_tuple
from storage.geometry import clip_box
from storage.schema import GRANULARITIES, KIND_CAPTION, KIND_PHRASE, annotation_row


@dataclass(frozen=True)
class GroundingSettings(ModelSettings):
    """Settings of the ``grounding`` annotator (the ``[annotators.grounding]`` config table).

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`.
    ``batch_size``: (image, caption) pairs per forward pass.
    ``box_threshold``, ``text_threshold``: in [0, 1] (see the module docstring).
    ``spacy_model``: spaCy pipeline for noun chunks ("" = the built-in rule-based chunker).
    ``max_phrases``: phrases per caption sent to the model (the first ones in text order).
    ``granularities``: caption granularities to ground.
    """

    batch_size: int = 4
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    spacy_model: str = ""
    max_phrases: int = 32
    granularities: tuple[str, ...] = field(default=GRANULARITIES)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("max_phrases", self.max_phrases)
        check_range("box_threshold", self.box_threshold, 0.0, 1.0)
        check_range("text_threshold", self.text_threshold, 0.0, 1.0)
        check_str("spacy_model", self.spacy_model)
        object.__setattr__(self, "granularities", subset_tuple("granularities", self.granularities, GRANULARITIES))


@dataclass(frozen=True)
class Query:
    """One (image, caption) pair: the phrases and where each sits in the prompt."""

    item: ImageItem
    caption: Mapping[str, Any]
    phrases: tuple[Phrase, ...]
    prompt: str
    prompt_spans: tuple[tuple[int, int], ...]


def build_prompt(phrases: Sequence[Phrase]) -> tuple[str, tuple[tuple[int, int], ...]]:
    """Grounding DINO prompt ``"p1. p2."`` (lowercased, dots inside phrases blanked) and the
    ``[start, end)`` character span of each phrase inside the prompt."""
    parts, spans, pos = [], [], 0
    for phrase in phrases:
        text = phrase.text.lower().replace(".", " ")
        spans.append((pos, pos + len(text)))
        parts.append(text)
        pos += len(text) + 2  # ". "
    return ". ".join(parts) + ".", tuple(spans)


def token_phrase_mask(offsets: Any, spans: Sequence[tuple[int, int]], num_phrases: int) -> Any:
    """Bool tensor ``(num_phrases, seq_len)``: token ``j`` belongs to phrase ``p``.

    ``offsets`` is the tokenizer's ``(seq_len, 2)`` character offset mapping of the prompt;
    special and padding tokens have empty offsets and belong to no phrase.
    """
    import torch

    mask = torch.zeros(num_phrases, offsets.shape[0], dtype=torch.bool)
    for j, (s, e) in enumerate(offsets.tolist()):
        if e <= s:
            continue
        for p, (ps, pe) in enumerate(spans):
            if ps <= s and e <= pe:
                mask[p, j] = True
                break
    return mask


@register_annotator("grounding")
class Grounding(PretrainedAnnotator):
    """Grounds caption noun phrases with Grounding DINO, emitting ``phrase`` rows."""

    kinds = (KIND_PHRASE,)
    needs = ("annotations",)
    reads = (Rows(KIND_CAPTION, derived=False),)
    emits = (Rows(KIND_PHRASE, derived=True),)
    settings_class = GroundingSettings
    model_class = "AutoModelForZeroShotObjectDetection"

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.phrases = NounPhraseExtractor(self.settings.spacy_model)

    def queries(self, item: ImageItem) -> list[Query]:
        """The (image, caption) pairs to ground: captions of a configured granularity with phrases."""
        out = []
        for row in item.context.get("annotations", ()):
            if row.get("kind") != KIND_CAPTION or not row.get("text"):
                continue
            if row.get("granularity") not in self.settings.granularities:
                continue
            phrases = tuple(self.phrases(row["text"])[: self.settings.max_phrases])
            if phrases:
                prompt, spans = build_prompt(phrases)
                out.append(Query(item, row, phrases, prompt, spans))
        return out

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        queries = [q for item in batch.items for q in self.queries(item)]
        rows: dict[str, dict[str, Any]] = {}
        for start in range(0, len(queries), self.batch_size):
            for row in self._ground(queries[start:start + self.batch_size], batch.round):
                if row["annotation_id"] not in rows or row["score"] > rows[row["annotation_id"]]["score"]:
                    rows[row["annotation_id"]] = row
        return list(rows.values())

    def _ground(self, queries: list[Query], round_: int) -> list[dict[str, Any]]:
        import torch

        inputs = self._processor(
            images=[q.item.image.convert("RGB") for q in queries], text=[q.prompt for q in queries],
            return_tensors="pt", padding=True, truncation=True, return_offsets_mapping=True,
            max_length=int(getattr(self._model.config, "max_text_len", 256)),
        )
        offsets = inputs.pop("offset_mapping")
        inputs = self.model_inputs(inputs)
        with torch.inference_mode():
            outputs = self._model(**inputs)
        outputs.logits = outputs.logits.float()
        outputs.pred_boxes = outputs.pred_boxes.float()
        # threshold -1 keeps every query, so results stay in query order; we filter below
        boxes = self._processor.post_process_grounded_object_detection(
            outputs, input_ids=inputs["input_ids"], threshold=-1.0, text_threshold=0.0,
            target_sizes=[(q.item.height, q.item.width) for q in queries],
        )
        probs = outputs.logits.sigmoid()[:, :, : offsets.shape[1]].cpu()  # (batch, queries, tokens)
        rows = []
        for b, query in enumerate(queries):
            mask = token_phrase_mask(offsets[b], query.prompt_spans, len(query.phrases)).float()
            counts = mask.sum(-1)  # tokens per phrase; 0 when truncated away
            phrase_scores = (probs[b] @ mask.T) / counts.clamp(min=1)  # (queries, phrases)
            phrase_scores[:, counts == 0] = -1.0
            token_max = (probs[b] * mask.any(0)).max(-1).values  # (queries,)
            best_score, best = phrase_scores.max(-1)
            for q_idx in range(probs.shape[1]):
                if token_max[q_idx] <= self.settings.box_threshold or best_score[q_idx] <= self.settings.text_threshold:
                    continue
                bbox = clip_box(boxes[b]["boxes"][q_idx].tolist(), query.item.width, query.item.height)
                if bbox is not None:
                    rows.append(self._row(query, query.phrases[int(best[q_idx])], bbox, float(best_score[q_idx]), round_))
        return rows

    def _row(self, query: Query, phrase: Phrase, bbox: list[float], score: float, round_: int) -> dict[str, Any]:
        return annotation_row(
            image_id=query.item.image_id, round_=round_, source=self.name, source_version=self.version,
            kind=KIND_PHRASE, granularity=query.caption.get("granularity"), text=phrase.text,
            parent_id=query.caption["annotation_id"], span_start=phrase.start, span_end=phrase.end,
            bbox=bbox, score=score,
        )

