"""engine.demo.spacy_pipeline: exact gold parses of the demo grammar, and a pipeline trained on them."""

from __future__ import annotations

import spacy
from spacy.tokens import Doc

from engine.curate.text_metrics import load_pipeline
from engine.demo.scenes import render_scene
from engine.demo.spacy_pipeline import gold_parse, train_caption_pipeline


def test_gold_parses_are_single_trees_with_the_shape_nouns_as_objects():
    nlp = spacy.blank("en")
    for seed in range(60):
        scene = render_scene(seed)
        words = [t.text for t in nlp.make_doc(scene.caption)]
        heads, deps, pos = gold_parse(words)
        doc = Doc(nlp.vocab, words=words, heads=heads, deps=deps, pos=pos)
        assert deps.count("ROOT") == 1 and len(list(doc.sents)) == 1
        nouns = [t.text for t in doc if t.pos_ == "NOUN" and t.text != "word"]
        assert nouns == [o.category for o in scene.objects if o.category != "text"] or nouns == ["background"]
        assert [t.text for t in doc if t.pos_ == "PROPN"] == [o.text for o in scene.objects if o.category == "text"]


def test_trained_pipeline_parses_held_out_captions(tmp_path):
    captions = [render_scene(seed).caption for seed in range(40)]
    path = train_caption_pipeline(tmp_path / "demo_en", captions, iterations=25)
    nlp = load_pipeline(str(path))
    tokenizer = spacy.blank("en")
    correct = total = 0
    for seed in range(100, 120):  # captions it was not trained on
        caption = render_scene(seed).caption
        heads, _, pos = gold_parse([t.text for t in tokenizer.make_doc(caption)])
        doc = nlp(caption)
        correct += sum(t.head.i == h and t.pos_ == p for t, h, p in zip(doc, heads, pos))
        total += len(doc)
    assert correct / total > 0.9
