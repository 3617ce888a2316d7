"""The texts of a synthetic scene at every FLD-5B granularity, with their phrase -> object links.

:func:`scene_texts` writes, from a scene's objects (shapes with their colour and box; words with
their text and ink colour), the image size and the background style:

- ``captions``: ``brief`` (the scenes' one-sentence caption, unchanged since the demo's figures
  depend on it: every shape by colour and name, then the words, the grammar
  :mod:`engine.demo.spacy_pipeline` parses; 12 word tokens on average, FLD-5B's brief 8),
  ``detailed`` (31 on average, FLD-5B 32: the background, the totals, every shape with its
  colour and rough size, the words and their colour) and ``more_detailed`` (78 on average,
  FLD-5B 71: adds the background's look, the count per shape, each object's position and
  relations between neighbouring shapes);
- ``phrases``: per granularity, every noun phrase of the caption that refers to objects, as a
  :class:`Phrase`: its character span ``[start, end)`` (``caption[start:end] == text``) and the
  indexes (into the scene's object list) of the objects it refers to; a plural phrase ("two
  circles", "three shapes") refers to every object it counts;
- ``descriptions``: a short description per object, in object order ("a small red triangle";
  a word: ``the word "cat" in black``);
- ``relations``: the (object, relation, object) triples the more detailed caption states.

Facts come from the geometry alone and are always true; only the wording (which sentence
template, which verb) is drawn from ``rng``, a stream of its own (the renderer seeds it from the
scene seed), so the pixels never depend on it.

Geometry (boxes: absolute pixels ``[x0, y0, x1, y1]`` of the upright image, x1/y1 exclusive):

- rough size (:func:`size_word`): the box's longer side over the image's shorter side:
  below 0.2 ``small``, below 0.3 ``medium-sized``, else ``large``;
- position (:func:`position`): the box centre's third of the image, vertically ``top`` /
  ``middle`` / ``bottom`` and horizontally ``left`` / ``centre`` / ``right``;
- relation of ``a`` to ``b`` (:func:`relation`): ``next to`` when their vertical extents overlap
  and the horizontal gap between them is under 0.15 of the image's shorter side; else ``to the
  left of`` (a.x1 <= b.x0), ``to the right of`` (b.x1 <= a.x0), ``above`` (a.y1 <= b.y0) or
  ``below`` (b.y1 <= a.y0), the first that holds.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Sequence, Union

GRANULARITIES = ("brief", "detailed", "more_detailed")
SIZES = ("small", "medium-sized", "large")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve")
#: background style -> (short phrase for the detailed caption, sentence for the more detailed one);
#: a style not listed is named by its registry name
BACKGROUNDS = {
    "plain": ("a plain light background",
              "The background is plain and light, shading gently from one side to the other."),
    "grid": ("a grid background",
             "The background is a light sheet covered by a grid of thin dark lines."),
    "textured": ("a textured background",
                 "The background is a mottled, textured surface with soft patches of light and shade."),
}


@dataclass(frozen=True)
class TextObject:
    """What the texts need of one scene object: ``category`` (a shape name or ``"text"``),
    ``color``, ``bbox`` (absolute pixels x0 y0 x1 y1) and the word for a ``text`` object."""

    category: str
    color: str
    bbox: tuple[float, float, float, float]
    text: str | None = None

    @property
    def is_word(self) -> bool:
        return self.category == "text"


@dataclass(frozen=True)
class Phrase:
    """A noun phrase of a caption: characters ``[start, end)`` and the indexes of its objects."""

    start: int
    end: int
    text: str
    objects: tuple[int, ...]


@dataclass(frozen=True)
class SceneTexts:
    """Captions, phrases (per granularity), per-object descriptions and the stated relations."""

    captions: dict[str, str]
    phrases: dict[str, list[Phrase]]
    descriptions: list[str]
    relations: list[tuple[int, str, int]] = field(default_factory=list)


def number_word(n: int) -> str:
    """``n`` spelled out (0..12), else its digits."""
    return NUMBERS[n] if 0 <= n < len(NUMBERS) else str(n)


def size_word(box: Sequence[float], width: int, height: int) -> str:
    """``small`` / ``medium-sized`` / ``large``: the box's longer side over the image's shorter side."""
    ratio = max(box[2] - box[0], box[3] - box[1]) / min(width, height)
    return SIZES[0] if ratio < 0.2 else SIZES[1] if ratio < 0.3 else SIZES[2]


def position(box: Sequence[float], width: int, height: int) -> tuple[str, str]:
    """(vertical, horizontal) third of the box centre: top/middle/bottom, left/centre/right."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    vertical = "top" if cy < height / 3 else "bottom" if cy > 2 * height / 3 else "middle"
    horizontal = "left" if cx < width / 3 else "right" if cx > 2 * width / 3 else "centre"
    return vertical, horizontal


def position_phrase(vertical: str, horizontal: str) -> str:
    """Where an object is, as a prepositional phrase ("in the top left corner", "at the bottom")."""
    if vertical == "middle" and horizontal == "centre":
        return "in the centre"
    if vertical == "middle":
        return f"on the {horizontal} side"
    if horizontal == "centre":
        return f"at the {vertical}"
    return f"in the {vertical} {horizontal} corner"


def relation(a: Sequence[float], b: Sequence[float], width: int, height: int) -> str | None:
    """How box ``a`` lies relative to box ``b`` (module docstring), None when no rule holds."""
    overlap_y = min(a[3], b[3]) - max(a[1], b[1])
    gap_x = max(b[0] - a[2], a[0] - b[2])
    if overlap_y > 0 and 0 <= gap_x < 0.15 * min(width, height):
        return "next to"
    if a[2] <= b[0]:
        return "to the left of"
    if b[2] <= a[0]:
        return "to the right of"
    if a[3] <= b[1]:
        return "above"
    if b[3] <= a[1]:
        return "below"
    return None


Piece = Union[str, tuple[str, Sequence[int]]]  # plain text, or (phrase text, object indexes)


class _Writer:
    """Builds a caption sentence by sentence and records each phrase's character span."""

    def __init__(self) -> None:
        self.text = ""
        self.phrases: list[Phrase] = []

    def sentence(self, pieces: Sequence[Piece], end: str = ".") -> None:
        if self.text:
            self.text += " "
        first = True
        for piece in pieces:
            words, objects = (piece, None) if isinstance(piece, str) else piece
            if first and words:
                words, first = words[0].upper() + words[1:], False
            start = len(self.text)
            self.text += words
            if objects:
                self.phrases.append(Phrase(start, len(self.text), words, tuple(objects)))
        self.text += end


def _joined(items: list[list[Piece]]) -> list[Piece]:
    """Items as "a, b and c"."""
    out: list[Piece] = []
    for k, item in enumerate(items):
        if k:
            out.append(" and " if k == len(items) - 1 else ", ")
        out.extend(item)
    return out


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _plural(count: int, noun: str) -> str:
    return f"{number_word(count)} {noun}{'' if count == 1 else 's'}"


class _Scene:
    """The objects with their derived geometry words, and the sentences built from them."""

    def __init__(self, objects: Sequence[TextObject], width: int, height: int, style: str, rng: random.Random):
        self.objects, self.width, self.height, self.style, self.rng = list(objects), width, height, style, rng
        self.shapes = [i for i, o in enumerate(self.objects) if not o.is_word]
        self.words = [i for i, o in enumerate(self.objects) if o.is_word]
        self.size = [size_word(o.bbox, width, height) for o in self.objects]

    def description(self, i: int) -> str:
        o = self.objects[i]
        if o.is_word:
            return f'the word "{o.text}" in {o.color}'
        return f"{_article(self.size[i])} {self.size[i]} {o.color} {o.category}"

    def reference(self, i: int) -> str | None:
        """A definite phrase naming shape ``i`` alone among the shapes, or None."""
        o = self.objects[i]
        same = [j for j in self.shapes if (self.objects[j].color, self.objects[j].category) == (o.color, o.category)]
        if len(same) == 1:
            return f"the {o.color} {o.category}"
        if sum(self.size[j] == self.size[i] for j in same) == 1:
            return f"the {self.size[i]} {o.color} {o.category}"
        return None

    def there(self) -> str:
        """"there is" or "there are", agreeing with the first count of :meth:`totals`."""
        return "there is" if len(self.shapes or self.words) == 1 else "there are"

    def totals(self) -> list[Piece]:
        """"three shapes and one word" (each count a phrase of the objects it counts)."""
        items: list[list[Piece]] = []
        if self.shapes:
            items.append([(_plural(len(self.shapes), "shape"), self.shapes)])
        if self.words:
            items.append([(_plural(len(self.words), "word"), self.words)])
        return _joined(items)

    def groups(self) -> list[list[Piece]]:
        """The shapes grouped by (colour, shape): "a small red circle", "two large blue squares",
        "two blue circles, one small and one large"."""
        keys: dict[tuple[str, str], list[int]] = {}
        for i in self.shapes:
            keys.setdefault((self.objects[i].color, self.objects[i].category), []).append(i)
        out: list[list[Piece]] = []
        for (color, shape), members in keys.items():
            if len(members) == 1:
                out.append([(self.description(members[0]), members)])
                continue
            sizes = sorted({self.size[i] for i in members}, key=SIZES.index)
            if len(sizes) == 1:
                out.append([(f"{number_word(len(members))} {sizes[0]} {color} {shape}s", members)])
            else:
                counted = [f"{number_word(sum(self.size[i] == s for i in members))} {s}" for s in sizes]
                tail = ", ".join(counted[:-1]) + " and " + counted[-1]
                out.append([(f"{number_word(len(members))} {color} {shape}s", members), f", {tail}"])
        return out

    def words_sentence(self, where: bool) -> list[list[Piece]]:
        """One sentence per word ('The word "hello" is written in black [in the top left corner].')."""
        sentences = []
        for i in self.words:
            o = self.objects[i]
            place = f" {position_phrase(*position(o.bbox, self.width, self.height))}" if where else ""
            verb = self.rng.choice(("is written", "is printed", "appears"))
            sentences.append([(f'the word "{o.text}"', [i]), f" {verb} in {o.color}{place}"])
        return sentences


def _brief(scene: _Scene) -> _Writer:
    """The brief caption: ``"A red circle and a blue square with the word "hello"."`` (the
    grammar of :mod:`engine.demo.spacy_pipeline`, unchanged)."""
    writer = _Writer()
    shapes = [[(f"{_article(scene.objects[i].color)} {scene.objects[i].color} {scene.objects[i].category}", [i])]
              for i in scene.shapes]
    pieces: list[Piece] = _joined(shapes) if shapes else ["an empty background"]
    if scene.words:
        pieces.append(" with ")
        for k, i in enumerate(scene.words):
            pieces += [" and "] * bool(k) + [(f'the word "{scene.objects[i].text}"', [i])]
    writer.sentence(pieces)
    return writer


def _background(style: str) -> tuple[str, str]:
    return BACKGROUNDS.get(style, (f"a {style} background", f"The background is {style}."))


def _detailed(scene: _Scene) -> _Writer:
    writer = _Writer()
    background = _background(scene.style)[0]
    totals = scene.totals() or ["nothing"]
    writer.sentence(scene.rng.choice((
        ["this image shows ", *totals, f" on {background}"],
        [f"{scene.there()} ", *totals, f" on {background}"],
        [f"{background} holds ", *totals],
    )))
    groups = scene.groups()
    if groups:
        writer.sentence(scene.rng.choice((
            ["the shapes are " if len(scene.shapes) > 1 else "it is ", *_joined(groups)],
            ["it contains ", *_joined(groups)],
            [*_joined(groups), " can be seen"],
        )))
    for sentence in scene.words_sentence(where=False):
        writer.sentence(sentence)
    return writer


def _more_detailed(scene: _Scene) -> tuple[_Writer, list[tuple[int, str, int]]]:
    writer = _Writer()
    writer.sentence([_background(scene.style)[1][:-1]])
    totals = scene.totals() or ["no objects at all"]
    writer.sentence(scene.rng.choice(([f"altogether {scene.there()} ", *totals],
                                      ["the image contains ", *totals],
                                      ["in total it holds ", *totals])))
    per_shape: dict[str, list[int]] = {}
    for i in scene.shapes:
        per_shape.setdefault(scene.objects[i].category, []).append(i)
    if per_shape:
        items = [[(_plural(len(m), shape), m)] for shape, m in per_shape.items()]
        be = "is" if len(next(iter(per_shape.values()))) == 1 else "are"
        writer.sentence(scene.rng.choice(([f"counted by shape, there {be} ", *_joined(items)],
                                          ["the shapes comprise " if len(scene.shapes) > 1 else "it is ",
                                           *_joined(items)])))
    for i in scene.shapes:
        where = position_phrase(*position(scene.objects[i].bbox, scene.width, scene.height))
        verb = scene.rng.choice(("sits", "is", "appears", "can be seen"))
        writer.sentence([(scene.description(i), [i]), f" {verb} {where}"])
    stated = []
    ordered = sorted(scene.shapes, key=lambda i: (scene.objects[i].bbox[0] + scene.objects[i].bbox[2], i))
    for a, b in zip(ordered, ordered[1:]):
        said = relation(scene.objects[a].bbox, scene.objects[b].bbox, scene.width, scene.height)
        first, second = scene.reference(a), scene.reference(b)
        if said is None or first is None or second is None:
            continue
        writer.sentence([(first, [a]), f" is {said} ", (second, [b])])
        stated.append((a, said, b))
    for sentence in scene.words_sentence(where=True):
        writer.sentence(sentence)
    return writer, stated


def scene_texts(objects: Sequence[TextObject], width: int, height: int, style: str, rng: random.Random) -> SceneTexts:
    """Every text of a scene (module docstring); ``width``/``height``: the image size in pixels."""
    scene = _Scene(objects, width, height, style, rng)
    brief, detailed = _brief(scene), _detailed(scene)
    more, relations = _more_detailed(scene)
    writers = {"brief": brief, "detailed": detailed, "more_detailed": more}
    return SceneTexts(captions={g: w.text for g, w in writers.items()},
                      phrases={g: w.phrases for g, w in writers.items()},
                      descriptions=[scene.description(i) for i in range(len(scene.objects))],
                      relations=relations)
