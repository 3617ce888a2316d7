"""Per-item confidence of Florence-2 generations, from the model's distributions over each item's own tokens.

Two steps, both independent of how the sequence was decoded (greedy or beam search):

1. :func:`token_statistics` (torch): from the logits of one teacher-forced decoder pass over a
   generated sequence, the log-probability ``log p_t(y_t)`` of every generated token ``y_t``
   (softmax of the raw logits at temperature 1, no logits processors) and, where ``y_t`` is a
   location token ``<loc_c>``, the probability mass the model put within ``window`` bins of it:
   ``M_t = sum_{b = max(0, c - window)}^{min(999, c + window)} p_t(<loc_b>)`` (over the whole
   vocabulary's softmax, so mass on a non-location token counts against the coordinate).
2. :func:`item_tokens` (pure Python): which generated tokens make up each item that
   transformers' ``Florence2PostProcessor`` parses from the text, found with the same regular
   expressions on the same text (the tokens' strings concatenated, as its ``decode_with_spans``
   writes them, ``<s>``/``</s>``/``<pad>`` removed), in the processor's item order; then
   :func:`item_scores` turns them into one score per item:

   - a region (OD / DENSE_REGION_CAPTION / phrase-grounding box, OCR quad) scores
     ``P_label * G_coord`` with ``P_label = exp(mean_{t in label} log p_t(y_t))`` (geometric mean
     of the label text's token probabilities; the text before a group of boxes is the label of
     every box of the group; 1 when the label has no token) and
     ``G_coord = exp(mean_j log M_j)`` (geometric mean over the item's 4 or 8 coordinates);
     a coordinate that the text spells with several ordinary tokens uses the product of their
     probabilities instead of ``M``;
   - a caption (pure text) scores ``exp(mean_t log p_t(y_t))`` over every generated token after
     the leading special tokens (the forced ``<s>``, repeated by some checkpoints), up to and
     including the ``</s>`` that ends it.

   Every score is a probability in ``[0, 1]``. :func:`sequence_score` is the caption formula over a
   whole sequence (the fallback when the items cannot be matched to tokens).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Collection, Sequence

from florence2.format import LOC_TOKENS, NUM_BINS

#: token strings the processor removes before parsing regions (``text.replace(...)``)
DROPPED_PIECES = ("<s>", "</s>", "<pad>")
#: the transformers post-processor's patterns (``Florence2PostProcessor``, transformers 5.x)
PHRASE_RE = re.compile(r"([^<]+(?:<loc_\d+>){4,})")
LABEL_RE = re.compile(r"^\s*(.*?)(?=<od>|</od>|<box>|</box>|<bbox>|</bbox>|<loc_)")
BOX_RE = re.compile(r"<loc_(\d+)><loc_(\d+)><loc_(\d+)><loc_(\d+)>")
OCR_RE = r"(.+?)" + r"<loc_(\d+)>" * 8
_LOG_FLOOR = -1e4  # log of a probability that underflowed to 0: the score becomes 0, never NaN


@dataclass(frozen=True)
class TokenStats:
    """Per generated token (from the first token after the decoder start up to the first EOS):

    ``pieces``: the token's string as the processor decodes it alone (special tokens verbatim);
    ``logp``: ``log p_t(y_t)``; ``loc_mass``: ``M_t`` for a location token, ``None`` otherwise.
    """

    pieces: tuple[str, ...]
    logp: tuple[float, ...]
    loc_mass: tuple[float | None, ...]


@dataclass(frozen=True)
class ItemTokens:
    """Token positions of one parsed item: its text, and each coordinate's token(s) in order."""

    label: tuple[int, ...]
    coords: tuple[tuple[int, ...], ...] = ()


# ----------------------------------------------------------------- tokens of each item
def _text_and_owners(pieces: Sequence[str]) -> tuple[str, list[int]]:
    """The text the processor parses, and for each of its characters the token it came from."""
    text, owners = [], []
    for i, piece in enumerate(pieces):
        if piece in DROPPED_PIECES:
            continue
        text.append(piece)
        owners.extend([i] * len(piece))
    return "".join(text), owners


def _tokens(owners: list[int], start: int, end: int) -> tuple[int, ...]:
    """Positions of the tokens that overlap characters ``start:end``."""
    return tuple(sorted(set(owners[start:end])))


def _location(owners: list[int], text: str, match: re.Match[str], group: int) -> tuple[int, ...]:
    """Tokens of the ``<loc_N>`` whose digits are ``group`` of ``match`` (the digits alone if not)."""
    start, end = match.span(group)
    if text.startswith("<loc_", start - 5) and text.startswith(">", end):
        start, end = start - 5, end + 1
    return _tokens(owners, start, end)


def _grouped_boxes(text: str, owners: list[int], banned: Collection[str] | None) -> list[ItemTokens]:
    """Items of ``description_with_bboxes`` (``banned`` None) and ``phrase_grounding``: one per box."""
    items = []
    for phrase in PHRASE_RE.finditer(text):
        base, phrase_text = phrase.start(1), phrase.group(1)
        label = LABEL_RE.search(phrase_text)
        if not label:
            continue
        if banned is not None and label.group().strip() in banned:
            continue
        label_tokens = _tokens(owners, base + label.start(1), base + label.end(1))
        for box in BOX_RE.finditer(text, base, phrase.end(1)):  # the processor searches phrase_text
            coords = tuple(_location(owners, text, box, g) for g in range(1, 5))
            items.append(ItemTokens(label_tokens, coords))
    return items


def _ocr_lines(text: str, owners: list[int], pattern: str | None) -> list[ItemTokens] | None:
    """Items of ``ocr``: one per ``text`` + 8 location tokens match (``None``: an unknown pattern)."""
    regex = re.compile(pattern or OCR_RE)
    if regex.groups != 9:
        return None
    items = []
    for line in regex.finditer(text):
        label = _tokens(owners, line.start(1), line.end(1))
        coords = tuple(_location(owners, text, line, g) for g in range(2, 10))
        items.append(ItemTokens(label, coords))
    return items


#: special tokens a generation may open with (Florence-2-large repeats ``<s>``): never scored
LEADING_SPECIALS = ("<s>", "<pad>")


def leading_specials(pieces: Sequence[str], forced_bos: str | None = "<s>") -> int:
    """How many of the first ``pieces`` are special tokens (``forced_bos`` and
    :data:`LEADING_SPECIALS`, however many times repeated)."""
    specials = {*LEADING_SPECIALS, *([forced_bos] if forced_bos is not None else [])}
    count = 0
    while count < len(pieces) and pieces[count] in specials:
        count += 1
    return count


def item_tokens(parse_type: str, pieces: Sequence[str], banned: Collection[str] = (),
                ocr_pattern: str | None = None, forced_bos: str | None = "<s>") -> list[ItemTokens] | None:
    """The tokens of each item the processor parses for ``parse_type``, in its order.

    ``pieces`` are the generated tokens' strings (see :class:`TokenStats`); ``banned`` the
    grounding phrases the processor drops; ``ocr_pattern`` its OCR pattern (default: 8 locations).
    ``pure_text`` gives one item: every token after the leading special tokens
    (:func:`leading_specials`). ``None`` for a parse
    type without per-item scores (polygons) or a pattern this module cannot mirror.
    """
    if parse_type == "pure_text":
        return [ItemTokens(tuple(range(leading_specials(pieces, forced_bos), len(pieces))))]
    text, owners = _text_and_owners(pieces)
    if parse_type == "description_with_bboxes":
        return _grouped_boxes(text, owners, None)
    if parse_type == "phrase_grounding":
        return _grouped_boxes(text, owners, set(banned))
    if parse_type == "ocr":
        return _ocr_lines(text, owners, ocr_pattern)
    return None


# ------------------------------------------------------------------------- scores
def _log(value: float) -> float:
    return math.log(value) if value > 0 else _LOG_FLOOR


def _clamp(probability: float) -> float:
    return min(1.0, max(0.0, probability))


def geometric_mean_probability(log_probs: Sequence[float]) -> float:
    """``exp(mean(log_probs))``, a probability in [0, 1]; 1 for no tokens."""
    if not log_probs:
        return 1.0
    return _clamp(math.exp(sum(max(v, _LOG_FLOOR) for v in log_probs) / len(log_probs)))


def coordinate_mass(stats: TokenStats, positions: Sequence[int]) -> float:
    """``M`` of one coordinate: the window mass of its location token, or the product of the
    probabilities of the several tokens that spell it."""
    if len(positions) == 1 and stats.loc_mass[positions[0]] is not None:
        return _clamp(float(stats.loc_mass[positions[0]]))
    return _clamp(math.exp(max(sum(stats.logp[i] for i in positions), _LOG_FLOOR)))


def item_score(stats: TokenStats, item: ItemTokens) -> float:
    """``P_label * G_coord`` of a region item; the geometric-mean token probability of a caption."""
    p_label = geometric_mean_probability([stats.logp[i] for i in item.label])
    if not item.coords:
        return p_label
    g_coord = math.exp(sum(_log(coordinate_mass(stats, c)) for c in item.coords) / len(item.coords))
    return _clamp(p_label * g_coord)


def item_scores(parse_type: str, stats: TokenStats, banned: Collection[str] = (),
                ocr_pattern: str | None = None, forced_bos: str | None = "<s>") -> list[float] | None:
    """One score per parsed item of ``parse_type`` (see the module docstring), in the processor's order."""
    items = item_tokens(parse_type, stats.pieces, banned, ocr_pattern, forced_bos)
    return None if items is None else [item_score(stats, item) for item in items]


def sequence_score(stats: TokenStats, forced_bos: str | None = "<s>") -> float | None:
    """The caption formula over the whole sequence; ``None`` for an empty one."""
    start = leading_specials(stats.pieces, forced_bos)
    return geometric_mean_probability(stats.logp[start:]) if len(stats.logp) > start else None


# ---------------------------------------------------------------- torch statistics
def location_index(tokenizer: Any, vocab_size: int) -> tuple[Any, Any]:
    """``(loc_ids, loc_bin)``: the 1000 location tokens' ids (bin order) and, per vocabulary id,
    its bin (-1 for every other token), as torch long tensors on the CPU."""
    import torch

    loc_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(LOC_TOKENS)), dtype=torch.long)
    if len(set(loc_ids.tolist())) != NUM_BINS or int(loc_ids.max()) >= vocab_size:
        raise ValueError("the tokenizer lacks Florence-2's location tokens <loc_0>..<loc_999>")
    loc_bin = torch.full((vocab_size,), -1, dtype=torch.long)
    loc_bin[loc_ids] = torch.arange(NUM_BINS)
    return loc_ids, loc_bin


def token_statistics(logits: Any, targets: Any, loc_ids: Any, loc_bin: Any, window: int) -> tuple[Any, Any]:
    """``log p_t(y_t)`` and the window mass ``M_t`` (NaN where ``y_t`` is no location token).

    ``logits``: ``(..., T, V)`` raw logits whose position ``t`` predicts ``targets[..., t]``;
    ``loc_ids``/``loc_bin`` from :func:`location_index` (on ``logits``' device); ``window`` in
    bins. Returns two float32 tensors shaped like ``targets``.
    """
    import torch

    log_norm = logits.float().logsumexp(-1)  # no full log-softmax copy of the logits
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1).float() - log_norm
    mass = torch.full_like(logp, float("nan"))
    bins = loc_bin[targets]
    is_loc = bins >= 0
    if bool(is_loc.any()):
        located = logits[is_loc].index_select(-1, loc_ids).float()  # (locations, 1000)
        probs = (located - log_norm[is_loc].unsqueeze(-1)).exp().double()
        cumulative = torch.nn.functional.pad(probs.cumsum(-1), (1, 0))
        chosen = bins[is_loc]
        low = (chosen - window).clamp(min=0).unsqueeze(-1)
        high = (chosen + window + 1).clamp(max=NUM_BINS).unsqueeze(-1)
        mass[is_loc] = (cumulative.gather(-1, high) - cumulative.gather(-1, low)).squeeze(-1).float()
    return logp, mass
