"""Noun-phrase extraction: the rule-based chunker and the configured spaCy pipeline path."""

from __future__ import annotations

import pytest

from annotators.base import AnnotatorError
from annotators.noun_phrases import NounPhraseExtractor, Phrase, rule_based_noun_phrases

spacy = pytest.importorskip("spacy")
from spacy.language import Language  # noqa: E402

CAPTIONS = [
    "a red circle and a blue square next to the word hello",
    "A man holding a cup of coffee, sitting on two wooden chairs.",
    "The image shows a large building with a red sign that says OPEN.",
    "  there is   a dog!  ",
    "",
]

# Hand-made parses (POS, dependency label, head index) for the spaCy test pipeline: spaCy's
# English noun_chunks iterator reads exactly these attributes.
PARSES = {
    "running water near the old house": [
        ("ADJ", "amod", 1), ("NOUN", "ROOT", 1), ("ADP", "prep", 1),
        ("DET", "det", 5), ("ADJ", "amod", 5), ("NOUN", "pobj", 2),
    ],
}


@Language.component("fld_test_hand_parse")
def _hand_parse(doc):
    for token, (pos, dep, head) in zip(doc, PARSES[doc.text]):
        token.pos_, token.dep_, token.head = pos, dep, doc[head]
    return doc


@pytest.mark.parametrize("text", CAPTIONS)
def test_spans_index_the_original_text(text):
    for phrase in rule_based_noun_phrases(text):
        assert text[phrase.start:phrase.end] == phrase.text
        assert phrase.text == phrase.text.strip() and phrase.text


def test_synthetic_caption_chunks():
    text = "a red circle and a blue square next to the word hello"
    assert [p.text for p in rule_based_noun_phrases(text)] == ["a red circle", "a blue square", "the word hello"]


def test_verbs_prepositions_pronouns_and_punctuation_break_phrases():
    phrases = [p.text for p in rule_based_noun_phrases("A man holding a cup of coffee, sitting on two wooden chairs.")]
    assert phrases == ["A man", "a cup", "coffee", "two wooden chairs"]
    assert [p.text for p in rule_based_noun_phrases("there is a dog and it is sleeping")] == ["a dog"]
    # -ing nouns stay inside the phrase; a second determiner starts a new phrase
    assert [p.text for p in rule_based_noun_phrases("the tall building the sky")] == ["the tall building", "the sky"]


def test_determiners_alone_are_not_phrases():
    assert rule_based_noun_phrases("the and a of this") == []
    assert rule_based_noun_phrases("") == []


def test_default_extractor_is_rule_based():
    extractor = NounPhraseExtractor()
    assert not extractor.uses_spacy
    text = CAPTIONS[0]
    assert extractor(text) == rule_based_noun_phrases(text)


def test_configured_spacy_pipeline_gives_its_noun_chunks(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("fld_test_hand_parse")
    nlp.to_disk(tmp_path / "pipeline")
    text = "running water near the old house"
    extractor = NounPhraseExtractor(str(tmp_path / "pipeline"))
    phrases = extractor(text)
    assert phrases == [Phrase("running water", 0, 13), Phrase("the old house", 19, 32)]
    # the rule-based chunker reads "running" as a verb, so the spaCy path is really the one used
    assert [p.text for p in rule_based_noun_phrases(text)] == ["water", "the old house"]
    for phrase in phrases:
        assert text[phrase.start:phrase.end] == phrase.text


def test_missing_spacy_pipeline_fails_at_construction(tmp_path):
    with pytest.raises(AnnotatorError, match="spaCy pipeline"):
        NounPhraseExtractor(str(tmp_path / "no_such_pipeline"))
