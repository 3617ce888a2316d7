"""Typed config of curation: the rules to run, in order, and every threshold they use.

Each filter family owns the dataclass of its settings (in its ``filters/`` module, validated
on construction); :class:`CurationConfig` gathers them as sections, plus the merge across
rounds. :meth:`CurationConfig.from_dict` builds it from the ``[curation]`` table of the
engine's TOML config and rejects unknown keys, naming them with their full path.

Example (TOML)::

    [curation]
    rules = ["image", "confidence", "geometry", "nms_source", "nms_cross"]
    [curation.confidence]
    default = 0.3
    per_source = { detector = 0.5, ocr = 0.6 }
    [curation.nms]
    calibration = "rank"
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.typed_config import from_plain, to_plain
from filters.base import filter_names, filter_spec
from filters.confidence import ConfidenceConfig
from filters.geometry import GeometryConfig
from filters.nms import NmsConfig
from filters.phrase_rules import PhraseConfig
from filters.region_text import RegionTextConfig
from filters.text_complexity import TextComplexityConfig

DEFAULT_RULES: tuple[str, ...] = (
    "image", "confidence", "geometry", "text_complexity",
    "phrase_parent", "phrase_span", "phrase_blacklist", "phrase_confidence", "phrase_nms",
    "nms_source", "nms_cross", "region_text",
)


@dataclass(frozen=True)
class MergeConfig:
    """Merge with the previous round's curated set: a new row whose label/text (normalised)
    and kind match a previous row and whose box has IoU >= ``iou_threshold`` with it (captions:
    same granularity and text) is merged into it instead of being added."""

    enabled: bool = True
    iou_threshold: float = 0.7

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"merge.enabled must be true or false, got {self.enabled!r}")
        if isinstance(self.iou_threshold, bool) or not isinstance(self.iou_threshold, (int, float)) \
                or not 0 < self.iou_threshold <= 1:
            raise ValueError(f"merge.iou_threshold must be in (0, 1], got {self.iou_threshold!r}")


@dataclass(frozen=True)
class CurationConfig:
    rules: tuple[str, ...] = DEFAULT_RULES
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    nms: NmsConfig = field(default_factory=NmsConfig)
    text: TextComplexityConfig = field(default_factory=TextComplexityConfig)
    phrase: PhraseConfig = field(default_factory=PhraseConfig)
    region_text: RegionTextConfig = field(default_factory=RegionTextConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)

    def __post_init__(self) -> None:
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        known = set(filter_names())
        if unknown := [r for r in rules if r not in known]:
            raise ValueError(f"curation.rules has unknown rules {unknown}; known: {sorted(known)}")
        if len(set(rules)) != len(rules):
            raise ValueError(f"curation.rules lists a rule twice: {list(rules)}")
        for rule in rules:
            if not hasattr(self, filter_spec(rule).section):
                raise ValueError(f"rule {rule!r} reads section {filter_spec(rule).section!r} that the config lacks")

    def section(self, rule: str) -> Any:
        """The settings object of ``rule``."""
        return getattr(self, filter_spec(rule).section)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "CurationConfig":
        """Build from plain data (TOML/JSON); unknown keys raise ``ValueError`` naming them."""
        return from_plain(cls, dict(data or {}), "curation")

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists for tuples) that :meth:`from_dict` reads back to an equal config."""
        return to_plain(dataclasses.asdict(self))
