"""The facts a text states about a scene of shapes and words, read over a known vocabulary.

Evaluation only (:mod:`engine.report.kind_quality`). Texts are lower-cased and read as tokens
(runs of letters and digits). A fact is a tuple:

- ``("object", colour, shape)``: a shape noun ("circle" or "circles") right after a colour
  ("a small red circle", "two red circles", "the red circle");
- ``("word", word)``: a single token in double or single quotes (``"hello"``), or a vocabulary
  word anywhere in the text;
- ``("count", noun, n)``: a number (``one`` .. ``twelve`` or digits) followed by at most three
  adjective tokens (sizes, one colour) and a noun: ``noun`` is the shape ("two circles"), ``"colour
  shape"`` ("two blue circles"), ``"shape"`` ("three shapes", "three objects") or ``"word"``
  ("two words"). "a"/"an" are never counts.

What a scene makes true (:func:`true_facts`): its (colour, shape) pairs, its words, and the exact
counts per shape, per (colour, shape), of all shapes and of all words (zero counts are not
facts). What a caption of a granularity is asked to state (:func:`expected_facts`): ``brief``:
the objects and the words; ``detailed``: also the totals of shapes and words; ``more_detailed``:
also the count of each shape. (The scenes' own captions, :mod:`engine.demo.scene_text`, state
exactly these.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

NUMBERS = {w: n for n, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                       "nine", "ten", "eleven", "twelve"))}
SIZE_WORDS = frozenset({"small", "medium", "sized", "large", "big", "tiny", "little", "huge"})
GENERIC_SHAPE = frozenset({"shape", "shapes", "object", "objects"})
GENERIC_WORD = frozenset({"word", "words"})
TOKEN = re.compile(r"[a-z0-9]+")
QUOTED = re.compile(r"[\"'\u201c\u201d\u2018\u2019]([a-z0-9]+)[\"'\u201c\u201d\u2018\u2019]")
Fact = tuple


@dataclass(frozen=True)
class Vocabulary:
    """The names a text can use: shape nouns (singular), colour names and the rendered words."""

    shapes: tuple[str, ...]
    colors: tuple[str, ...]
    words: tuple[str, ...]

    def shape(self, token: str) -> str | None:
        """The shape a token names (singular or plural "s"), else None."""
        if token in self.shapes:
            return token
        return token[:-1] if token.endswith("s") and token[:-1] in self.shapes else None


@dataclass(frozen=True)
class Thing:
    """A truth object: ``category`` a shape name or ``"text"``; ``color``; ``text``, a word's text."""

    category: str
    color: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Named:
    """What a phrase names: specific shapes, colours and words, and the generic nouns used."""

    shapes: frozenset[str]
    colors: frozenset[str]
    words: frozenset[str]
    any_shape: bool
    any_word: bool

    def fits(self, thing: Thing) -> bool:
        """Whether the phrase can refer to ``thing`` (it names something, and nothing it names
        contradicts it)."""
        if thing.category == "text":
            return (bool(self.words) or self.any_word) and not self.shapes and not self.colors \
                and (not self.words or (thing.text or "").lower() in self.words)
        return (bool(self.shapes) or bool(self.colors) or self.any_shape) and not self.words \
            and (not self.shapes or thing.category in self.shapes) \
            and (not self.colors or thing.color in self.colors)


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def _number(token: str) -> int | None:
    if token in NUMBERS:
        return NUMBERS[token]
    return int(token) if token.isdigit() and len(token) < 4 else None


def _words(text: str, tokens: list[str], vocabulary: Vocabulary) -> set[str]:
    return set(QUOTED.findall(text.lower())) | {t for t in tokens if t in vocabulary.words}


def facts(text: str, vocabulary: Vocabulary) -> set[Fact]:
    """Every fact ``text`` states (module docstring)."""
    tokens = _tokens(text)
    out: set[Fact] = {("word", w) for w in _words(text, tokens, vocabulary)}
    for i, token in enumerate(tokens):
        shape = vocabulary.shape(token)
        if shape and i and tokens[i - 1] in vocabulary.colors:
            out.add(("object", tokens[i - 1], shape))
        n = _number(token)
        if n is None:
            continue
        color = None
        for j in range(i + 1, min(i + 5, len(tokens))):
            nxt = tokens[j]
            if nxt in vocabulary.colors and color is None:
                color = nxt
                continue
            if nxt in SIZE_WORDS:
                continue
            noun = vocabulary.shape(nxt)
            if noun:
                out.add(("count", f"{color} {noun}" if color else noun, n))
            elif nxt in GENERIC_SHAPE and color is None:
                out.add(("count", "shape", n))
            elif nxt in GENERIC_WORD and color is None:
                out.add(("count", "word", n))
            break
    return out


def named(text: str, vocabulary: Vocabulary) -> Named:
    """The shapes, colours and words a phrase names, and whether it uses a generic noun."""
    tokens = _tokens(text)
    return Named(shapes=frozenset(s for s in map(vocabulary.shape, tokens) if s),
                 colors=frozenset(t for t in tokens if t in vocabulary.colors),
                 words=frozenset(_words(text, tokens, vocabulary)),
                 any_shape=any(t in GENERIC_SHAPE for t in tokens), any_word=any(t in GENERIC_WORD for t in tokens))


def true_facts(things: Iterable[Thing]) -> set[Fact]:
    """Every fact a scene of ``things`` makes true (module docstring)."""
    things = list(things)
    shapes = [t for t in things if t.category != "text"]
    words = [t for t in things if t.category == "text"]
    out: set[Fact] = {("object", t.color, t.category) for t in shapes}
    out |= {("word", (t.text or "").lower()) for t in words}
    for name in {t.category for t in shapes}:
        out.add(("count", name, sum(t.category == name for t in shapes)))
    for color, name in {(t.color, t.category) for t in shapes}:
        out.add(("count", f"{color} {name}", sum((t.color, t.category) == (color, name) for t in shapes)))
    if shapes:
        out.add(("count", "shape", len(shapes)))
    if words:
        out.add(("count", "word", len(words)))
    return out


def expected_facts(things: Iterable[Thing], granularity: str) -> set[Fact]:
    """The facts a caption of ``granularity`` is asked to state (module docstring)."""
    every = true_facts(things)
    out = {f for f in every if f[0] in ("object", "word")}
    if granularity in ("detailed", "more_detailed"):
        out |= {f for f in every if f[0] == "count" and f[1] in ("shape", "word")}
    if granularity == "more_detailed":
        out |= {f for f in every if f[0] == "count" and " " not in f[1] and f[1] not in ("shape", "word")}
    return out
