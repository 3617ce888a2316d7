"""Order of annotators within a round: who reads whose rows.

Annotators that read earlier rows of the round (``needs`` has ``annotations``) must run after
the ones producing those rows. ``RUNS_AFTER`` lists, per annotator, the annotators whose output
it reads; :func:`annotation_stages` turns the configured names into stages (lists run in one
Beam pipeline each), keeping config order within a stage.
"""

from __future__ import annotations

CAPTIONERS = ("florence2", "caption_composer")
REGION_MAKERS = ("florence2", "detector", "coco_labels", "ocr", "dark_patch")

RUNS_AFTER: dict[str, tuple[str, ...]] = {
    "caption_composer": ("florence2", "detector", "coco_labels", "ocr"),
    "region_captioner": REGION_MAKERS,
    "grounding": CAPTIONERS,
    "region_text_matcher": ("region_captioner", *REGION_MAKERS),
    "segmenter": ("grounding", *REGION_MAKERS),
}


def annotation_stages(names: list[str]) -> list[list[str]]:
    """Stages of ``names``: each annotator comes after every configured one it reads."""
    remaining = list(dict.fromkeys(names))
    stages: list[list[str]] = []
    while remaining:
        ready = [n for n in remaining if not any(d != n and d in remaining for d in RUNS_AFTER.get(n, ()))]
        if not ready:
            raise ValueError(f"annotators depend on each other in a cycle: {remaining}")
        stages.append(ready)
        remaining = [n for n in remaining if n not in ready]
    return stages
