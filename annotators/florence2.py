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

``score`` is per row, computed from the row's own generated tokens (module
:mod:`florence2.scores`). After generation, one teacher-forced decoder pass over each
returned sequence (the encoder outputs of generation reused) gives the model's distribution
``p_t`` at every generated position ``t`` (softmax of the raw logits, temperature 1, no logits
processors), whatever the decoding (greedy or beam search: the returned beam's own tokens).
Every score is a probability in [0, 1] (no unit):

- region rows (OD, DENSE_REGION_CAPTION, CAPTION_TO_PHRASE_GROUNDING boxes, OCR_WITH_REGION
  quads): ``score = P_label * G_coord`` where ``P_label = exp(mean_{t in label} log p_t(y_t))``
  is the geometric mean probability of the tokens of the row's text (for OD, the label before a
  group of boxes counts for every box of the group) and
  ``G_coord = exp(mean_j log M_j)`` is the geometric mean, over the row's 4 (box) or 8 (quad)
  coordinates, of ``M_j = sum_{|b - c_j| <= k} p_{t_j}(<loc_b>)``, the probability the model put
  within ``k = score_window`` location bins (1 bin = 1/1000 of the image width for x, of the
  height for y; bins clipped to 0..999) of the generated bin ``c_j``;
- caption rows: ``score = exp(mean_t log p_t(y_t))`` over every generated token after the forced
  ``<s>``, up to and including the ``</s>`` that ends the caption;
- REGION_TO_SEGMENTATION adds its mask to the prompted OD row and leaves that row's score alone.

View consistency (test-time augmentation, module :mod:`florence2.views`): with the
``views`` setting (e.g. ``["hflip"]``; default none), the box tasks OD and DENSE_REGION_CAPTION
also generate on each transformed view of every image (a flip: same size), in the same
``generate`` calls as the original images, parse its boxes and map them back to the upright
image (hflip: ``x0' = W - x1, x1' = W - x0``; vflip: ``y0' = H - y1, y1' = H - y0``; pixels). Each
box ``b`` of the original view (score ``s_0`` above) then scores

    score(b) = (s_0 + sum_{v in views} s_v(m_v(b))) / (1 + V)

where ``V = len(views)`` and ``s_v(m_v(b))`` is the above score of the box of view ``v`` with the
same label (white space folded, case-insensitive) and the highest IoU with ``b``, among those with
IoU >= ``view_iou`` (ties: the higher score), and 0 when there is none; still a probability in
[0, 1]. A box fewer than ``view_min_confirmations`` views confirm scores 0 (default 0: none
needed), so the confidence rule drops it with its reason. Rows stay those of the original view
(same ids, same columns but ``score``); boxes only a transformed view found make no row.

With ``view_fusion = true`` the boxes of the original and of every view are clustered instead
(:func:`florence2.views.fused_views`): each cluster (at most one box per view, same
label, IoU >= ``view_iou`` with the box that started it) is one row whose box is the
score-weighted mean of its boxes and whose score is the same average as above; a cluster of
at least ``1 + view_min_confirmations`` boxes that no original box is in becomes a new row, so
an object the original generation missed but two views found is annotated. The fused box
changes the row's id (ids follow the columns).
``stats["view_generations"]``, ``stats["view_parse_failures"]`` (and ``.../TASK``),
``stats["view_score_fallbacks"]`` count the views' generations apart, and
``stats["view_confirmed/VIEW"]`` the original boxes that view ``VIEW`` confirmed.

When the items the processor parsed cannot be matched one to one with token spans (a parse the
score module does not mirror), every row of that generation gets the caption formula over the
whole sequence and ``stats["score_fallbacks"]`` counts it.
``stats["generations"]`` counts parsed generations; one that does not parse to anything
usable yields no row and counts one ``stats["parse_failures"]`` (and
``stats["parse_failures/TASK"]``); it never raises. Rows with equal ids are kept once (the first).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import MISSING, dataclass, field, replace
from typing import Any, Callable

from annotators.base import Annotator, ImageBatch, ImageItem
from annotators.registry import register_annotator
from florence2.format import (
    POST_PROCESSOR_CONFIG,
    TASK_DEPENDS,
    TASK_ORDER,
    TaskSpec,
    task_prompt,
    task_spec,
)
from florence2.payloads import ANSWER_ITEMS, Payload, output_payloads
from florence2.scores import TokenStats, item_scores, location_index, sequence_score, token_statistics
from florence2.views import (
    VIEW_TASKS,
    ScoredBox,
    apply_views,
    check_views,
    upright_scored_boxes,
    view_image,
)
from hf.checkpoint_check import check_checkpoint
from hf.loading import (
    checkpoint_version,
    load_pretrained,
    move_inputs,
    resolve_model_dir,
    torch_device_dtype,
)
from hf.settings import ModelSettings, check_int, check_number, check_positive_int, settings_from_kwargs
from storage.schema import KIND_CAPTION, KIND_PHRASE, KIND_REGION, annotation_row

DEVICE_RE = re.compile(r"^(cpu|cuda|cuda:\d+|auto)$")
#: logits elements (rows x positions x vocabulary) of one teacher-forced scoring pass
SCORING_LOGITS_BUDGET = 2**25


@dataclass(frozen=True)
class Florence2Settings(ModelSettings):
    """Settings of the annotator (the ``[annotators.florence2]`` table of the engine config).

    ``model`` (required), ``device`` (default auto, checked against a GPU only at ``load()``),
    ``dtype``, ``batch_size``: see :class:`~hf.settings.ModelSettings`;
    ``tasks``: task names (default all eight; grounding needs CAPTION, segmentation needs OD);
    generation is greedy when ``num_beams`` is 1, beam search otherwise; ``score_window``: the
    ``k`` of the score formula (module docstring), in location bins either side of a generated
    coordinate (0: only the generated bin's own probability); ``views``: transformed views
    (``hflip``, ``vflip``; default none) whose boxes confirm the OD / DENSE_REGION_CAPTION boxes
    (module docstring; needs one of those tasks), generated with the original images: a box task's
    ``generate`` call then holds ``batch_size`` images with all their views; ``view_iou``: the
    IoU in (0, 1] a view's box needs to confirm an original box (default 0.5);
    ``view_min_confirmations``: how many views must confirm a box for it to score above 0
    (0..len(views); default 0); ``view_fusion``: fuse the boxes of all views (weighted box
    fusion, boxes only the views found included) instead of rescoring the original's boxes
    (default false; module docstring).
    """

    model: str = field(default=MISSING)  # required: no inherited "" default
    device: str = "auto"
    batch_size: int = 8
    tasks: tuple[str, ...] = TASK_ORDER
    max_new_tokens: int = 1024
    num_beams: int = 3
    score_window: int = 2
    views: tuple[str, ...] = ()
    view_iou: float = 0.5
    view_min_confirmations: int = 0
    view_fusion: bool = False

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
        check_int("score_window", self.score_window, 0)
        object.__setattr__(self, "views", check_views(self.views))
        if self.views and not any(t in VIEW_TASKS for t in self.tasks):
            raise ValueError(f"views need a box task ({', '.join(VIEW_TASKS)}) in tasks, got {list(self.tasks)!r}")
        check_number("view_iou", self.view_iou, 0.0, 1.0)
        if self.view_iou == 0:
            raise ValueError(f"view_iou must be a number in (0, 1], got {self.view_iou!r}")
        check_int("view_min_confirmations", self.view_min_confirmations, 0)
        if self.view_min_confirmations > len(self.views):
            raise ValueError(f"view_min_confirmations must be at most the number of views ({len(self.views)}), "
                             f"got {self.view_min_confirmations!r}")
        if not isinstance(self.view_fusion, bool):
            raise ValueError(f"view_fusion must be true or false, got {self.view_fusion!r}")


# ------------------------------------------------------------------------- annotator
@dataclass
class _Image:
    """Per-image state while the batch's tasks run: payloads (each with its ``score``)."""

    item: ImageItem
    payloads: list[Payload] = field(default_factory=list)
    brief: Payload | None = None  # the CAPTION payload that grounding uses
    objects: list[Payload] = field(default_factory=list)  # OD payloads that segmentation prompts with
    originals: list[Payload] = field(default_factory=list)  # this task's boxes on the image itself
    views_seen: dict[str, list[ScoredBox]] = field(default_factory=dict)  # view -> this task's boxes there, upright
    views: dict[str, Any] = field(default_factory=dict)  # view -> its image

    def image(self, view: str | None) -> Any:
        """The upright image, or its ``view`` (made once)."""
        if view is None:
            return self.item.image
        if view not in self.views:
            self.views[view] = view_image(self.item.image, view)
        return self.views[view]


@dataclass
class _Job:
    image: _Image
    prompt: str
    parent: Payload | None = None  # caption (grounding) or region (segmentation) it depends on
    view: str | None = None  # a transformed view of the image (None: the image itself)


@dataclass
class _Generation:
    """One generated sequence: its text (special tokens kept) and its tokens' statistics."""

    text: str
    stats: TokenStats


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
    """Florence-2 over every task prompt; see the module docstring for the row mapping and the score."""

    kinds = (KIND_CAPTION, KIND_REGION, KIND_PHRASE)

    def __init__(self, **settings: Any) -> None:
        self.settings = settings_from_kwargs(Florence2Settings, settings, self.name)
        self.model_dir = resolve_model_dir(self.settings.model, "florence2")
        check_checkpoint(self.model_dir, "florence2", self.settings.allow_pickle_weights)
        self.batch_size = self.settings.batch_size
        self._version = checkpoint_version(self.model_dir)
        self.stats: Counter[str] = Counter()
        self._model: Any = None
        self._processor: Any = None
        self._pieces: dict[int, str] = {}  # token id -> its string as the post-processor decodes it

    @property
    def version(self) -> str:
        return self._version

    def load(self) -> None:
        if self._model is not None:
            return
        self._device, self._dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        model, self._processor = load_pretrained(self.model_dir, "Florence2ForConditionalGeneration",
                                                 "Florence2Processor", self._device, self._dtype, "florence2")
        # right padding: the text encoder has learned absolute positions, so a right-padded
        # prompt keeps the positions it has alone (batched == one at a time)
        self._processor.tokenizer.padding_side = "right"
        # the processor refuses a parse type its config does not list: fill in the defaults
        parse_config = self._processor.post_processor.parse_task_config
        for parse_type, rules in POST_PROCESSOR_CONFIG.items():
            parse_config.setdefault(parse_type, rules)
        loc_ids, loc_bin = location_index(self._processor.tokenizer, model.config.text_config.vocab_size)
        self._loc_ids, self._loc_bin = loc_ids.to(self._device), loc_bin.to(self._device)
        self._model = model.requires_grad_(False)

    # -- parsing ------------------------------------------------------------------------
    def parse_generation(self, task: str, text: str, width: int, height: int,
                         caption: str | None = None, stats: TokenStats | None = None) -> list[Payload]:
        """Payloads of one generated text (special tokens kept); counts a failure when empty.

        With ``stats`` (the generation's tokens, see :mod:`florence2.scores`) every
        payload carries its own ``score``; without, none does.
        """
        return self._parse(task_spec(task), text, width, height, caption, stats)

    def _parse(self, spec: TaskSpec, text: str, width: int, height: int, caption: str | None,
               stats: TokenStats | None, counter: str = "") -> list[Payload]:
        """:meth:`parse_generation`, counting under ``counter`` + the stats' names (``view_``: a view's)."""
        self.load()
        self.stats[f"{counter}generations"] += 1
        malformed = (ValueError, TypeError, KeyError, IndexError, RuntimeError)  # counted, never raised
        payloads: list[Payload] = []
        try:
            answer = self._processor.post_process_generation(
                text.replace("<pad>", ""), task=spec.token, image_size=(width, height))[spec.token]
        except malformed:
            answer = None
        if answer is not None:
            scores = self._item_scores(spec, answer, stats, counter) if stats is not None else None
            try:
                payloads = output_payloads(spec.name, answer, width, height, caption, scores)
            except malformed:
                payloads = []
        if not payloads:
            self.stats[f"{counter}parse_failures"] += 1
            self.stats[f"{counter}parse_failures/{spec.name}"] += 1
        return payloads

    def _item_scores(self, spec: TaskSpec, answer: Any, stats: TokenStats,
                     counter: str = "") -> list[float | None] | None:
        """One score per item of ``answer``, from the tokens each was parsed from."""
        count = ANSWER_ITEMS.get(spec.parse_type)
        if count is None:  # segmentation: the mask joins a scored row
            return None
        post = self._processor.post_processor
        scores = item_scores(spec.parse_type, stats, banned=post.banned_grounding_tokens,
                             ocr_pattern=post.parse_task_config.get("ocr", {}).get("PATTERN"),
                             forced_bos=self._forced_bos_piece())
        if scores is None or len(scores) != count(answer):
            self.stats[f"{counter}score_fallbacks"] += 1
            return [sequence_score(stats, self._forced_bos_piece())] * count(answer)
        return scores

    def _forced_bos_piece(self) -> str | None:
        forced = self._model.generation_config.forced_bos_token_id
        return None if forced is None else self._piece(forced)

    def _piece(self, token_id: int) -> str:
        """The string of one token as the processor's ``decode_with_spans`` writes it (context-free)."""
        piece = self._pieces.get(token_id)
        if piece is None:
            text, _ = self._processor.post_processor.decode_with_spans([token_id])
            piece = self._pieces[token_id] = text
        return piece

    # -- generation -----------------------------------------------------------------------
    def _generate(self, prompts: list[str], images: list[Any]) -> list[_Generation]:
        """Generated texts (special tokens kept) and their tokens' statistics, for a batch."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        inputs = move_inputs(self._processor(text=prompts, images=images, return_tensors="pt", padding=True),
                             self._device, self._dtype)
        mask = inputs["attention_mask"]
        config = self._model.generation_config
        with torch.inference_mode():
            # the encoder runs once: generation and the scoring pass share its outputs
            first = config.decoder_start_token_id
            first = self._model.config.text_config.decoder_start_token_id if first is None else first
            start = torch.full((len(prompts), 1), first, dtype=torch.long, device=self._device)
            encoded = self._model(**inputs, decoder_input_ids=start, use_cache=False).encoder_last_hidden_state
            sequences = self._model.generate(
                input_ids=inputs["input_ids"], attention_mask=mask,
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),  # generate expands it in place: its own
                max_new_tokens=self.settings.max_new_tokens, num_beams=self.settings.num_beams, do_sample=False)
            stats = self._token_stats(encoded, mask, sequences)
        texts = self._processor.tokenizer.batch_decode(sequences, skip_special_tokens=False)
        return [_Generation(text, token_stats) for text, token_stats in zip(texts, stats)]

    def _token_stats(self, encoded: Any, mask: Any, sequences: Any) -> list[TokenStats]:
        """Per sequence, the statistics of its generated tokens from one teacher-forced decoder pass.

        ``sequences`` start with the decoder start token; each is scored up to its first EOS.
        """
        from transformers.modeling_outputs import BaseModelOutput

        eos = self._model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        generated = [row[1:] for row in sequences.tolist()]
        lengths = [next((i + 1 for i, t in enumerate(row) if t in eos), len(row)) for row in generated]
        width = max(lengths, default=0)
        if width == 0:
            return [TokenStats((), (), ()) for _ in generated]
        decoder_input, targets = sequences[:, :width], sequences[:, 1:width + 1]
        vocab = self._model.config.text_config.vocab_size
        step = max(1, SCORING_LOGITS_BUDGET // (width * vocab))
        logps, masses = [], []
        for r in range(0, len(generated), step):
            logits = self._model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded[r:r + step]),
                                 attention_mask=mask[r:r + step], decoder_input_ids=decoder_input[r:r + step],
                                 use_cache=False).logits
            logp, mass = token_statistics(logits, targets[r:r + step], self._loc_ids, self._loc_bin,
                                          self.settings.score_window)
            logps.extend(logp.cpu().tolist())
            masses.extend(mass.cpu().tolist())
        out = []
        for row, n, logp, mass in zip(generated, lengths, logps, masses):
            out.append(TokenStats(pieces=tuple(self._piece(t) for t in row[:n]), logp=tuple(logp[:n]),
                                  loc_mass=tuple(None if m != m else m for m in mass[:n])))  # NaN: no location
        return out

    # -- the batch --------------------------------------------------------------------------
    def annotate(self, batch: ImageBatch) -> list[dict[str, Any]]:
        self.load()
        images = [_Image(item) for item in batch.items]
        for task in self.settings.tasks:
            spec = task_spec(task)
            views = self.settings.views if spec.name in VIEW_TASKS else ()
            jobs = [job for im in images for job in JOB_MAKERS[spec.input](spec, im)]
            # each image's views right after it: one generate call holds batch_size images and their views
            jobs = [view_job for job in jobs for view_job in (job, *(replace(job, view=v) for v in views))]
            size = self.batch_size * (1 + len(views))
            for start in range(0, len(jobs), size):
                chunk = jobs[start:start + size]
                generations = self._generate([j.prompt for j in chunk], [j.image.image(j.view) for j in chunk])
                for job, generation in zip(chunk, generations):
                    self._consume(spec, job, generation, batch.round)
            if views:
                for im in images:
                    self._rescore(im, views, spec)
        rows: dict[str, dict[str, Any]] = {}  # one row per id: a region repeated in a generation,
        for im in images:                     # or found by both OD and DENSE_REGION_CAPTION, is kept once
            for payload in im.payloads:
                row = self._row(im.item, batch.round, payload)
                rows.setdefault(row["annotation_id"], row)
        return list(rows.values())

    def _consume(self, spec: TaskSpec, job: _Job, generation: _Generation, round_: int) -> None:
        item = job.image.item
        caption = job.parent["text"] if spec.input == "text" else None
        if job.view is not None:  # a view's boxes, kept upright for the original's scores only
            payloads = self._parse(spec, generation.text, item.width, item.height, caption, generation.stats, "view_")
            job.image.views_seen[job.view] = upright_scored_boxes(payloads, job.view, item.width, item.height)
            return
        payloads = self._parse(spec, generation.text, item.width, item.height, caption, generation.stats)
        if self.settings.views and spec.name in VIEW_TASKS:
            job.image.originals = payloads
        if spec.input == "region":  # segmentation: the mask goes on the prompted region's row
            if payloads:
                job.parent.update(payloads[0])
            return
        parent_id = self._row(item, round_, job.parent)["annotation_id"] if job.parent else None
        for payload in payloads:
            if parent_id:
                payload["parent_id"] = parent_id
            job.image.payloads.append(payload)
        if spec.name == TASK_DEPENDS["CAPTION_TO_PHRASE_GROUNDING"] and payloads:
            job.image.brief = payloads[0]
        if spec.name == TASK_DEPENDS["REGION_TO_SEGMENTATION"]:
            job.image.objects.extend(payloads)

    def _rescore(self, im: _Image, views: tuple[str, ...], spec: TaskSpec) -> None:
        """The original boxes of the task just run scored by view consistency, or fused with the
        views' boxes (module docstring)."""
        original, im.originals = im.originals, []
        seen = [im.views_seen.pop(v, []) for v in views]
        settings = self.settings
        added, confirmed = apply_views(original, seen, settings.view_iou, settings.view_min_confirmations,
                                       settings.view_fusion, spec.region_type)
        im.payloads.extend(added)
        if spec.name == TASK_DEPENDS["REGION_TO_SEGMENTATION"]:
            im.objects.extend(added)
        if settings.view_fusion:
            self.stats["view_added"] += len(added)
        for view, count in zip(views, confirmed):
            self.stats[f"view_confirmed/{view}"] += count

    def _row(self, item: ImageItem, round_: int, payload: Payload) -> dict[str, Any]:
        """The annotation row of a payload (its ``score``, if any, included; the id ignores it)."""
        columns = {k: v for k, v in payload.items() if k != "kind"}
        return annotation_row(image_id=item.image_id, round_=round_, source=self.name,
                              source_version=self.version, kind=payload["kind"], **columns)
