"""Typed config of curation: the rules to run, in order, and every threshold they use.

Each filter family owns the dataclass of its settings (in its ``filters/`` module, validated
on construction) and registers it with its rules (``filters.base.register_filter``);
:class:`CurationConfig` gathers one settings object per registered section, plus the merge
across rounds, so a new filter needs no change here. :meth:`CurationConfig.from_dict` builds it from the ``[curation]`` table of the
engine's TOML config and rejects unknown keys, naming them with their full path.

Example (TOML)::

    [curation]
    rules = ["image", "confidence", "geometry", "nms_source", "nms_cross"]
    [curation.confidence]
    default = 0.3
    per_source = { detector = 0.5, ocr = 0.6 }
    [curation.nms]
    calibration = "rank"

A round too large for one process is curated in partitions of whole image shards
(``engine.curate.partitioned``), with the same result::

    [curation]
    partition_rows = 2000000      # the default: a round of more rows is curated in partitions of about this many (0: one process)
    partition_runner = "dask"     # "local": one partition after another here; or a Beam runner,
                                  # with [runner] workers and options (e.g. --dask_client_address)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.annotate.runners import RUNNERS
from engine.typed_config import check_int_range, from_plain, to_plain
from filters.base import filter_names, filter_spec, settings_sections

#: ``partition_runner`` value for partitions run one after another in this process (no Beam)
LOCAL_RUNNER = "local"

#: rows of a round (raw + previous curated) above which it is curated in partitions of about this
#: many raw rows: in one process 2M rows peaked at 1.76 GiB (``bench.curate_stream --mode rss``);
#: partitions keep memory flat as the round grows, at ~1.7x the time of one process
DEFAULT_PARTITION_ROWS = 2_000_000

DEFAULT_RULES: tuple[str, ...] = (
    "image", "prior_score", "confidence", "geometry", "text_complexity", "caption_similarity",
    "phrase_parent", "phrase_span", "phrase_blacklist", "phrase_confidence", "phrase_nms",
    "nms_source", "nms_cross", "region_text",
)


@dataclass(frozen=True)
class MergeConfig:
    """Merge with the previous round's curated set: a new row whose label/text (normalised)
    and kind match a previous row and whose box has IoU >= ``iou_threshold`` with it (captions:
    same granularity and text) is merged into it instead of being added. With ``fuse``, an
    object box instead merges into the previous object box it overlaps most with IoU >=
    ``fuse_iou`` (any label) and, when it is new evidence, refines that box and, with
    ``correct_labels``, may correct its label (``engine.curate.fusion``). An object box that
    overlaps no previous box that much may still join a previous box of the same label at IoU
    >= ``fuse_iou_same_label`` when no other box of its producer claims that box (none, the
    default: no such looser match). ``new_box_max_overlap``: an object box that merged into no
    previous box is not added as a new object while it overlaps a previous curated object box
    (any label) with IoU >= this: where the curated set already has a box, a second box of
    another class that overlaps it is a second guess at that object, not an object the labels
    missed (none, the default: overlapping objects are added, as a person on a horse).
    ``relabel_known_only``: a label correction may only move a box to a label some previous
    curated object box already carries (a model that names boxes with phrases outside the
    labels' vocabulary cannot rename them; default false). ``new_box_known_labels_only``: an
    object box that merged into no previous box is not added as a new object when its label is
    not one a previous curated object box carries (a multi-task model's ``<OD>`` may name boxes
    with phrases such as "four shapes"; once added, such a label would join the vocabulary);
    without any previous labelled box every label is known (default false)."""

    enabled: bool = True
    iou_threshold: float = 0.7
    fuse: bool = True
    fuse_iou: float = 0.5
    fuse_iou_same_label: float | None = None
    correct_labels: bool = True
    new_box_max_overlap: float | None = None
    relabel_known_only: bool = False
    new_box_known_labels_only: bool = False

    @property
    def uses_label_vocabulary(self) -> bool:
        """Whether the merge needs the previous set's labels (``relabel_known_only`` or ``new_box_known_labels_only``)."""
        return self.relabel_known_only or self.new_box_known_labels_only

    def __post_init__(self) -> None:
        for name in ("enabled", "fuse", "correct_labels", "relabel_known_only", "new_box_known_labels_only"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"merge.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("iou_threshold", "fuse_iou", "fuse_iou_same_label", "new_box_max_overlap"):
            value = getattr(self, name)
            if value is None and name in ("fuse_iou_same_label", "new_box_max_overlap"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
                raise ValueError(f"merge.{name} must be in (0, 1], got {value!r}")


@dataclass(frozen=True)
class CurationConfig:
    """``rules``: the rules to run, in order; ``merge``: the merge with the previous round;
    ``sections``: the settings object of every registered section (``filters.base``), the
    defaults where the config gives none. ``config.nms`` reads a section like an attribute.
    ``partition_rows``: N > 0 (default :data:`DEFAULT_PARTITION_ROWS`) curates a round of at most N
    rows (its raw rows plus the previous curated set's) in one process, and a bigger one in
    partitions of whole image shards of about N raw rows each (a shard is never split), so peak
    memory follows N, not the round; 0 curates every round in one process;
    ``partition_runner``: where those run: :data:`LOCAL_RUNNER` (one after another in
    this process) or a Beam runner of ``engine.annotate.runners`` (side by side)."""

    rules: tuple[str, ...] = DEFAULT_RULES
    merge: MergeConfig = field(default_factory=MergeConfig)
    sections: Mapping[str, Any] = field(default_factory=dict)
    partition_rows: int = DEFAULT_PARTITION_ROWS
    partition_runner: str = LOCAL_RUNNER

    def __post_init__(self) -> None:
        check_int_range("curation.partition_rows", self.partition_rows, 0)
        if self.partition_runner != LOCAL_RUNNER and self.partition_runner not in RUNNERS:
            raise ValueError(f"curation.partition_runner {self.partition_runner!r} is unknown; choose one of "
                             f"{', '.join([LOCAL_RUNNER, *RUNNERS])}")
        rules = tuple(self.rules)
        object.__setattr__(self, "rules", rules)
        known = set(filter_names())
        if not rules:  # no rule would keep every raw row, unjudged
            raise ValueError(f"curation.rules must name at least one rule, got []; known: {sorted(known)}")
        if unknown := [r for r in rules if r not in known]:
            raise ValueError(f"curation.rules has unknown rules {unknown}; known: {sorted(known)}")
        if len(set(rules)) != len(rules):
            raise ValueError(f"curation.rules lists a rule twice: {list(rules)}")
        classes = settings_sections()
        if unknown := sorted(set(self.sections) - set(classes)):
            raise ValueError(f"curation has unknown section(s) {unknown}; known: {['rules', 'merge', *classes]}")
        sections = {}
        for name, cls in classes.items():
            value = self.sections.get(name)
            if value is not None and not isinstance(value, cls):
                raise ValueError(f"curation.{name} must be a {cls.__name__}, got {type(value).__name__}")
            sections[name] = cls() if value is None else value
        object.__setattr__(self, "sections", sections)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(f"CurationConfig has no section {name!r}")

    def section(self, rule: str) -> Any:
        """The settings object of ``rule``."""
        return self.sections[filter_spec(rule).section]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "CurationConfig":
        """Build from plain data (TOML/JSON): ``rules``, ``merge`` and one table per section;
        unknown keys raise ``ValueError`` naming them with their full path."""
        return cls.__from_plain__(dict(data or {}), "curation")

    @classmethod
    def __from_plain__(cls, data: Mapping[str, Any], path: str) -> "CurationConfig":
        """``typed_config.from_plain``'s hook: the sections come from the filter registry."""
        data = dict(data)
        classes = settings_sections()
        if unknown := sorted(set(data) - {*_PLAIN_KEYS, *classes}):
            raise ValueError(f"unknown key(s) {', '.join(f'{path}.{k}' for k in unknown)}; "
                             f"known: {[*_PLAIN_KEYS, *classes]}")
        sections = {}
        for name in set(data) & set(classes):
            table = data.pop(name)
            if not isinstance(table, Mapping):
                raise ValueError(f"{path}.{name} must be a table of settings, got {table!r}")
            sections[name] = from_plain(classes[name], dict(table), f"{path}.{name}")
        plain = from_plain(_RulesAndMerge, data, path)
        try:
            return cls(rules=plain.rules, merge=plain.merge, sections=sections, partition_rows=plain.partition_rows,
                       partition_runner=plain.partition_runner)
        except TypeError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_dict(self, used_only: bool = False) -> dict[str, Any]:
        """Plain data (lists for tuples) that :meth:`from_dict` reads back to an equal config.
        ``used_only``: only the sections of the configured rules (what another process needs,
        which may not have every filter this one registered)."""
        out = {"rules": list(self.rules), "merge": to_plain(dataclasses.asdict(self.merge)),
               "partition_rows": self.partition_rows, "partition_runner": self.partition_runner}
        used = {filter_spec(rule).section for rule in self.rules} if used_only else set(self.sections)
        out.update({name: to_plain(dataclasses.asdict(value)) for name, value in self.sections.items() if name in used})
        return out


@dataclass(frozen=True)
class _RulesAndMerge:
    """The keys of ``[curation]`` that are not sections (parsed by ``from_plain``; checked by
    :class:`CurationConfig`)."""

    rules: tuple[str, ...] = DEFAULT_RULES
    merge: MergeConfig = field(default_factory=MergeConfig)
    partition_rows: int = DEFAULT_PARTITION_ROWS
    partition_runner: str = LOCAL_RUNNER


_PLAIN_KEYS = tuple(f.name for f in dataclasses.fields(_RulesAndMerge))
