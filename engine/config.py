"""The engine's one TOML config: sources, annotators, runner, curation, training, loop.

Every section is a typed dataclass validated on construction; unknown keys are refused with
their full dotted name. Annotator tables are passed to the annotator's own settings class
(``build_annotator(name, **table)``), which validates them at construction. The resolved
config (defaults filled in) is what each round saves.

Example::

    [ingest]
    max_pixels = 64000000

    [annotators.ocr]              # a table per annotator to run, in this order
    min_score = 0.5
    [annotators.florence2]
    model = "/models/Florence-2-large"   # a local directory; nothing is downloaded
    device = "cuda"
    dtype = "bf16"

    [training]                    # fine-tuning of the current Florence-2 (engine.retrain.config)
    base_model = "/models/Florence-2-large"

    [runner]
    name = "direct"               # direct | direct-multiprocess | dask | flink | spark | dataflow
    workers = 2
    options = []                  # extra Beam pipeline flags, e.g. ["--dask_client_address=host:8786"]

    [curation]                    # rules and thresholds (engine.curate.config)
    partition_rows = 2000000      # curate in partitions of about this many rows (0, the default: one process)
    partition_runner = "dask"     # local (one partition after another) or a Beam runner, with [runner]'s
                                  # workers and options
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engine.annotate.runners import DEFAULT_WAVE_IMAGES, RUNNERS
from engine.curate.config import CurationConfig
from engine.retrain.config import METRICS, TrainingConfig
from engine.review.config import ReviewConfig
from engine.typed_config import check_int_range, from_plain, to_plain
from florence2.settings import Florence2Settings
from hf.settings import settings_from_kwargs
from storage.plugins import add_plugins
from storage.readers.base import MAX_MEMBER_BYTES, MAX_SIDECAR_BYTES

#: the most worker processes or threads a config may ask of one machine
MAX_WORKERS = 1024


@dataclass(frozen=True)
class IngestSection:
    """``[ingest]``: decode limits (pixels), the largest image file or shard member and the
    largest sidecar read (bytes) and decode threads. A changed limit judges the affected shards
    again at the next ingest."""

    max_pixels: int = 64_000_000
    min_side: int = 8
    workers: int = 2
    max_member_bytes: int = MAX_MEMBER_BYTES
    max_sidecar_bytes: int = MAX_SIDECAR_BYTES

    def __post_init__(self) -> None:
        for name in ("max_pixels", "min_side", "workers", "max_member_bytes", "max_sidecar_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"ingest.{name} must be >= 1, got {getattr(self, name)}")
        check_int_range("ingest.workers", self.workers, 1, MAX_WORKERS)


@dataclass(frozen=True)
class RunnerSection:
    """``[runner]``: the Beam runner of annotation and extra pipeline flags.

    ``wave_size``: shards per pipeline run (0: no limit); ``wave_images``: images per pipeline
    run (0: no limit; default 10,000; a shard is never split): a wave's rows are held together
    until its files are written, so bounded waves bound annotation's memory and make progress
    durable sooner, at one pipeline start per wave.
    ``decode_threads``: threads each annotation worker decodes a batch's images on (0: automatic,
    the worker's cores up to 4; 1: none beside the worker's own).
    """

    name: str = "direct"
    workers: int = 2
    options: tuple[str, ...] = ()
    wave_size: int = 0
    wave_images: int = DEFAULT_WAVE_IMAGES
    decode_threads: int = 0

    def __post_init__(self) -> None:
        if self.name not in RUNNERS:
            raise ValueError(f"runner.name {self.name!r} is unknown; choose one of {', '.join(RUNNERS)}")
        check_int_range("runner.workers", self.workers, 1, MAX_WORKERS)
        if self.wave_size < 0:
            raise ValueError(f"runner.wave_size must be >= 0, got {self.wave_size}")
        check_int_range("runner.wave_images", self.wave_images, 0)
        check_int_range("runner.decode_threads", self.decode_threads, 0, MAX_WORKERS)
        if any(not str(o).startswith("--") for o in self.options):
            raise ValueError(f"runner.options must be Beam flags starting with --, got {list(self.options)}")


@dataclass(frozen=True)
class SourcesSection:
    """``[sources]``: shard files, folders or globs each round ingests first (idempotent)."""

    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSection:
    """``[model]``: the current Florence-2 model as an annotator.

    ``annotate_from_round``: the first round in which the current model annotates too (the
    model fine-tuned from ``training.base_model`` and promoted round by round).
    ``annotator``: settings of the ``florence2`` annotator when it runs as the current model
    (device, dtype, tasks, max_new_tokens, ...; its ``model`` is always the current checkpoint).
    """

    annotate_from_round: int = 1
    annotator: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.annotate_from_round < 0:
            raise ValueError(f"model.annotate_from_round must be >= 0, got {self.annotate_from_round}")
        if "model" in self.annotator:
            raise ValueError("model.annotator.model is set by the engine (the current checkpoint); remove it")


@dataclass(frozen=True)
class LoopSection:
    """``[loop]``: how many rounds ``fld loop`` runs, and when it stops early.

    It stops when ``metric`` (a key of the round's metrics.json) has not improved by at least
    ``min_improvement`` for ``patience`` rounds; ``higher_is_better`` says which way is better.
    """

    rounds: int = 3
    metric: str = "val_loss"
    higher_is_better: bool = False
    min_improvement: float = 0.0
    patience: int = 1

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"loop.rounds must be >= 1, got {self.rounds}")
        if self.patience < 1:
            raise ValueError(f"loop.patience must be >= 1, got {self.patience}")
        if self.min_improvement < 0:
            raise ValueError(f"loop.min_improvement must be >= 0, got {self.min_improvement}")
        if self.metric not in METRICS:
            raise ValueError(f"loop.metric must be one of {', '.join(METRICS)}; got {self.metric!r}")


@dataclass(frozen=True)
class FlowSection:
    """``[flow]``: Prefect task retries (count and delay in seconds) for every round step."""

    retries: int = 1
    retry_delay_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.retries < 0 or self.retry_delay_seconds < 0:
            raise ValueError("flow.retries and flow.retry_delay_seconds must be >= 0")


@dataclass(frozen=True)
class EngineConfig:
    """The whole config. ``annotators`` maps registry names to their settings tables."""

    sources: SourcesSection = field(default_factory=SourcesSection)
    ingest: IngestSection = field(default_factory=IngestSection)
    annotators: dict[str, dict[str, Any]] = field(default_factory=dict)
    runner: RunnerSection = field(default_factory=RunnerSection)
    curation: CurationConfig = field(default_factory=CurationConfig)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    loop: LoopSection = field(default_factory=LoopSection)
    flow: FlowSection = field(default_factory=FlowSection)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    #: modules of the user's own annotators and filters, imported before the config is checked
    #: (added to ``FLD_PLUGINS``, so workers and child processes import them too)
    plugins: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if any(not isinstance(name, str) or not name for name in self.plugins):
            raise ValueError(f"plugins must be a list of module names, got {list(self.plugins)!r}")
        from annotators.registry import annotator_names

        known = annotator_names()
        for name, table in self.annotators.items():
            if name not in known:
                raise ValueError(f"annotators.{name} is not a registered annotator; known: {', '.join(known)}")
            if not isinstance(table, Mapping):
                raise ValueError(f"annotators.{name} must be a table of settings")

    def current_model_table(self) -> dict[str, Any]:
        """The ``florence2`` settings the current model runs with, its checkpoint left out:
        ``[annotators.florence2]`` overridden by ``[model.annotator]``."""
        table = {k: v for k, v in self.annotators.get("florence2", {}).items() if k != "model"}
        return {**table, **self.model.annotator}

    def current_model_settings(self, checkpoint: str | Path = "current") -> Florence2Settings:
        """:meth:`current_model_table` as typed settings of ``checkpoint``: what ``fld round``,
        ``fld train`` and ``fld loop`` annotate and evaluate the current model with, so the same
        model is scored (and its threshold calibrated) the same way whichever command runs it."""
        try:
            return settings_from_kwargs(Florence2Settings, {**self.current_model_table(), "model": str(checkpoint)},
                                        "florence2")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"model.annotator: {exc}") from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "EngineConfig":
        data = dict(data or {})
        plugins = data.get("plugins", [])
        if not isinstance(plugins, (list, tuple)) or any(not isinstance(name, str) or not name for name in plugins):
            raise ValueError(f"plugins must be a list of module names, got {plugins!r}")
        add_plugins(list(plugins))  # their annotators and filters register before the sections are checked
        return from_plain(cls, data, "")

    @classmethod
    def load(cls, path: str | Path | None) -> "EngineConfig":
        """Read a TOML file (None: all defaults); syntax and key errors name the file."""
        if path is None:
            return cls()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """Plain data of the resolved config (what a round saves), which :meth:`from_dict`
        reads back to an equal config."""
        out = to_plain(dataclasses.asdict(self))
        out["curation"] = self.curation.to_dict()  # sections by name, as the TOML has them
        return out
