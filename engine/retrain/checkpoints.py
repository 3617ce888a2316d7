"""A training run's checkpoints on disk: ``step-N`` folders to resume from, and the final model.

Every folder appears by rename once complete (a folder with weights holds a whole model); a full
disk leaves no half-written folder; the configs written lose machine-local keys
(``hf.loading.drop_machine_keys``). ``STATE_FILE`` holds the trainer state (optimizer,
scheduler, step, RNG) beside the weights of each ``step-N``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hf.loading import drop_machine_keys

STATE_FILE = "trainer_state.pt"
WEIGHTS_FILE = "model.safetensors"


def latest_checkpoint(folder: Path) -> Path | None:
    """The ``step-N`` folder with the largest N (complete: folders appear by rename), or None."""
    steps = [(int(p.name[5:]), p) for p in folder.glob("step-*") if p.name[5:].isdigit()] if folder.is_dir() else []
    return max(steps)[1] if steps else None


def _write_model(tmp: Path, model: Any, processor: Any, state: dict[str, Any] | None = None) -> Path:
    """Model, processor (machine-local keys dropped) and, given, the trainer ``state`` into a fresh
    ``tmp`` folder; on any failure (a full disk) the folder is removed, so none stays half-written."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        drop_machine_keys(tmp)
        if state is not None:
            import torch

            torch.save(state, tmp / STATE_FILE)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def save_checkpoint(folder: Path, step: int, model: Any, processor: Any, state: dict[str, Any], keep: int) -> Path:
    """Write ``folder/step-<step>`` (weights, processor, trainer state) by rename; prune to ``keep``."""
    final = folder / f"step-{step}"
    tmp = _write_model(folder / f".step-{step}.tmp", model, processor, state)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    older = sorted((int(p.name[5:]), p) for p in folder.glob("step-*") if p.name[5:].isdigit())
    for _, path in older[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
    return final


def save_final(model: Any, processor: Any, out_dir: Path) -> None:
    """Write the model + processor into a temp folder, then rename each file into ``out_dir``
    (weights last: a directory with weights holds a complete model)."""
    tmp = _write_model(out_dir / ".final.tmp", model, processor)
    files = sorted(tmp.iterdir(), key=lambda p: (p.name == WEIGHTS_FILE, p.name))
    for path in files:
        os.replace(path, out_dir / path.name)
    tmp.rmdir()
