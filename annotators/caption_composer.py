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

import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from annotators.base import Annotator, ImageBatch, ImageItem
from annotators.hf_loading import (DTYPES, checkpoint_version, from_pretrained_kwargs, resolve_model_dir,
                                   torch_device_dtype)
from annotators.region_text_matcher import dedupe
from annotators.registry import register_annotator
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
class CaptionComposerSettings:
    """Settings of the ``caption_composer`` annotator (``[annotators.caption_composer]``).

    ``model``: checkpoint directory or cached hub id. ``device``: cpu, cuda, cuda:N or auto.
    ``dtype``: fp32, bf16 or fp16. ``batch_size``: prompts per generate call.
    ``granularities``: which captions to write (subset of detailed, more_detailed).
    ``prompts``, ``max_new_tokens``: per granularity; given keys override the defaults.
    ``region_format``, ``region_separator``, ``max_regions``: how regions enter the prompt.
    ``exclude_sources``: region sources left out of the prompt (unvetted candidates).
    """

    model: str | os.PathLike[str] = ""
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int = 8
    granularities: tuple[str, ...] = COMPOSED
    prompts: Mapping[str, str] = field(default_factory=dict)
    max_new_tokens: Mapping[str, int] = field(default_factory=dict)
    region_format: str = "{text}"
    region_separator: str = "; "
    max_regions: int = 20
    exclude_sources: tuple[str, ...] = ("region_captioner",)

    def __post_init__(self) -> None:
        if not isinstance(self.model, (str, os.PathLike)):
            raise ValueError(f"model must be a path or hub id string, got {self.model!r}")
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of fp32, bf16, fp16; got {self.dtype!r}")
        for name in ("batch_size", "max_regions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        object.__setattr__(self, "granularities", tuple(self.granularities))
        if not self.granularities or any(g not in COMPOSED for g in self.granularities):
            raise ValueError(f"granularities must be a non-empty subset of {COMPOSED}, got {self.granularities!r}")
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
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"max_new_tokens[{granularity!r}] must be an integer >= 1, got {value!r}")
        try:
            self.region_format.format(**_REGION_FIELDS)
        except (KeyError, IndexError, ValueError, AttributeError) as err:
            raise ValueError(f"region_format {self.region_format!r} has a bad field {err} "
                             f"(fields: {', '.join(_REGION_FIELDS)})") from None
        if not isinstance(self.region_separator, str):
            raise ValueError(f"region_separator must be a string, got {self.region_separator!r}")
        if isinstance(self.exclude_sources, str) or not all(isinstance(s, str) for s in self.exclude_sources):
            raise ValueError(f"exclude_sources must be a list of source names, got {self.exclude_sources!r}")
        object.__setattr__(self, "exclude_sources", tuple(self.exclude_sources))

    @staticmethod
    def _merged(name: str, given: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(given, Mapping):
            raise ValueError(f"{name} must be a table keyed by granularity, got {given!r}")
        unknown = set(given) - set(COMPOSED)
        if unknown:
            raise ValueError(f"{name} has unknown granularities {sorted(unknown)}; use {COMPOSED}")
        return {**defaults, **given}


@register_annotator("caption_composer")
class CaptionComposer(Annotator):
    """Writes ``detailed`` / ``more_detailed`` captions with a causal LM from the brief caption and regions."""

    kinds = (KIND_CAPTION,)
    needs = ("annotations",)

    def __init__(self, **settings: Any) -> None:
        self.settings = CaptionComposerSettings(**settings)
        self.batch_size = self.settings.batch_size
        self.model_dir = resolve_model_dir(self.settings.model, self.name)
        self._device, self._dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        self._version: str | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self.stats: dict[str, int] = {"empty_generations": 0}

    @property
    def version(self) -> str:
        if self._version is None:
            self._version = checkpoint_version(self.model_dir)
        return self._version

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = from_pretrained_kwargs()
        tokenizer = AutoTokenizer.from_pretrained(self.model_dir, **kwargs)
        tokenizer.padding_side = "left"  # generation continues every prompt right where it ends
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=self._dtype, **kwargs)
        self._tokenizer, self._model = tokenizer, model.to(self._device).eval()

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

    def generate(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """Greedy continuations of ``prompts`` (one batch, left-padded), stripped."""
        import torch

        self.load()
        enc = self._tokenizer(prompts, return_tensors="pt", padding=True).to(self._device)
        with torch.inference_mode():
            out = self._model.generate(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], max_new_tokens=max_new_tokens,
                do_sample=False, num_beams=1, pad_token_id=self._tokenizer.pad_token_id,
            )
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        return [text.strip() for text in self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
