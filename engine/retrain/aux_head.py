"""The auxiliary per-cell detection head: keeps a small Florence-2's text encoder looking at
the image during training (``training.aux_loss_weight`` > 0; see ``shared/notes/demo-model.md``).

Left alone, a small Florence-2's BART encoder collapses to one vector for every position and
image within a few hundred steps, and the decoder stops reading the image. The head is a
``Linear(d_model, 1 + classes + 4)`` on the encoder output at the ``side x side`` image-grid
positions (the first ``side**2`` image tokens of each row, row-major: cell ``(r, c)`` covers
the normalised image area ``[c/side, (c+1)/side) x [r/side, (r+1)/side)``, since the processor
resizes the whole image to a square). Its loss, per batch:

- cross-entropy of a ``(1 + classes)``-way class map: each cell takes the class of the smallest
  box covering the cell's centre, else background (index 0); a box whose label is outside the
  head's vocabulary makes its cells ignored;
- plus L1 between the predicted and that box's normalised corners ``x0/W, y0/H, x1/W, y1/H``
  (0..1) on every covered cell, and on each box's centre cell when no box covers that
  cell's centre (small boxes).

- with ``max_words`` > 0, plus a binary cross-entropy of the words of each cell's region
  description: the ``max_words`` most frequent words of the ``REGION_TO_DESCRIPTION`` targets,
  multi-hot on the cells of the prompted box (the smallest described box covering a cell's
  centre; a small box's centre cell), described cells only. Shape classes alone never ask the
  encoder to keep an object's colour or size; the words do ("a small red triangle").

Targets come only from the training examples (``<OD>`` targets, :func:`od_boxes`; region
descriptions, :func:`described_boxes`; in the engine, the curated set's train split), never
from ground truth; the class and word vocabularies are those found there
(:func:`class_vocabulary`, :func:`word_vocabulary`). The head trains with the model and is
never saved into the checkpoint, which stays a plain Florence-2.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from engine.retrain.examples import Example
from florence2.format import prompt_region, target_regions
from florence2.loss import IGNORE_INDEX

Box = tuple[str, tuple[float, float, float, float]]
#: a described box: the description's words (lowercase, in order) and the normalised box
Described = tuple[tuple[str, ...], tuple[float, float, float, float]]
_WORD_RE = re.compile(r"[a-z0-9]+")


def od_boxes(examples: Iterable[Example]) -> dict[str, list[Box]]:
    """image_id -> ``(label, (x0, y0, x1, y1))`` of every box in the image's ``OD`` example
    targets; coordinates normalised to 0..1 (bin centres, ``(bin + 0.5) / 1000``). A label
    followed by 4k location tokens gives k boxes; other tasks' examples are ignored."""
    out: dict[str, list[Box]] = collections.defaultdict(list)
    for example in examples:
        if example.task != "OD":
            continue
        out[example.image_id].extend(target_regions(example.target))
    return dict(out)


def described_boxes(examples: Iterable[Example]) -> dict[str, list[Described]]:
    """image_id -> ``(words, (x0, y0, x1, y1))`` of every ``REGION_TO_DESCRIPTION`` example: the
    prompt's box (normalised 0..1, bin centres) and the target's lowercase words."""
    out: dict[str, list[Described]] = collections.defaultdict(list)
    for example in examples:
        if example.task != "REGION_TO_DESCRIPTION":
            continue
        box = prompt_region(example.prompt)
        if box is not None:
            out[example.image_id].append((tuple(_WORD_RE.findall(example.target.lower())), box))
    return dict(out)


def word_vocabulary(described: dict[str, list[Described]], max_words: int) -> tuple[str, ...]:
    """The ``max_words`` most frequent description words (each counted once per description; ties by word)."""
    counts = collections.Counter(word for image in described.values() for words, _ in image for word in set(words))
    return tuple(sorted(counts, key=lambda word: (-counts[word], word))[:max_words])


def cell_owners(boxes: list[tuple[float, float, float, float]], side: int, claims_centre: list[bool]) -> Any:
    """The index (into ``boxes``) of the box each of the ``side**2`` cells takes, -1 for none, as a
    (side**2,) int64 tensor: the smallest box covering the cell's centre; then a box with
    ``claims_centre`` set takes its own centre cell when no box took it (small boxes), larger first."""
    import torch

    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    cy, cx = (c.flatten() for c in torch.meshgrid(centres, centres, indexing="ij"))
    owners = torch.full((side * side,), -1, dtype=torch.long)
    # largest first, so the smallest box covering a cell's centre is written last and wins
    order = sorted(range(len(boxes)), key=lambda i: -(boxes[i][2] - boxes[i][0]) * (boxes[i][3] - boxes[i][1]))
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        owners[(cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)] = i
    for i in order:
        x0, y0, x1, y1 = boxes[i]
        col = min(side - 1, max(0, int((x0 + x1) / 2 * side)))
        row = min(side - 1, max(0, int((y0 + y1) / 2 * side)))
        if claims_centre[i] and owners[row * side + col] < 0:
            owners[row * side + col] = i
    return owners


def word_cell_targets(described: list[Described], words: tuple[str, ...], side: int) -> tuple[Any, Any]:
    """``(multi-hot (side**2, len(words)) float32, described (side**2,) bool)`` of one image: a
    cell takes the words of the box that owns it (:func:`cell_owners`)."""
    import torch

    index = {word: i for i, word in enumerate(words)}
    vectors = torch.zeros(len(described) + 1, len(words))  # the last row: no box
    for k, (found, _) in enumerate(described):
        vectors[k, [index[w] for w in found if w in index]] = 1.0
    owners = cell_owners([box for _, box in described], side, [True] * len(described))
    return vectors[owners], owners >= 0


def class_vocabulary(boxes: dict[str, list[Box]], max_classes: int) -> tuple[str, ...]:
    """The ``max_classes`` most frequent labels of ``boxes`` (ties by name), in that order."""
    counts = collections.Counter(label for image in boxes.values() for label, _ in image)
    return tuple(sorted(counts, key=lambda label: (-counts[label], label))[:max_classes])


def cell_targets(boxes: list[Box], classes: tuple[str, ...], side: int) -> tuple[Any, Any, Any]:
    """``(classes (side**2,) int64, boxes (side**2, 4) float32, box_mask (side**2,) bool)`` of
    one image; class 0 = background, ``1 + classes.index(label)`` otherwise, -100 = ignored (a
    cell owned by a box whose label is outside ``classes``; :func:`cell_owners`)."""
    import torch

    index = {label: i + 1 for i, label in enumerate(classes)}
    known = [label in index for label, _ in boxes]
    owners = cell_owners([box for _, box in boxes], side, known)
    # per box, then a last row for cells no box owns
    cls = torch.tensor([index.get(label, IGNORE_INDEX) for label, _ in boxes] + [0], dtype=torch.long)
    corners = torch.tensor([list(box) for _, box in boxes] + [[0.0] * 4], dtype=torch.float32)
    mask = torch.tensor(known + [False])
    return cls[owners], corners[owners], mask[owners]


@dataclass
class AuxTargets:
    """Per-image cell targets of a training set: ``classes`` (the head's vocabulary, background
    excluded), grid ``side``, ``by_image``: image_id -> :func:`cell_targets`; ``words`` (the
    description vocabulary, empty = no word term) and ``words_by_image``: image_id ->
    :func:`word_cell_targets`."""

    classes: tuple[str, ...]
    side: int
    by_image: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)
    words: tuple[str, ...] = ()
    words_by_image: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @classmethod
    def from_examples(cls, examples: Iterable[Example], side: int, max_classes: int,
                      max_words: int = 0) -> "AuxTargets":
        examples = list(examples)
        boxes = od_boxes(examples)
        classes = class_vocabulary(boxes, max_classes)
        targets = cls(classes, side, {image: cell_targets(b, classes, side) for image, b in boxes.items()})
        if max_words > 0:
            described = described_boxes(examples)
            targets.words = word_vocabulary(described, max_words)
            if targets.words:
                targets.words_by_image = {image: word_cell_targets(d, targets.words, side)
                                          for image, d in described.items()}
        return targets

    def collate(self, image_ids: list[str]) -> dict[str, Any]:
        """Batch tensors ``aux_classes`` (B, side**2; -100 for images without targets),
        ``aux_boxes`` (B, side**2, 4) and ``aux_box_mask`` (B, side**2)."""
        import torch

        cells = self.side * self.side
        empty = (torch.full((cells,), IGNORE_INDEX, dtype=torch.long), torch.zeros(cells, 4),
                 torch.zeros(cells, dtype=torch.bool))
        parts = [self.by_image.get(image_id, empty) for image_id in image_ids]
        out = {"aux_classes": torch.stack([p[0] for p in parts]), "aux_boxes": torch.stack([p[1] for p in parts]),
               "aux_box_mask": torch.stack([p[2] for p in parts])}
        if self.words:  # ``aux_words`` (B, side**2, W) multi-hot and ``aux_word_mask`` (B, side**2)
            none = (torch.zeros(cells, len(self.words)), torch.zeros(cells, dtype=torch.bool))
            words = [self.words_by_image.get(image_id, none) for image_id in image_ids]
            out["aux_words"] = torch.stack([w[0] for w in words])
            out["aux_word_mask"] = torch.stack([w[1] for w in words])
        return out


def grid_side(processor: Any) -> int:
    """Side of the image-token grid of a Florence-2 processor (image tokens minus the pooled one)."""
    import math

    return math.isqrt(int(processor.num_image_tokens) - int(processor.num_additional_image_tokens))


def new_head(d_model: int, classes: int, seed: int, words: int = 0) -> Any:
    """The head, ``Linear(d_model, 1 + classes + 4 + words)``, with seeded default (uniform) init."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Linear(d_model, 1 + classes + 4 + words)


def aux_loss(head: Any, encoder_hidden: Any, input_ids: Any, image_token_id: int, batch: dict[str, Any]) -> Any:
    """Cross-entropy of the class map (mean over non-ignored cells) + L1 of the boxes (mean
    over the masked cells' coordinates) + with word targets, the binary cross-entropy of the
    described cells' words (mean over those cells and words); a 0-d tensor, 0 when the batch
    has no target.

    ``encoder_hidden``: (B, L, d_model) BART encoder output; ``input_ids``: (B, L), each row
    holding at least ``side**2`` image tokens; ``batch``: the :meth:`AuxTargets.collate` tensors.
    """
    import torch.nn.functional as F

    classes, boxes, box_mask = batch["aux_classes"], batch["aux_boxes"], batch["aux_box_mask"]
    cells = classes.shape[1]
    is_image = input_ids == image_token_id
    take = is_image & (is_image.cumsum(dim=1) <= cells)
    out = head(encoder_hidden[take].view(len(input_ids), cells, -1).float())  # (B, cells, 1 + C + 4 + W)
    words = batch["aux_words"].shape[-1] if "aux_words" in batch else 0
    end = out.shape[-1] - words
    logits, predicted, word_logits = out[..., :end - 4], out[..., end - 4:end], out[..., end:]
    loss = encoder_hidden.new_zeros((), dtype=out.dtype)
    if words and batch["aux_word_mask"].any():
        described = batch["aux_word_mask"]
        loss = loss + F.binary_cross_entropy_with_logits(word_logits[described], batch["aux_words"][described])
    if (classes != IGNORE_INDEX).any():
        loss = loss + F.cross_entropy(logits.flatten(0, 1), classes.flatten(), ignore_index=IGNORE_INDEX)
    if box_mask.any():
        loss = loss + F.l1_loss(predicted[box_mask], boxes[box_mask])
    return loss
