"""Detailed-caption composer: a local causal LM writes longer captions from the brief one.

For every image with a ``brief`` caption row in ``item.context["annotations"]`` (the first
one found), the composer fills one prompt template per granularity (``detailed`` and
``more_detailed`` by default) with ``{brief}`` = the brief caption and ``{regions}`` = the
texts of the image's region rows (deduplicated, at most ``max_regions``, each written with
``region_format``, whose fields are ``{text}`` and the box ``{x0} {y0} {x1} {y1}`` in whole
pixels of the upright image), joined by ``region_separator``.

The prompts go through ``AutoModelForCausalLM`` + ``AutoTokenizer`` in batches of
``batch_size`` with left padding and greedy decoding, ``max_new_tokens[granularity]`` new
tokens at most. One ``caption`` row per image and granularity, ``text`` = the generated
continuation, stripped; an empty continuation gives no row and is counted in
``stats["empty_generations"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from annotators.base import ImageBatch, ImageItem, Rows
from annotators.pretrained import PretrainedAnnotator
from annotators.registry import register_annotator
from annotators.text_utils import dedupe
from hf.settings import ModelSettings, check_positive_int, check_str, str_tuple, subset_tuple
from storage.schema import KIND_CAPTION, KIND_REGION, annotation_row

COMPOSED = ("detailed", "more_detailed")
DEFAULT_PROMPTS = {
    "detailed": "Short caption: {brief}\nObjects: {regions}\nDetailed caption of the image in two or three "
                "sentences:",
    "more_detailed": "Short caption: {brief}\nObjects: {regions}\nVery detailed paragraph describing every "
                     "object of the image, its colour and position:",
}
DEFAULT_MAX_NEW_TOKENS = {"detailed": 64, "more_detailed": 160}
_REGION_FIELDS = {"text": "x", "x0": 0, "y0": 0, "x1": 1, "y1": 1}


@dataclass(frozen=True)
class CaptionComposerSettings(ModelSettings):
    """Settings of the ``caption_composer`` annotator (``[annotators.caption_composer]``).

    ``model``, ``device``, ``dtype``: see :class:`~hf.settings.ModelSettings`.
    ``batch_size``: prompts per generate call.
    ``granularities``: which captions to write (subset of detailed, more_detailed).
    ``prompts``, ``max_new_tokens``: per granularity; given keys override the defaults.
    ``region_format``, ``region_separator``, ``max_regions``: how regions enter the prompt.
    ``exclude_sources``: region sources left out of the prompt (unvetted candidates).
    """

    batch_size: int = 8
    granularities: tuple[str, ...] = COMPOSED
    prompts: Mapping[str, str] = field(default_factory=dict)
    max_new_tokens: Mapping[str, int] = field(default_factory=dict)
    region_format: str = "{text}"
    region_separator: str = "; "
    max_regions: int = 20
    exclude_sources: tuple[str, ...] = ("region_captioner",)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("max_regions", self.max_regions)
        object.__setattr__(self, "granularities", subset_tuple("granularities", self.granularities, COMPOSED))
        object.__setattr__(self, "prompts", self._merged("prompts", self.prompts, DEFAULT_PROMPTS))
        object.__setattr__(self, "max_new_tokens",
                           self._merged("max_new_tokens", self.max_new_tokens, DEFAULT_MAX_NEW_TOKENS))
        for granularity, template in self.prompts.items():
            if not isinstance(template, str) or "{brief}" not in template:
                raise ValueError(f"prompts[{granularity!r}] must be a string with a {{brief}} field, got {template!r}")
            try:
                template.format(brief="b", regions="r")
            except (KeyError, IndexError, ValueError) as err:
                raise ValueError(f"prompts[{granularity!r}] has a bad field {err} (fields: brief, regions)") from None
        for granularity, value in self.max_new_tokens.items():
            check_positive_int(f"max_new_tokens[{granularity!r}]", value)
        try:
            self.region_format.format(**_REGION_FIELDS)
        except (KeyError, IndexError, ValueError, AttributeError) as err:
            raise ValueError(f"region_format {self.region_format!r} has a bad field {err} "
                             f"(fields: {', '.join(_REGION_FIELDS)})") from None
        check_str("region_separator", self.region_separator)
        object.__setattr__(self, "exclude_sources", str_tuple("exclude_sources", self.exclude_sources))

    @staticmethod
    def _merged(name: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(given, Mapping):
            raise ValueError(f"{name} must be a table keyed by granularity, got {given!r}")
        unknown = set(given) - set(COMPOSED)
        if unknown:
            raise ValueError(f"{name} has unknown granularities {sorted(unknown)}; use {COMPOSED}")
        return {**defaults, **given}


@register_annotator("caption_composer")
class CaptionComposer(PretrainedAnnotator):
    """Writes ``detailed`` / ``more_detailed`` captions with a causal LM from the brief caption and regions."""

    kinds = (KIND_CAPTION,)
    needs = ("annotations",)
    reads = (Rows(KIND_CAPTION, derived=False), Rows(KIND_REGION, derived=False))  # the brief caption, regions
    emits = (Rows(KIND_CAPTION, derived=False),)
    settings_class = CaptionComposerSettings
    model_class = "AutoModelForCausalLM"
    processor_class = "AutoTokenizer"  # self._processor is the tokenizer

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self.stats: dict[str, int] = {"empty_generations": 0}

    def prepare_processor(self, processor: Any) -> None:
        processor.padding_side = "left"  # generation continues every prompt right where it ends
        if processor.pad_token is None:
            processor.pad_token = processor.eos_token

    def prompt(self, item: ImageItem, granularity: str) -> str | None:
        """The filled prompt of ``granularity`` for ``item``; ``None`` when it has no brief caption."""
        rows = list(item.context.get("annotations", ()))
        brief = next((r["text"] for r in rows if r.get("kind") == KIND_CAPTION and r.get("granularity") == "brief"
                      and r.get("text")), None)
        if brief is None:
            return None
        regions = []
        for row in rows:
            if row.get("kind") != KIND_REGION or not row.get("text") or row.get("source") in self.settings.exclude_sources:
                continue
            x0, y0, x1, y1 = (int(round(float(v))) for v in (row.get("bbox") or (0, 0, 0, 0)))
            regions.append(self.settings.region_format.format(text=row["text"].strip(), x0=x0, y0=y0, x1=x1, y1=y1))
        regions = dedupe(regions)[: self.settings.max_regions]
        return self.settings.prompts[granularity].format(brief=brief.strip(),
                                                         regions=self.settings.region_separator.join(regions))

    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        rows = []
        for granularity in self.settings.granularities:
            jobs = [(item, p) for item in batch.items if (p := self.prompt(item, granularity)) is not None]
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start:start + self.batch_size]
                texts = self.generate([p for _, p in chunk], self.settings.max_new_tokens[granularity])
                for (item, _), text in zip(chunk, texts):
                    if not text:
                        self.stats["empty_generations"] += 1
                        continue
                    rows.append(annotation_row(
                        image_id=item.image_id, round_=batch.round, source=self.name, source_version=self.version,
                        kind=KIND_CAPTION, granularity=granularity, text=text,
                    ))
        return rows

    def _has_chat_template(self) -> bool:
        return bool(getattr(self._processor, "chat_template", None))

    def chat_text(self, prompt: str) -> str:
        """What the model reads for ``prompt``: a chat-tuned model's own template (one user turn
        and the assistant's turn opened) when its tokenizer has one, else the prompt as is."""
        if not self._has_chat_template():
            return prompt
        return self._processor.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy continuations of ``prompts`` (one batch, left-padded; through the chat template
        when the tokenizer has one), stripped."""
        import torch

        self.load()
        enc = self._processor([self.chat_text(p) for p in prompts], return_tensors="pt", padding=True,
                              add_special_tokens=not self._has_chat_template()).to(self._device)
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                do_sample=False, num_beams=1, pad_token_id=self._processor.pad_token_id,
            )
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        return [text.strip() for text in self._processor.batch_decode(new_tokens, skip_special_tokens=True)]
