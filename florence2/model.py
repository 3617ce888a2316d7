"""One Florence-2 model object: ``generate``, ``parse``, ``answer`` and ``predict``.

Runs transformers' native ``Florence2ForConditionalGeneration`` / ``Florence2Processor`` from a
local checkpoint (or the local Hugging Face cache; :mod:`hf.loading`), batched, and parses each
generation with the processor's ``post_process_generation`` into payloads (dicts of annotation
columns, absolute pixels of the upright image, boxes x0, y0, x1, y1; :mod:`florence2.payloads`).
The ``florence2`` annotator, the evaluation and the calibration all go through :meth:`answer`, so
view scheduling, fusion and scoring exist once and a threshold calibrated on the evaluation's
scores fits the rows curation sees.

Scores (:mod:`florence2.scores`): after generation, one teacher-forced decoder pass over each
returned sequence (the encoder outputs of generation reused) gives the model's distribution
``p_t`` at every generated position (softmax of the raw logits, temperature 1), whatever the
decoding. Every score is a probability in [0, 1]:

- region items (OD, DENSE_REGION_CAPTION, CAPTION_TO_PHRASE_GROUNDING boxes, OCR quads):
  ``P_label * G_coord``, the geometric-mean probability of the item's text tokens (for OD the
  label before a group of boxes counts for every box of it) times the geometric mean over its
  4 or 8 coordinates of the probability mass within ``score_window`` bins of the generated bin;
- captions: the geometric-mean probability of every generated token up to and including ``</s>``;
- REGION_TO_SEGMENTATION: no score (its mask joins the prompted region).

A parse the score module cannot match one to one gives every item the caption formula over the
whole sequence (``stats["score_fallbacks"]``). A generation that parses to nothing usable counts
``stats["parse_failures"]`` (and ``.../TASK``) and never raises.

Views (test-time augmentation, :mod:`florence2.views`): the box tasks (``VIEW_TASKS``) also
generate on each view of the image in the same ``generate`` calls (each query right before its
views: one call holds ``batch_size`` queries and their views), their boxes mapped back upright;
each original box then scores ``(s_0 + sum_v s_v(match)) / (1 + V)``, or with ``view_fusion`` the
boxes of all views are fused (objects only the views found included). ``stats["view_*"]`` count
the views' generations apart and ``stats["view_confirmed/VIEW"]`` the boxes each view confirmed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from florence2.format import POST_PROCESSOR_CONFIG, TASK_ORDER, prompt_caption, task_prompt, task_spec
from florence2.payloads import ANSWER_ITEMS, Payload, output_payloads
from florence2.scores import TokenStats, item_scores, location_index, sequence_score, token_statistics
from florence2.settings import Florence2Settings
from florence2.views import VIEW_TASKS, apply_views, upright_scored_boxes, view_image
from hf.checkpoint_check import check_checkpoint
from hf.loading import checkpoint_version, load_pretrained, move_inputs, resolve_model_dir, torch_device_dtype

#: logits elements (rows x positions x vocabulary) of one teacher-forced scoring pass
SCORING_LOGITS_BUDGET = 2**25


@dataclass
class Generation:
    """One generated sequence: its text (special tokens kept) and its tokens' statistics."""

    text: str
    stats: TokenStats


@dataclass(frozen=True)
class Query:
    """One question to the model: an upright RGB image, a task and the task's input.

    ``text``: the caption a text-input task grounds; ``bbox``: the region (pixels, x0 y0 x1 y1)
    a region-input task is prompted with; ``prompt``: a ready prompt (task token and input, as a
    training example holds it) used instead of ``text``/``bbox``.
    """

    image: Any
    task: str
    text: str | None = None
    bbox: Sequence[float] | None = None
    prompt: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the image in pixels."""
        return self.image.size

    def prompt_text(self) -> str:
        if self.prompt is not None:
            return self.prompt
        width, height = self.size
        return task_prompt(self.task, text=self.text, bbox=self.bbox, width=width, height=height)

    def caption(self) -> str | None:
        """The caption the answer's phrases are found in (text-input tasks), else None."""
        return prompt_caption(self.prompt) if self.prompt is not None else self.text


@dataclass
class Prediction:
    """Everything :meth:`Florence2Model.predict` found on one image: payloads in task order, and
    per payload the index of the payload it belongs to (a phrase's caption) or None."""

    payloads: list[Payload] = field(default_factory=list)
    parents: list[int | None] = field(default_factory=list)


class Florence2Model:
    """A Florence-2 checkpoint with its :class:`~florence2.settings.Florence2Settings`.

    Construction resolves and checks the checkpoint (a one-line ``ModelError`` when it is missing,
    remote code or pickle-only) and hashes it (``version``); :meth:`load` loads it once.
    """

    def __init__(self, settings: Florence2Settings, who: str = "florence2") -> None:
        self.settings = settings
        self.model_dir = resolve_model_dir(settings.model, who)
        check_checkpoint(self.model_dir, who, settings.allow_pickle_weights)
        self.version = checkpoint_version(self.model_dir)
        self.who = who
        self.stats: Counter[str] = Counter()
        self.torch_model: Any = None
        self.processor: Any = None
        self._pieces: dict[int, str] = {}  # token id -> its string as the post-processor decodes it

    @property
    def batch_size(self) -> int:
        return self.settings.batch_size

    def load(self) -> None:
        """Load the checkpoint onto the settings' device and dtype (idempotent)."""
        if self.torch_model is not None:
            return
        self.device, self.dtype = torch_device_dtype(self.settings.device, self.settings.dtype)
        model, self.processor = load_pretrained(self.model_dir, "Florence2ForConditionalGeneration",
                                                "Florence2Processor", self.device, self.dtype, self.who)
        # right padding: the text encoder has learned absolute positions, so a right-padded
        # prompt keeps the positions it has alone (batched == one at a time)
        self.processor.tokenizer.padding_side = "right"
        # the processor refuses a parse type its config does not list: fill in the defaults
        parse_config = self.processor.post_processor.parse_task_config
        for parse_type, rules in POST_PROCESSOR_CONFIG.items():
            parse_config.setdefault(parse_type, rules)
        loc_ids, loc_bin = location_index(self.processor.tokenizer, model.config.text_config.vocab_size)
        self._loc_ids, self._loc_bin = loc_ids.to(self.device), loc_bin.to(self.device)
        self.torch_model = model.requires_grad_(False)

    # -- parsing ------------------------------------------------------------------------
    def parse(self, task: str, text: str, width: int, height: int, caption: str | None = None,
              stats: TokenStats | None = None, counter: str = "") -> list[Payload]:
        """Payloads of one generated text (special tokens kept) of an image of ``width`` x ``height``
        pixels; with ``stats`` (the generation's tokens) every scored payload carries its ``score``.
        Counts under ``counter`` + the stats' names (``view_``: a view's generation)."""
        self.load()
        spec = task_spec(task)
        self.stats[f"{counter}generations"] += 1
        malformed = (ValueError, TypeError, KeyError, IndexError, RuntimeError)  # counted, never raised
        payloads: list[Payload] = []
        try:
            answer = self.processor.post_process_generation(
                text.replace("<pad>", ""), task=spec.token, image_size=(width, height))[spec.token]
        except malformed:
            answer = None
        if answer is not None:
            scores = self._item_scores(spec.parse_type, answer, stats, counter) if stats is not None else None
            try:
                payloads = output_payloads(spec.name, answer, width, height, caption, scores)
            except malformed:
                payloads = []
        if not payloads:
            self.stats[f"{counter}parse_failures"] += 1
            self.stats[f"{counter}parse_failures/{spec.name}"] += 1
        return payloads

    def _item_scores(self, parse_type: str, answer: Any, stats: TokenStats, counter: str) -> list[float | None] | None:
        """One score per item of ``answer``, from the tokens each was parsed from."""
        count = ANSWER_ITEMS.get(parse_type)
        if count is None:  # segmentation: the mask joins a scored row
            return None
        post = self.processor.post_processor
        scores = item_scores(parse_type, stats, banned=post.banned_grounding_tokens,
                             ocr_pattern=post.parse_task_config.get("ocr", {}).get("PATTERN"),
                             forced_bos=self._forced_bos_piece())
        if scores is None or len(scores) != count(answer):
            self.stats[f"{counter}score_fallbacks"] += 1
            return [sequence_score(stats, self._forced_bos_piece())] * count(answer)
        return scores

    def _forced_bos_piece(self) -> str | None:
        forced = self.torch_model.generation_config.forced_bos_token_id
        return None if forced is None else self._piece(forced)

    def _piece(self, token_id: int) -> str:
        """The string of one token as the processor's ``decode_with_spans`` writes it (context-free)."""
        piece = self._pieces.get(token_id)
        if piece is None:
            text, _ = self.processor.post_processor.decode_with_spans([token_id])
            piece = self._pieces[token_id] = text
        return piece

    # -- generation -----------------------------------------------------------------------
    def generate(self, prompts: list[str], images: list[Any]) -> list[Generation]:
        """Generated texts (special tokens kept) and their tokens' statistics, for one batch."""
        import torch
        from transformers.modeling_outputs import BaseModelOutput

        self.load()
        inputs = move_inputs(self.processor(text=prompts, images=images, return_tensors="pt", padding=True),
                             self.device, self.dtype)
        mask = inputs["attention_mask"]
        model, config = self.torch_model, self.torch_model.generation_config
        with torch.inference_mode():
            # the encoder runs once: generation and the scoring pass share its outputs
            first = config.decoder_start_token_id
            first = model.config.text_config.decoder_start_token_id if first is None else first
            start = torch.full((len(prompts), 1), first, dtype=torch.long, device=self.device)
            encoded = model(**inputs, decoder_input_ids=start, use_cache=False).encoder_last_hidden_state
            sequences = model.generate(
                input_ids=inputs["input_ids"], attention_mask=mask,
                encoder_outputs=BaseModelOutput(last_hidden_state=encoded),  # generate expands it in place: its own
                max_new_tokens=self.settings.max_new_tokens, num_beams=self.settings.num_beams, do_sample=False)
            stats = self._token_stats(encoded, mask, sequences)
        texts = self.processor.tokenizer.batch_decode(sequences, skip_special_tokens=False)
        return [Generation(text, token_stats) for text, token_stats in zip(texts, stats)]

    def _token_stats(self, encoded: Any, mask: Any, sequences: Any) -> list[TokenStats]:
        """Per sequence, the statistics of its generated tokens from one teacher-forced decoder pass.

        ``sequences`` start with the decoder start token; each is scored up to its first EOS.
        """
        from transformers.modeling_outputs import BaseModelOutput

        eos = self.torch_model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        generated = [row[1:] for row in sequences.tolist()]
        lengths = [next((i + 1 for i, t in enumerate(row) if t in eos), len(row)) for row in generated]
        width = max(lengths, default=0)
        if width == 0:
            return [TokenStats((), (), ()) for _ in generated]
        decoder_input, targets = sequences[:, :width], sequences[:, 1:width + 1]
        vocab = self.torch_model.config.text_config.vocab_size
        step = max(1, SCORING_LOGITS_BUDGET // (width * vocab))
        logps, masses = [], []
        for r in range(0, len(generated), step):
            logits = self.torch_model(encoder_outputs=BaseModelOutput(last_hidden_state=encoded[r:r + step]),
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

    # -- questions ------------------------------------------------------------------------
    def answer(self, queries: Sequence[Query], views: Sequence[str] | None = None) -> list[list[Payload]]:
        """The scored payloads of every query, in order (the one path of generation, parsing,
        scoring and views). ``views``: the views of the box tasks' queries (None: the settings')."""
        views = tuple(self.settings.views if views is None else views)
        viewed = [q.task.strip("<>") in VIEW_TASKS for q in queries]
        jobs = [(k, view) for k in range(len(queries)) for view in (None, *(views if viewed[k] else ()))]
        size = self.batch_size * (1 + len(views)) if views and any(viewed) else self.batch_size
        out: list[list[Payload]] = [[] for _ in queries]
        seen: list[list[list]] = [[] for _ in queries]
        for start in range(0, len(jobs), size):
            chunk = jobs[start:start + size]
            images = [queries[k].image if view is None else view_image(queries[k].image, view) for k, view in chunk]
            generations = self.generate([queries[k].prompt_text() for k, _ in chunk], images)
            for (k, view), generation in zip(chunk, generations):
                query = queries[k]
                width, height = query.size
                if view is None:
                    out[k] = self.parse(query.task, generation.text, width, height, query.caption(), generation.stats)
                    continue
                payloads = self.parse(query.task, generation.text, width, height, query.caption(), generation.stats,
                                      "view_")
                seen[k].append(upright_scored_boxes(payloads, view, width, height))
        settings = self.settings
        for k in (k for k in range(len(queries)) if viewed[k] and views):
            added, confirmed = apply_views(out[k], seen[k], settings.view_iou, settings.view_min_confirmations,
                                           settings.view_fusion, task_spec(queries[k].task).region_type)
            out[k].extend(added)
            if settings.view_fusion:
                self.stats["view_added"] += len(added)
            for view, count in zip(views, confirmed):
                self.stats[f"view_confirmed/{view}"] += count
        return out

    def predict(self, images: Sequence[Any], tasks: Sequence[str] | None = None,
                views: Sequence[str] | None = None) -> list[Prediction]:
        """Every task (default: the settings') on every image, in :data:`TASK_ORDER`: grounding
        grounds each of the image's own captions (brief, detailed, more detailed: the phrases
        take the caption's granularity), region tasks are prompted with each of its OD boxes
        (segmentation puts the mask on that box's payload, a description is its child payload
        with the box). ``views``: as in :meth:`answer`."""
        chosen = {task_spec(t).name for t in (self.settings.tasks if tasks is None else tasks)}
        predictions = [Prediction() for _ in images]
        captions: list[list[int]] = [[] for _ in images]  # indices of the caption payloads grounding grounds
        objects: list[list[int]] = [[] for _ in images]  # indices of the OD payloads region tasks are prompted with
        for task in (t for t in TASK_ORDER if t in chosen):
            spec = task_spec(task)
            asked: list[tuple[int, Query, int | None]] = []  # (image, query, index of the payload it depends on)
            for i, image in enumerate(images):
                payloads = predictions[i].payloads
                if spec.input is None:
                    asked.append((i, Query(image, task), None))
                elif spec.input == "text":
                    asked += [(i, Query(image, task, text=payloads[c]["text"]), c) for c in captions[i]]
                elif spec.input == "region":
                    asked += [(i, Query(image, task, bbox=payloads[o]["bbox"]), o) for o in objects[i]]
            answers = self.answer([query for _, query, _ in asked], views)
            for (i, _, parent), payloads in zip(asked, answers):
                prediction = predictions[i]
                if spec.input == "region" and spec.parse_type == "polygons":
                    if payloads:
                        prediction.payloads[parent].update(payloads[0])
                    continue
                if spec.input == "region":
                    payloads = [{**p, "bbox": list(prediction.payloads[parent]["bbox"])} for p in payloads[:1]]
                if spec.input == "text":
                    granularity = prediction.payloads[parent].get("granularity")
                    payloads = [{**p, "granularity": granularity} for p in payloads]
                first = len(prediction.payloads)
                if spec.kind == "caption":
                    captions[i].extend(range(first, first + len(payloads)))
                if task == "OD":
                    objects[i].extend(range(first, first + len(payloads)))
                prediction.payloads.extend(payloads)
                prediction.parents.extend([parent] * len(payloads))
        return predictions
