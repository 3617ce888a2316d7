"""A tiny spaCy pipeline (morphologizer + parser) trained on hand-annotated sentences.

Trained pipelines cannot be downloaded here, so the test trains one for a few dozen
iterations (about 2 s on one core), saves it with ``nlp.to_disk`` and the tests load it by
path through the production loader, ``engine.text_metrics.load_pipeline``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# words, absolute heads, dependency labels, universal POS
GOLD_SENTENCES = [
    (["a", "dog", "runs", "on", "green", "grass"], [1, 2, 2, 2, 5, 3],
     ["det", "nsubj", "ROOT", "prep", "amod", "pobj"], ["DET", "NOUN", "VERB", "ADP", "ADJ", "NOUN"]),
    (["a", "man", "holds", "a", "red", "umbrella"], [1, 2, 2, 5, 5, 2],
     ["det", "nsubj", "ROOT", "det", "amod", "dobj"], ["DET", "NOUN", "VERB", "DET", "ADJ", "NOUN"]),
    (["the", "cat"], [1, 1], ["det", "ROOT"], ["DET", "NOUN"]),
    (["John", "eats", "an", "apple"], [1, 1, 3, 1], ["nsubj", "ROOT", "det", "dobj"], ["PROPN", "VERB", "DET", "NOUN"]),
    (["a", "cup", ",", "a", "plate", ",", "a", "fork", "and", "a", "knife"],
     [1, 1, 1, 4, 1, 4, 7, 4, 7, 10, 7],
     ["det", "ROOT", "punct", "det", "conj", "punct", "det", "conj", "cc", "det", "conj"],
     ["DET", "NOUN", "PUNCT", "DET", "NOUN", "PUNCT", "DET", "NOUN", "CCONJ", "DET", "NOUN"]),
]


def gold_text(words: list[str]) -> str:
    return " ".join(words).replace(" ,", ",")


def gold_docs(vocab=None):
    """The gold sentences as real spaCy ``Doc``s built from words/heads/deps/POS."""
    import spacy
    from spacy.tokens import Doc

    vocab = vocab or spacy.blank("en").vocab
    docs = []
    for words, heads, deps, pos in GOLD_SENTENCES:
        spaces = [i + 1 < len(words) and words[i + 1] != "," for i in range(len(words))]
        docs.append(Doc(vocab, words=words, spaces=spaces, heads=heads, deps=deps, pos=pos))
    return docs


@pytest.fixture(scope="session")
def tiny_spacy_pipeline(tmp_path_factory) -> Path:
    """Directory of a spaCy pipeline that reproduces the gold parses of GOLD_SENTENCES."""
    import spacy
    from spacy.training import Example

    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("morphologizer")
    nlp.add_pipe("parser", config={"min_action_freq": 1})
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs(nlp.vocab)]
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(40):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("spacy") / "tiny_en"
    nlp.to_disk(path)
    return path
