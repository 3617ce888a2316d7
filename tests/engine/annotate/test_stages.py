"""engine.annotate.stages: readers run after the annotators whose rows they read, as every
annotator declares them (``Annotator.reads`` / ``Annotator.emits``); plugins included."""

from __future__ import annotations

import itertools
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from annotators.base import Annotator, Rows
from annotators.registry import _REGISTRY, annotator_class, annotator_names, register_annotator
from engine.annotate.plan import AnnotateRequest, annotate
from engine.annotate.stages import annotation_stages, runs_after
from storage.schema import KIND_CAPTION, KIND_PHRASE, KIND_REGION, KINDS, annotation_row
from tests.fake_annotators import DarkPatchAnnotator

BUILTINS = ["caption_composer", "caption_scorer", "coco_labels", "detector", "florence2", "grounding", "ocr",
            "region_captioner", "region_text_matcher", "segmenter", "sidecar_captions"]

#: the hand-written table this derivation replaced (engine/annotate/stages.py before it), built-ins only
FORMER_RUNS_AFTER = {
    "caption_composer": ("coco_labels", "detector", "florence2", "ocr"),
    "region_captioner": ("coco_labels", "detector", "florence2", "ocr"),
    "grounding": ("florence2", "caption_composer"),
    "region_text_matcher": ("region_captioner", "coco_labels", "detector", "florence2", "ocr"),
    "segmenter": ("grounding", "coco_labels", "detector", "florence2", "ocr"),
    "caption_scorer": ("caption_composer", "florence2", "sidecar_captions"),
}

#: a plugin region maker that declares only its kinds (registered by importing it)
DARK = DarkPatchAnnotator.name

#: annotator sets the tests and the demo run (`fld demo`: round 0, then with the trained Florence-2)
USED = [
    BUILTINS,
    ["caption_scorer", "sidecar_captions"],
    ["caption_scorer", "sidecar_captions", "detector", "caption_composer", "florence2"],
    ["ocr", "coco_labels", "ocr"],
    ["grounding"],
    ["coco_labels", "ocr", "sidecar_captions"],
    ["coco_labels", "ocr", "sidecar_captions", "caption_scorer"],
    ["coco_labels", "ocr", "sidecar_captions", "caption_scorer", "florence2"],
    ["florence2", "grounding", "segmenter"],
    ["detector", "region_text_matcher", "region_captioner", "segmenter"],
    ["segmenter", "region_text_matcher", "grounding", "florence2", "region_captioner", "caption_composer", "detector"],
    ["caption_scorer", "grounding", "caption_composer", "florence2", "coco_labels"],
]


def former_stages(names: list[str]) -> list[list[str]]:
    """What the hand-written table gave (the same stage loop over ``FORMER_RUNS_AFTER``)."""
    remaining, stages = list(dict.fromkeys(names)), []
    while remaining:
        ready = [n for n in remaining if not any(d != n and d in remaining for d in FORMER_RUNS_AFTER.get(n, ()))]
        stages.append(ready)
        remaining = [n for n in remaining if n not in ready]
    return stages


@pytest.fixture
def plugins():
    """Registers annotator classes for one test only (so the registry-wide contract test never
    sees them): ``plugins(name, cls)``."""
    added = []

    def add(name: str, cls: type[Annotator]) -> str:
        register_annotator(name)(cls)
        added.append(name)
        return name

    yield add
    for name in added:
        _REGISTRY.pop(name, None)


def test_every_annotator_declares_what_it_reads_and_emits():
    for name in annotator_names():
        cls = annotator_class(name)
        assert bool(cls.reads) == ("annotations" in cls.needs), name  # the pipeline loads the rows for readers only
        assert all(r.kind in KINDS for r in (*cls.reads, *cls.emitted_rows())), name
        assert {r.kind for r in cls.emitted_rows()} == set(cls.kinds), name


@pytest.mark.parametrize("names", USED, ids=lambda names: ",".join(names))
def test_derived_stages_equal_the_former_table_for_the_sets_in_use(names):
    assert annotation_stages(names) == former_stages(names)
    assert annotation_stages(names[::-1]) == former_stages(names[::-1])


def test_derived_order_differs_from_the_former_table_only_where_annotate_reads_otherwise():
    expected = {name: set(FORMER_RUNS_AFTER.get(name, ())) for name in BUILTINS}
    # the composer's brief caption and grounding's captions may be sidecar alt text
    expected["caption_composer"].add("sidecar_captions")
    expected["grounding"].add("sidecar_captions")
    # the region captioner and the matcher read object regions only, never OCR lines
    expected["region_captioner"].discard("ocr")
    expected["region_text_matcher"].discard("ocr")
    assert {name: set(after) for name, after in runs_after(BUILTINS).items()} == expected


def test_stages_respect_every_dependency_whatever_the_config_order():
    after = runs_after(BUILTINS)
    for order in itertools.islice(itertools.permutations(BUILTINS), 0, 2000, 97):
        stages = annotation_stages(list(order))
        stage_of = {n: i for i, stage in enumerate(stages) for n in stage}
        assert sorted(stage_of) == sorted(BUILTINS)
        for name, deps in after.items():
            for dep in deps:
                assert stage_of[dep] < stage_of[name], (order, name, dep)


def test_independent_annotators_share_one_stage_in_config_order():
    assert annotation_stages(["ocr", "coco_labels", "ocr"]) == [["ocr", "coco_labels"]]
    assert annotation_stages(["grounding"]) == [["grounding"]]
    assert annotation_stages(["caption_scorer", "caption_composer"]) == [["caption_composer"], ["caption_scorer"]]


def test_no_annotator_is_named_in_the_ordering_code():
    source = (Path(__file__).resolve().parents[3] / "engine" / "annotate" / "stages.py").read_text()
    assert [name for name in BUILTINS if name in source] == []


class OcrTranslator(Annotator):
    """Test plugin: reads the round's OCR lines, emits one derived OCR region per line."""

    kinds = (KIND_REGION,)
    needs = ("annotations",)
    reads = (Rows(KIND_REGION, derived=False, region_type="ocr"),)
    emits = (Rows(KIND_REGION, derived=True, region_type="ocr"),)

    def annotate(self, batch):
        return []


class PatchTagger(Annotator):
    """Test plugin: one derived object region under each top-level object region of the round."""

    kinds = (KIND_REGION,)
    needs = ("annotations",)
    reads = (Rows(KIND_REGION, derived=False, region_type="object"),)
    emits = (Rows(KIND_REGION, derived=True, region_type="object"),)

    def annotate(self, batch):
        return [annotation_row(image_id=item.image_id, round_=batch.round, source=self.name, source_version=self.version,
                               kind=KIND_REGION, region_type="object", text=f"tagged {row['text']}",
                               bbox=row["bbox"], parent_id=row["annotation_id"])
                for item in batch.items for row in item.context.get("annotations", ())
                if row["kind"] == KIND_REGION and row.get("parent_id") is None]


def test_a_plugin_runs_after_the_annotators_whose_rows_it_declares(plugins):
    name = plugins("ocr_translator", OcrTranslator)
    assert annotation_stages([name, "detector", "ocr"]) == [["detector", "ocr"], [name]]
    assert annotation_stages([name, "detector"]) == [[name, "detector"]]
    # a plugin that declares only its kinds may emit any row of them: readers of regions wait for dark_patch
    assert annotation_stages(["segmenter", name, "ocr", DARK]) == [["ocr", DARK], ["segmenter", name]]
    assert annotation_stages(["region_captioner", DARK]) == [[DARK], ["region_captioner"]]


def test_a_plugin_reads_the_rows_of_the_stage_before_it(ingested_root, plugins):
    tagger = plugins("patch_tagger", PatchTagger)
    stages = annotation_stages([tagger, DARK])
    assert stages == [[DARK], [tagger]]
    for stage in stages:
        annotate(ingested_root, AnnotateRequest(round=0, annotators={n: {} for n in stage}, progress=False))
    rows = [r for p in ingested_root.annotations(0).glob("source=*/*.parquet") for r in pq.read_table(p).to_pylist()]
    patches = {r["annotation_id"]: r for r in rows if r["source"] == DARK}
    tags = [r for r in rows if r["source"] == tagger]
    assert patches and sorted(r["parent_id"] for r in tags) == sorted(patches)
    assert all(r["text"] == "tagged dark patch" and r["bbox"] == patches[r["parent_id"]]["bbox"] for r in tags)


class CaptionsFromPhrases(Annotator):
    kinds = (KIND_CAPTION,)
    needs = ("annotations",)
    reads = (Rows(KIND_PHRASE),)


class PhrasesFromCaptions(Annotator):
    kinds = (KIND_PHRASE,)
    needs = ("annotations",)
    reads = (Rows(KIND_CAPTION),)


def test_a_cycle_is_one_line_naming_the_annotators(plugins):
    a, b = plugins("captions_from_phrases", CaptionsFromPhrases), plugins("phrases_from_captions", PhrasesFromCaptions)
    with pytest.raises(ValueError, match="annotators captions_from_phrases, phrases_from_captions read each other") as err:
        annotation_stages(["ocr", a, b, "segmenter"])
    assert "\n" not in str(err.value) and "segmenter" not in str(err.value)


def test_reads_without_the_annotations_context_is_refused():
    with pytest.raises(TypeError, match="exactly when needs has 'annotations'"):
        type("Reader", (Annotator,), {"kinds": (KIND_CAPTION,), "reads": (Rows(KIND_CAPTION),)})
    with pytest.raises(TypeError, match="emits must cover exactly the kinds"):
        type("Writer", (Annotator,), {"kinds": (KIND_CAPTION, KIND_REGION), "emits": (Rows(KIND_CAPTION),)})
