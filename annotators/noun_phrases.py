"""Noun phrases of a caption, with character spans into the caption.

Two extractors behind one call, :class:`NounPhraseExtractor`:

* a configured spaCy pipeline (a package name or a directory written by ``nlp.to_disk``):
  its ``Doc.noun_chunks`` (needs a pipeline that sets dependency labels and POS);
* otherwise :func:`rule_based_noun_phrases`, a small chunker for plain English captions:
  a phrase is a maximal run of determiners, numbers, adjectives and nouns, broken at
  punctuation, prepositions, conjunctions, pronouns and verbs (a built-in word list plus
  ``-ing`` forms). Good enough for "a red circle and a blue square next to the word hello".

Spans are character offsets into the original text: ``text[p.start:p.end] == p.text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotators.base import AnnotatorError
from hf.loading import require_package


@dataclass(frozen=True)
class Phrase:
    """A noun phrase: its text and its ``[start, end)`` character span in the source text."""

    text: str
    start: int
    end: int


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)*|[^\sA-Za-z0-9]")

DETERMINERS = frozenset("a an the this that these those some any each every no another".split())

#: words that end a phrase and are not part of any phrase
BREAK_WORDS = frozenset(
    # prepositions and particles
    "of on in at to into onto from with without by for about above below under over behind "
    "beside besides between near next inside outside through across along around against "
    "among toward towards up down off out upon within via like than as "
    # conjunctions and wh-words
    "and or but nor so yet while whereas because although though if then where when which "
    "who whom whose what how why "
    # pronouns and expletives
    "i you he she it we they me him her us them its their his our your my there here "
    "itself themselves "
    # auxiliaries, copulas and common caption verbs
    "is are was were be been being am has have had do does did can could will would may "
    "might must shall should shows show showed shown depicts depict depicted contains contain "
    "contained features feature featured displays display displayed holds hold held sits sit "
    "sat stands stand stood lies lie lay written drawn painted placed located positioned "
    "seen appears appear looks look says say reads read wears wear worn "
    # adverbs that never head a noun phrase
    "also not very too just only really".split()
)

#: ``-ing`` words that are nouns, so they do not break a phrase
ING_NOUNS = frozenset(
    "building buildings painting paintings ceiling clothing thing things something nothing "
    "anything everything king ring rings string strings wing wings morning evening evenings "
    "sibling pudding railing railings awning lighting spring swing".split()
)


def _is_break(word: str) -> bool:
    lower = word.lower()
    if not word[0].isalnum():
        return True
    if lower in BREAK_WORDS:
        return True
    return lower.endswith("ing") and len(lower) > 4 and lower not in ING_NOUNS


def rule_based_noun_phrases(text: str) -> list[Phrase]:
    """Noun phrases of ``text`` by the rule-based chunker (see the module docstring).

    A phrase must hold at least one word that is not a determiner; leading determiners are
    kept ("a red circle"). Returns phrases in text order.
    """
    phrases: list[Phrase] = []
    run: list[re.Match[str]] = []

    def flush() -> None:
        if any(m.group().lower() not in DETERMINERS for m in run):
            start, end = run[0].start(), run[-1].end()
            phrases.append(Phrase(text[start:end], start, end))
        run.clear()

    for match in _TOKEN.finditer(text):
        word = match.group()
        if _is_break(word):
            flush()
        elif word.lower() in DETERMINERS and run and any(m.group().lower() not in DETERMINERS for m in run):
            flush()  # a determiner after content words starts a new phrase
            run.append(match)
        else:
            run.append(match)
    flush()
    return phrases


class NounPhraseExtractor:
    """Callable ``text -> list[Phrase]``; spaCy's noun chunks when ``spacy_model`` is set.

    ``spacy_model`` is an installed pipeline package name or a pipeline directory. It is
    checked at construction (missing spaCy or pipeline raises :class:`AnnotatorError`) and
    loaded on first use.
    """

    def __init__(self, spacy_model: str = "") -> None:
        self.spacy_model = str(spacy_model or "")
        self._nlp: Any = None
        if self.spacy_model:
            require_package("spacy", "text")
            import spacy

            if not (Path(self.spacy_model).expanduser().is_dir() or spacy.util.is_package(self.spacy_model)):
                raise AnnotatorError(
                    f"spaCy pipeline {self.spacy_model!r} is neither a directory nor an installed package; "
                    f"install it (e.g. `python -m spacy download en_core_web_sm`) or give its directory"
                )

    @property
    def uses_spacy(self) -> bool:
        return bool(self.spacy_model)

    def _pipeline(self) -> Any:
        if self._nlp is None:
            import spacy

            self._nlp = spacy.load(str(Path(self.spacy_model).expanduser())
                                   if Path(self.spacy_model).expanduser().is_dir() else self.spacy_model)
        return self._nlp

    def __call__(self, text: str) -> list[Phrase]:
        if not text:
            return []
        if not self.uses_spacy:
            return rule_based_noun_phrases(text)
        doc = self._pipeline()(text)
        return [Phrase(chunk.text, chunk.start_char, chunk.end_char) for chunk in doc.noun_chunks]
