"""Hand-annotated sentences as real spaCy ``Doc``s, for the text rules and the tiny pipeline.

Trained pipelines cannot be downloaded here, so the test trains one for a few dozen
iterations (about 2 s on one core), saves it with ``nlp.to_disk`` and the tests load it by
path through the production loader, ``engine.curate.text_metrics.load_pipeline``.
"""

from __future__ import annotations

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
