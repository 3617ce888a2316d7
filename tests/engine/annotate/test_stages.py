"""engine.annotate.stages: readers run after the annotators whose rows they read."""

from __future__ import annotations

import itertools

from annotators.registry import annotator_class, annotator_names
from engine.annotate.stages import annotation_stages, runs_after


def test_every_reader_of_annotations_declares_what_it_reads():
    readers = {n for n in annotator_names() if "annotations" in annotator_class(n).needs}
    assert readers <= set(runs_after())
    assert all(dep in annotator_names() for deps in runs_after().values() for dep in deps)


def test_stages_respect_every_dependency_whatever_the_config_order():
    names = ["segmenter", "region_text_matcher", "grounding", "florence2", "ocr", "region_captioner",
             "caption_composer", "detector", "coco_labels", "caption_scorer", "sidecar_captions"]
    for order in itertools.islice(itertools.permutations(names), 0, 2000, 97):
        stages = annotation_stages(list(order))
        stage_of = {n: i for i, stage in enumerate(stages) for n in stage}
        assert sorted(stage_of) == sorted(names)
        for name, deps in runs_after().items():
            for dep in deps:
                if dep in stage_of and name in stage_of:
                    assert stage_of[dep] < stage_of[name], (order, name, dep)


def test_independent_annotators_share_one_stage_in_config_order():
    assert annotation_stages(["ocr", "coco_labels", "ocr"]) == [["ocr", "coco_labels"]]
    assert annotation_stages(["grounding"]) == [["grounding"]]
