"""A tiny spaCy pipeline for the demo's synthetic captions, trained offline in seconds.

Trained English pipelines cannot be downloaded here, yet the paper's text filters and Table 3
need dependency parses. The demo's captions follow one grammar (``"A red circle, a blue
square and a green triangle with the word "hello"."``), so their gold parses are derived
exactly (:func:`gold_parse`) and a morphologizer + parser is trained on them and saved to a
folder that the config names like any other pipeline. Production configs name a real one.
"""

from __future__ import annotations

import json
from pathlib import Path

from storage.atomic import write_text_atomic

SEPARATORS = {",", "and"}


def gold_parse(words: list[str]) -> tuple[list[int], list[str], list[str]]:
    """(heads, deps, POS) of a caption of the demo grammar, given its spaCy tokens."""
    heads, deps, pos = list(range(len(words))), ["ROOT"] * len(words), ["X"] * len(words)
    nouns: list[int] = []  # the shape nouns, in order
    word_nouns: list[int] = []  # the "word" nouns after "with"
    i, root, after_with, prep = 0, 0, False, None
    while i < len(words):
        token = words[i]
        lower = token.lower()
        if lower in {"a", "an", "the"}:
            pos[i] = "DET"
        elif token == '"':
            pos[i], deps[i] = "PUNCT", "punct"
        elif token == ".":
            pos[i], deps[i], heads[i] = "PUNCT", "punct", root
        elif lower == "with":
            pos[i], deps[i], heads[i], after_with, prep = "ADP", "prep", root, True, i
        elif lower in SEPARATORS:
            pos[i] = "PUNCT" if token == "," else "CCONJ"
            deps[i] = "punct" if token == "," else "cc"
            heads[i] = (word_nouns or nouns or [root])[-1]
        elif after_with and lower == "word":
            pos[i] = "NOUN"
            if word_nouns:
                deps[i], heads[i] = "conj", word_nouns[-1]
            else:
                deps[i], heads[i] = "pobj", prep
            word_nouns.append(i)
        elif after_with and i > 0 and words[i - 1] == '"':
            pos[i], deps[i], heads[i] = "PROPN", "appos", word_nouns[-1]
            heads[i - 1] = i
            if i + 1 < len(words) and words[i + 1] == '"':
                heads[i + 1] = i
        elif i + 1 < len(words) and words[i + 1] not in SEPARATORS | {".", "with"} and words[i + 1] != '"':
            pos[i], deps[i] = "ADJ", "amod"  # an adjective: its noun follows
        else:
            pos[i] = "NOUN"
            if nouns:
                deps[i], heads[i] = "conj", nouns[-1]
            else:
                root, deps[i], heads[i] = i, "ROOT", i
            nouns.append(i)
        i += 1
    # determiners and adjectives attach to the next noun
    for j, tag in enumerate(pos):
        if tag in {"DET", "ADJ"}:
            heads[j] = next(k for k in range(j + 1, len(words)) if pos[k] == "NOUN" or words[k].lower() == "word")
            deps[j] = "det" if tag == "DET" else "amod"
    for j, dep in enumerate(deps):
        if dep == "punct" and words[j] == ".":
            heads[j] = root
    return heads, deps, pos


def train_caption_pipeline(out: str | Path, captions: list[str], iterations: int = 30, seed: int = 0) -> Path:
    """Train and save a morphologizer + parser on the gold parses of ``captions``."""
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example

    out = Path(out)
    marker = out / "fld-trained.json"
    if marker.exists():
        return out
    spacy.util.fix_random_seed(seed)
    nlp = spacy.blank("en")
    nlp.add_pipe("morphologizer")
    nlp.add_pipe("parser", config={"min_action_freq": 1})
    examples = []
    for caption in dict.fromkeys(captions):
        predicted = nlp.make_doc(caption)
        words = [t.text for t in predicted]
        heads, deps, pos = gold_parse(words)
        gold = Doc(nlp.vocab, words=words, spaces=[bool(t.whitespace_) for t in predicted], heads=heads,
                   deps=deps, pos=pos)
        examples.append(Example(predicted, gold))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(iterations):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(out)
    write_text_atomic(json.dumps({"captions": len(examples), "iterations": iterations}), marker)
    return out
