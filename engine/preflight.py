"""Everything a round needs from its config, checked before any work starts.

:func:`config_problems` returns one line per problem, each starting with the dotted key to fix;
:func:`preflight` raises :class:`ConfigProblems` (a ``ValueError``: the CLI prints it and exits
2) when there are any. ``fld round``, ``fld loop`` and ``fld demo`` call it before Prefect
starts, and the round itself calls it again before its first step (a scheduled flow reads its
config anew). What it checks, beyond the types and ranges the typed config already refused:

* ``sources.paths``: each exists (a glob: matches something);
* ``annotators.NAME``: the annotator constructs (its settings, packages, checkpoint directory
  and device; models are not loaded), and ``coco_labels.path`` is a file;
* ``model.annotator``: the settings the current Florence-2 annotates with are valid;
* ``training``: ``base_model`` is set and is ``tiny`` or a checkpoint directory; ``device`` is
  available; ``ground_truth`` (when set) is a file;
* ``curation.text.pipeline``: the spaCy pipeline loads, when the ``text_complexity`` rule runs.
"""

from __future__ import annotations

import glob
from pathlib import Path

from engine.config import EngineConfig


class ConfigProblems(ValueError):
    """The config cannot run; its message holds one line per problem."""


def _sources(config: EngineConfig) -> list[str]:
    out = []
    for path in config.sources.paths:
        if not (Path(path).expanduser().exists() or glob.glob(str(Path(path).expanduser()))):
            out.append(f"sources.paths: {path} does not exist")
    return out


def _annotators(config: EngineConfig) -> list[str]:
    from annotators.base import AnnotatorError
    from annotators.registry import build_annotator

    out = []
    for name, table in config.annotators.items():
        try:
            build_annotator(name, **table)
        except (AnnotatorError, ValueError, TypeError, OSError) as error:
            out.append(f"annotators.{name}: {error}")
            continue
        path = table.get("path")
        if name == "coco_labels" and path and not Path(path).expanduser().is_file():
            out.append(f"annotators.coco_labels.path: {path} is not a file")
    return out


def _model_annotator(config: EngineConfig) -> list[str]:
    try:
        settings = config.current_model_settings()
    except ValueError as error:
        return [str(error)]
    return _device("model.annotator.device", settings.device)


def _device(key: str, device: str) -> list[str]:
    if not device.startswith("cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return [f"{key}: {device!r} asks for a CUDA GPU and torch sees none; set it to \"cpu\" or \"auto\""]
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        return [f"{key}: {device!r} names GPU {index}; torch sees {torch.cuda.device_count()}"]
    return []


def _training(config: EngineConfig) -> list[str]:
    from annotators.base import AnnotatorError
    from hf.checkpoint_check import check_checkpoint
    from hf.loading import resolve_model_dir

    training, out = config.training, []
    if not training.base_model:
        out.append("training.base_model: not set; give a Florence-2 checkpoint directory (or \"tiny\" for a "
                   "from-scratch test-size model)")
    elif training.base_model != "tiny":
        try:
            check_checkpoint(resolve_model_dir(training.base_model, "training.base_model"), "training.base_model",
                             training.allow_pickle_weights)
        except (AnnotatorError, OSError) as error:
            text = str(error)
            out.append(text if text.startswith("training.base_model:") else f"training.base_model: {text}")
    if training.ground_truth and not Path(training.ground_truth).expanduser().is_file():
        out.append(f"training.ground_truth: {training.ground_truth} is not a file (a COCO JSON of the true boxes)")
    return out + _device("training.device", training.device)


def _text_pipeline(config: EngineConfig) -> list[str]:
    if "text_complexity" not in config.curation.rules:
        return []
    from engine.curate.text_metrics import TextPipelineError, falls_back, load_pipeline

    try:
        load_pipeline(config.curation.text.pipeline)
    except TextPipelineError as error:
        if falls_back(config.curation.text.pipeline, error):  # curation warns and measures by rules
            return []
        return [f"curation.text.pipeline: {error}"]
    return []


CHECKS = (_sources, _annotators, _model_annotator, _training, _text_pipeline)


def config_problems(config: EngineConfig) -> list[str]:
    """One line per problem of ``config`` (empty: it can run)."""
    return [line for check in CHECKS for line in check(config)]


def preflight(config: EngineConfig) -> None:
    """Raise :class:`ConfigProblems` listing every problem of ``config``, if any."""
    problems = config_problems(config)
    if problems:
        raise ConfigProblems("the config cannot run:\n  " + "\n  ".join(problems))
