"""The Table 3 text measures approximated without spaCy, from the rule-based noun-phrase chunker.

Curation uses them when the configured pipeline is the default (``en_core_web_sm``) and it is
not installed (``engine.curate.text_metrics.metrics_function``), so a fresh install curates
captions; the real measures need the parser (``python -m spacy download en_core_web_sm``).

Per text, with the phrases of :func:`annotators.noun_phrases.rule_based_noun_phrases` (a phrase
is a run of determiners, numbers, adjectives and nouns, headed by its last word):

* objects = the phrases (one head noun each; a compound such as "coffee cup" counts once);
* attributes = the words of a phrase before its head that are neither determiners nor numbers
  (adjectives, and nouns used as modifiers);
* object_complexity = the mean, over the phrases, of the head's degree as a parser would link
  it: one edge per other word of its phrase (its modifiers) plus one to the rest of the text
  when the text has words outside the phrase (0 without phrases). For "a man holds a red
  umbrella" that is (2 + 3) / 2 = 2.5, the parser's value;
* actions, proper_nouns and action_complexity are 0: the chunker tags no verbs or names, so
  the action-complexity rule does not judge these texts.
"""

from __future__ import annotations

import re
from typing import Sequence

import pyarrow as pa

from annotators.noun_phrases import DETERMINERS, rule_based_noun_phrases
from storage.schema import TEXT_METRICS

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)*")

NUMBER_WORDS = frozenset("one two three four five six seven eight nine ten eleven twelve dozen".split())


def _is_attribute(word: str) -> bool:
    lower = word.lower()
    return lower not in DETERMINERS and lower not in NUMBER_WORDS and not lower.isdigit()


def text_measures(text: str) -> dict[str, float]:
    """The approximated measures of one text (keys: the :data:`TEXT_METRICS` measures)."""
    phrases = rule_based_noun_phrases(text)
    words = len(_WORD.findall(text))
    degrees, attributes = [], 0
    for phrase in phrases:
        phrase_words = _WORD.findall(phrase.text)
        modifiers = phrase_words[:-1]
        attributes += sum(_is_attribute(w) for w in modifiers)
        degrees.append(len(modifiers) + (1 if words > len(phrase_words) else 0))
    return {
        "objects": len(phrases),
        "attributes": attributes,
        "actions": 0,
        "proper_nouns": 0,
        "object_complexity": sum(degrees) / len(degrees) if degrees else 0.0,
        "action_complexity": 0.0,
    }


def rule_based_metrics(texts: Sequence[str]) -> pa.Table:
    """A :data:`TEXT_METRICS` table of ``texts`` with the approximated measures, one row per text."""
    rows = [text_measures(text) for text in texts]
    columns = {"text": list(texts)} | {m: [r[m] for r in rows] for m in TEXT_METRICS.names[1:]}
    return pa.Table.from_pydict(columns, schema=TEXT_METRICS)
