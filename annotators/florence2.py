"""The ``florence2`` annotator: every Florence-2 task prompt over a batch, as canonical rows.

Runs transformers' native ``Florence2ForConditionalGeneration`` / ``Florence2Processor`` from a
local checkpoint (or the local Hugging Face cache), task by task over the whole batch with
batched generation, parses each generation with the processor's ``post_process_generation``
and maps it to annotation rows (absolute pixels of the upright image, boxes x0, y0, x1, y1):

- CAPTION / DETAILED_CAPTION / MORE_DETAILED_CAPTION -> ``caption`` rows (brief/detailed/more_detailed);
- OD, DENSE_REGION_CAPTION -> ``region`` rows (object; text = label, bbox);
- OCR_WITH_REGION -> ``region`` rows (ocr; text, quad, enclosing bbox);
- CAPTION_TO_PHRASE_GROUNDING grounds the image's own brief caption -> ``phrase`` rows (parent_id
  = that caption's annotation_id, span_start/span_end = the phrase's character span in it);
- REGION_TO_SEGMENTATION, prompted with each OD box -> polygons and mask_rle on that OD row.

``score`` is the mean probability of the generated tokens of the sequence a row was parsed
from (under generation's processed distribution; forced BOS excluded, up to the first EOS).
``stats["generations"]`` counts parsed generations; one that does not parse to anything
usable yields no row and counts one ``stats["parse_failures"]`` (and
``stats["parse_failures/TASK"]``); it never raises. Rows with equal ids are kept once.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import MISSING, dataclass, field
from typing import Any, Callable

from annotators.base import Annotator, ImageBatch, ImageItem
from annotators.florence2_format import (POST_PROCESSOR_CONFIG, SPECIAL_TOKEN_RE, TASK_DEPENDS, TASK_ORDER,
                                         TaskSpec, task_prompt, task_spec)
from annotators.crops import clamp_points, clip_box
from annotators.hf_loading import (checkpoint_version, load_pretrained, move_inputs, resolve_model_dir,
                                   torch_device_dtype)
from annotators.model_settings import ModelSettings, check_positive_int, settings_from_kwargs
from annotators.registry import register_annotator
from storage.schema import KIND_CAPTION, KIND_PHRASE, KIND_REGION, annotation_row
from storage.masks import polygons_to_rle, rle_area

DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")
Payload = dict[str, Any]


@dataclass(frozen=True)
class Florence2Settings(ModelSettings):
    """Settings of the annotator (the ``[annotators.florence2]`` table of the engine config).

    ``model`` (required), ``device`` (default auto, checked against a GPU only at ``load()``),
    ``dtype``, ``batch_size``: see :class:`~annotators.model_settings.ModelSettings`;
    ``tasks``: task names (default all eight; grounding needs CAPTION, segmentation needs OD);
    generation is greedy when ``num_beams`` is 1, beam search otherwise.
    """

    model: str = field(default=MISSING)  # required: no inherited "" default
    device: str = "auto"
    batch_size: int = 8
    tasks: tuple[str, ...] = TASK_ORDER
    max_new_tokens: int = 1024
    num_beams: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "model", str(self.model))
        if isinstance(self.tasks, str):
            raise ValueError(f"tasks must be a list of task names, got the string {self.tasks!r}")
        names = tuple(task_spec(t).name for t in self.tasks)  # raises on unknown names
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks must be a non-empty list without repeats, got {list(self.tasks)!r}")
        for task, needed in TASK_DEPENDS.items():
            if task in names and needed not in names:
                raise ValueError(f"task {task} needs task {needed} in tasks, got {list(names)!r}")
        object.__setattr__(self, "tasks", tuple(t for t in TASK_ORDER if t in names))
        if not DEVICE_RE.match(self.device):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto; got {self.device!r}")
        check_positive_int("max_new_tokens", self.max_new_tokens)
        check_positive_int("num_beams", self.num_beams)


# ------------------------------------------------ pure mapping: parsed output -> payloads
def _caption(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None) -> list[Payload]:
    text = answer.replace("<pad>", "").strip() if isinstance(answer, str) else ""
    if not text or SPECIAL_TOKEN_RE.search(text):
        return []
    return [{"kind": KIND_CAPTION, "granularity": spec.granularity, "text": text}]


def _regions(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None) -> list[Payload]:
    out = []
    for box, label in zip(answer.get("bboxes", []), answer.get("labels", [])):
        bbox = clip_box(box, width, height)
        if bbox is not None and label.strip():
            out.append({"kind": KIND_REGION, "region_type": spec.region_type, "text": label.strip(), "bbox": bbox})
    return out


def _ocr(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None) -> list[Payload]:
    out = []
    for quad, text in zip(answer.get("quad_boxes", []), answer.get("labels", [])):
        if len(quad) != 8 or not text.strip() or SPECIAL_TOKEN_RE.search(text):
            continue
        quad = clamp_points(quad, width, height)
        bbox = clip_box([min(quad[0::2]), min(quad[1::2]), max(quad[0::2]), max(quad[1::2])], width, height)
        if bbox is not None:
            out.append({"kind": KIND_REGION, "region_type": spec.region_type, "text": text.strip(),
                        "quad": quad, "bbox": bbox})
    return out


def _phrases(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None) -> list[Payload]:
    out = []
    for box, phrase in zip(answer.get("bboxes", []), answer.get("labels", [])):
        phrase, bbox = phrase.strip(), clip_box(box, width, height)
        start = caption.find(phrase) if caption and phrase else -1
        if start < 0 and caption and phrase:
            start = caption.lower().find(phrase.lower())
        if bbox is not None and start >= 0:
            end = start + len(phrase)
            out.append({"kind": KIND_PHRASE, "granularity": spec.granularity, "text": caption[start:end],
                        "span_start": start, "span_end": end, "bbox": bbox})
    return out


def _polygons(spec: TaskSpec, answer: Any, width: int, height: int, caption: str | None) -> list[Payload]:
    polygons = [clamp_points(p, width, height) for inst in answer.get("polygons", []) for p in inst]
    polygons = [p for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if not polygons:
        return []
    rle = polygons_to_rle(polygons, height, width)
    return [{"polygons": polygons, "mask_rle": rle}] if rle_area(rle, height, width) > 0 else []


PAYLOAD_MAPPERS: dict[str, Callable[[TaskSpec, Any, int, int, str | None], list[Payload]]] = {
    "pure_text": _caption, "description_with_bboxes": _regions, "ocr": _ocr,
    "phrase_grounding": _phrases, "polygons": _polygons,
}


def output_payloads(task: str, answer: Any, width: int, height: int, caption: str | None = None) -> list[Payload]:
    """Row payloads of one parsed generation (``post_process_generation(...)[<TASK>]``).

    Pure: ``answer`` is what the processor parsed for an image of ``width`` x ``height`` px;
    ``caption`` is the grounded caption (CAPTION_TO_PHRASE_GROUNDING). Returns dicts of
    annotation columns (``kind`` included; for REGION_TO_SEGMENTATION only ``polygons`` and
    ``mask_rle``, to be put on the prompted region's row); empty when nothing is usable.
    """
    spec = task_spec(task)
    return PAYLOAD_MAPPERS[spec.parse_type](spec, answer, width, height, caption)


# ------------------------------------------------------------------------- annotator
@dataclass
class _Image:
    """Per-image state while the batch's tasks run: payloads with their scores."""

    item: ImageItem
    payloads: list[tuple[Payload, float | None]] = field(default_factory=list)
    brief: Payload | None = None  # the CAPTION payload that grounding uses
    objects: list[Payload] = field(default_factory=list)  # OD payloads that segmentation prompts with


@dataclass
class _Job:
    image: _Image
    prompt: str
    parent: Payload | None = None  # caption (grounding) or region (segmentation) it depends on


JOB_MAKERS: dict[str | None, Callable[[TaskSpec, _Image], list[_Job]]] = {
    None: lambda spec, im: [_Job(im, spec.token)],
    "text": lambda spec, im: [_Job(im, task_prompt(spec.name, text=im.brief["text"]), im.brief)] if im.brief else [],
    "region": lambda spec, im: [
        _Job(im, task_prompt(spec.name, bbox=p["bbox"], width=im.item.width, height=im.item.height), p)
        for p in im.objects
    ],
}


@register_annotator("florence2")
class Florence2Annotator(Annotator):
    """Florence-2 over every task prompt; see the module docstring for the row mapping."""

    kinds = (KIND_CAPTION, KIND_REGION, KIND_PHRASE)

    def __init__(self, **settings: Any) -> None:
        self.settings = settings_from_kwargs(Florence2Settings, settings, self.name)
        self.model_dir = resolve_model_dir(self.settings.model, "florence2")
        self.batch_size = self.settings.batch_size
        self._version = checkpoint_version(self.model_dir)
        self.stats: Counter[str] = Counter()
        self._model: Any = None
        self._processor: Any = None

    @property
    def version(self) -> str:
        return self._version

    def load(self) -> None:
        if self._model is not None:
            return
        self._device, self._dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        model, self._processor = load_pretrained(self.model_dir, "Florence2ForConditionalGeneration",
                                                 "Florence2Processor", self._device, self._dtype)
        # right padding: the text encoder has learned absolute positions, so a right-padded
        # prompt keeps the positions it has alone (batched == one at a time)
        self._processor.tokenizer.padding_side = "right"
        # the processor refuses a parse type its config does not list: fill in the defaults
        parse_config = self._processor.post_processor.parse_task_config
        for parse_type, rules in POST_PROCESSOR_CONFIG.items():
            parse_config.setdefault(parse_type, rules)
        self._model = model.requires_grad_(False)

    # -- parsing ------------------------------------------------------------------------
    def parse_generation(self, task: str, text: str, width: int, height: int,
                         caption: str | None = None) -> list[Payload]:
        """Payloads of one generated text (special tokens kept); counts a failure when empty."""
        self.load()
        spec = task_spec(task)
        self.stats["generations"] += 1
        try:
            answer = self._processor.post_process_generation(
                text.replace("<pad>", ""), task=spec.token, image_size=(width, height))[spec.token]
            payloads = output_payloads(spec.name, answer, width, height, caption)
        except (ValueError, TypeError, KeyError, IndexError, RuntimeError):  # malformed: counted, never raised
            payloads = []
        if not payloads:
            self.stats["parse_failures"] += 1
            self.stats[f"parse_failures/{spec.name}"] += 1
        return payloads

    # -- generation -----------------------------------------------------------------------
    def _generate(self, prompts: list[str], images: list[Any]) -> tuple[list[str], list[float | None]]:
        """Generated texts (special tokens kept) and mean token probabilities of a batch."""
        import torch

        inputs = move_inputs(self._processor(text=prompts, images=images, return_tensors="pt", padding=True),
                             self._device, self._dtype)
        beams = self.settings.num_beams
        with torch.inference_mode():
            out = self._model.generate(
                **inputs, max_new_tokens=self.settings.max_new_tokens, num_beams=beams, do_sample=False,
                output_scores=True, return_dict_in_generate=True)
            steps = self._model.compute_transition_scores(
                out.sequences, out.scores, getattr(out, "beam_indices", None), normalize_logits=beams == 1)
        texts = self._processor.tokenizer.batch_decode(out.sequences, skip_special_tokens=False)
        return texts, self._mean_probabilities(out.sequences[:, 1:], steps.float())

    def _mean_probabilities(self, generated: Any, log_probs: Any) -> list[float | None]:
        import torch

        config = self._model.generation_config
        scores: list[float | None] = []
        for tokens, logp in zip(generated.tolist(), log_probs):
            n = len(logp)
            if config.eos_token_id in tokens[:n]:
                n = tokens.index(config.eos_token_id) + 1
            start = 1 if tokens and tokens[0] == config.forced_bos_token_id else 0
            probs = torch.exp(logp[start:n]).nan_to_num(0.0)
            scores.append(float(probs.mean()) if len(probs) else None)
        return scores

    # -- the batch --------------------------------------------------------------------------
    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        images = [_Image(item) for item in batch.items]
        for task in self.settings.tasks:
            spec = task_spec(task)
            jobs = [job for im in images for job in JOB_MAKERS[spec.input](spec, im)]
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start:start + self.batch_size]
                texts, scores = self._generate([j.prompt for j in chunk], [j.image.item.image for j in chunk])
                for job, text, score in zip(chunk, texts, scores):
                    self._consume(spec, job, text, score, batch.round)
        rows: dict[str, dict[str, Any]] = {}  # one row per id: a region repeated in a generation,
        for im in images:                     # or found by both OD and DENSE_REGION_CAPTION, is kept once
            for payload, score in im.payloads:
                row = self._row(im.item, batch.round, payload, score)
                rows.setdefault(row["annotation_id"], row)
        return list(rows.values())

    def _consume(self, spec: TaskSpec, job: _Job, text: str, score: float | None, round_: int) -> None:
        item = job.image.item
        caption = job.parent["text"] if spec.input == "text" else None
        payloads = self.parse_generation(spec.name, text, item.width, item.height, caption)
        if spec.input == "region":  # segmentation: the mask goes on the prompted region's row
            if payloads:
                job.parent.update(payloads[0])
            return
        parent_id = self._row(item, round_, job.parent, None)["annotation_id"] if job.parent else None
        for payload in payloads:
            if parent_id:
                payload["parent_id"] = parent_id
            job.image.payloads.append((payload, score))
        if spec.name == TASK_DEPENDS["CAPTION_TO_PHRASE_GROUNDING"] and payloads:
            job.image.brief = payloads[0]
        if spec.name == TASK_DEPENDS["REGION_TO_SEGMENTATION"]:
            job.image.objects.extend(payloads)

    def _row(self, item: ImageItem, round_: int, payload: Payload, score: float | None) -> dict[str, Any]:
        columns = {k: v for k, v in payload.items() if k != "kind"}
        return annotation_row(image_id=item.image_id, round_=round_, source=self.name,
                              source_version=self.version, kind=payload["kind"], score=score, **columns)
