"""What every round step is given: the data root, the round number and the resolved config."""

from __future__ import annotations

from dataclasses import dataclass

from engine.config import EngineConfig
from storage.layout import DataRoot


@dataclass
class RoundContext:
    """The data root, the round number, the round's resolved engine config and whether the
    steps print progress."""

    root: DataRoot
    round: int
    config: EngineConfig
    progress: bool = True
