"""Order of annotators within a round: who reads whose rows.

Annotators that read earlier rows of the round (``needs`` has ``annotations``) must run after
the ones producing those rows. :func:`runs_after` lists, per annotator, the annotators whose output
it reads; :func:`annotation_stages` turns the configured names into stages (lists run in one
Beam pipeline each), keeping config order within a stage.
"""

from __future__ import annotations

from annotators.registry import annotator_class, annotator_names
from storage.schema import KIND_CAPTION, KIND_REGION

CAPTIONERS = ("florence2", "caption_composer")
#: annotators that read every caption of the round (so they run after every caption maker)
CAPTION_READERS = ("caption_scorer",)


def region_makers() -> tuple[str, ...]:
    """Registered annotators that emit regions from the image alone (they read no row of the
    round): florence2, detector, coco_labels, ocr and any plugin of that kind."""
    return tuple(name for name in annotator_names()
                 if KIND_REGION in annotator_class(name).kinds and "annotations" not in annotator_class(name).needs)


def caption_makers() -> tuple[str, ...]:
    """Registered annotators that emit captions, minus the caption readers: florence2,
    caption_composer, sidecar_captions and any plugin of that kind."""
    return tuple(name for name in annotator_names()
                 if KIND_CAPTION in annotator_class(name).kinds and name not in CAPTION_READERS)


def runs_after() -> dict[str, tuple[str, ...]]:
    """Per reading annotator, the annotators whose rows it reads."""
    makers = region_makers()
    return {
        "caption_composer": makers,
        "region_captioner": makers,
        "grounding": CAPTIONERS,
        "region_text_matcher": ("region_captioner", *makers),
        "segmenter": ("grounding", *makers),
        "caption_scorer": caption_makers(),
    }


def annotation_stages(names: list[str]) -> list[list[str]]:
    """Stages of ``names``: each annotator comes after every configured one it reads."""
    remaining = list(dict.fromkeys(names))
    after = runs_after()
    stages: list[list[str]] = []
    while remaining:
        ready = [n for n in remaining if not any(d != n and d in remaining for d in after.get(n, ()))]
        if not ready:
            raise ValueError(f"annotators depend on each other in a cycle: {remaining}")
        stages.append(ready)
        remaining = [n for n in remaining if n not in ready]
    return stages
