"""Loading Hugging Face checkpoints from local places only, for every model-backed component.

A model setting is either a local directory (what ``save_pretrained`` wrote, or a snapshot
the user downloaded beforehand) or a hub id that is already in the local Hugging Face cache.
Nothing is ever downloaded: every ``from_pretrained`` call here passes
``local_files_only=True`` and ``trust_remote_code=False``.

:func:`load_pretrained` is the one loading step (processor + model onto device/dtype, eval
mode, transformers' progress bars silenced); ``annotators.pretrained.PretrainedAnnotator`` is
the base of the annotators backed by one checkpoint.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any, Iterator, Mapping

from hf.checkpoint_check import check_loading_info
from hf.errors import ModelError
from hf.settings import DTYPES

__all__ = ["DTYPES", "checkpoint_version", "drop_machine_keys", "from_pretrained_kwargs",
           "load_pretrained",
           "move_inputs", "quiet_progress_bars", "require_package", "resolve_model_dir", "torch_device_dtype"]


def require_package(module: str, extra: str | None = None) -> None:
    """Raise :class:`ModelError` naming what to install when ``module`` is not importable.

    ``extra``: the pip extra that brings it, or None for a core dependency of fld-engine.
    """
    if importlib.util.find_spec(module) is None:
        how = f"pip install 'fld-engine[{extra}]'" if extra else "pip install fld-engine (a core dependency)"
        raise ModelError(f"the Python package {module!r} is not installed; install it with `{how}`")


def resolve_model_dir(model: str | os.PathLike[str], annotator: str) -> Path:
    """Return the local directory of ``model``: a path, or a hub id found in the local cache.

    Raises :class:`ModelError` saying where to put the weights when neither exists.
    """
    if not model:
        raise ModelError(f"annotator {annotator!r} needs a `model` setting: a local checkpoint directory")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"{path} has no config.json: it is not a transformers checkpoint directory")
        return path.resolve()
    if path.exists():
        raise ModelError(f"model {str(path)!r} for {annotator!r} is a file; give the checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception:  # not cached, bad id, or hub library missing: one clear message
        raise ModelError(
            f"model {str(model)!r} for annotator {annotator!r} is neither a local directory nor in the "
            f"local Hugging Face cache; download it beforehand (e.g. `huggingface-cli download {model} "
            f"--local-dir DIR`) and set `model = \"DIR\"` in the config. Nothing is downloaded at run time."
        ) from None


#: the text files of a checkpoint that decide what it computes (the configs, tokenizer and
#: processor files transformers loads), as ``fnmatch`` patterns; weights are the
#: :data:`WEIGHT_SUFFIXES` files. Nothing else is hashed: what is written beside a model
#: (``metrics.json``, ``evaluation.json``, ``train_summary.json`` with its timings, logs) is a
#: record of it, not the model, and never changes its version.
MODEL_TEXT_FILES = ("*config.json", "tokenizer*.json", "special_tokens_map.json", "added_tokens.json", "vocab.*",
                    "merges.txt", "*.model", "chat_template.*", "*.index.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


def checkpoint_version(model_dir: str | os.PathLike[str]) -> str:
    """A short hash identifying a checkpoint directory (the ``source_version`` column).

    Hashes the :data:`MODEL_TEXT_FILES` and, for each weight file, its name, size and first and
    last MiB, so multi-GB checkpoints are identified in milliseconds; the same weights and
    configs give the same version whatever records sit beside them (a resumed round's new
    timings included). Returns 16 hex characters.
    """
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if not path.is_file():
            continue
        if any(fnmatch.fnmatchcase(path.name, pattern) for pattern in MODEL_TEXT_FILES):
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        elif path.suffix in WEIGHT_SUFFIXES:
            size = path.stat().st_size
            digest.update(f"{path.name}:{size}".encode())
            with path.open("rb") as handle:
                digest.update(handle.read(1 << 20))
                if size > 2 << 20:
                    handle.seek(-(1 << 20), os.SEEK_END)
                    digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def torch_device_dtype(device: str, dtype: str) -> tuple[Any, Any]:
    """Validate ``device`` (cpu, cuda, cuda:N, auto) and ``dtype`` (fp32, bf16, fp16).

    Returns ``(torch.device, torch.dtype)``; ``auto`` picks cuda when available. Raises
    ``ValueError`` naming the bad value.
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of fp32, bf16, fp16; got {dtype!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not (device == "cpu" or device == "cuda" or device.startswith("cuda:")):
        raise ValueError(f"device must be cpu, cuda, cuda:N or auto; got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {device!r} was asked for but torch sees no CUDA GPU")
    return torch.device(device), getattr(torch, DTYPES[dtype])


def from_pretrained_kwargs() -> dict[str, Any]:
    """The keyword arguments every ``from_pretrained`` call here passes (offline, no remote code)."""
    return {"local_files_only": True, "trust_remote_code": False}


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Silence transformers' own progress bars ("Loading weights", "Writing model shards") in the block.

    Only transformers' switch is turned off, and it is put back as it was on exit: the user's
    setting outside our loading, the Hugging Face Hub's download bars and tqdm elsewhere are
    left alone. (Public ``disable_progress_bar()`` would also reset the Hub's per-group
    settings, so the switch is set directly; if a transformers release renames it, bars show
    again and nothing breaks.) Another thread loading at the same moment also runs quiet.
    """
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging._tqdm_active = False
    try:
        yield
    finally:
        hf_logging._tqdm_active = was_enabled


def load_pretrained(model_dir: str | os.PathLike[str], model_class: str, processor_class: str,
                    device: Any, dtype: Any, who: str = "model") -> tuple[Any, Any]:
    """``(model, processor)`` of the checkpoint in ``model_dir``, by transformers class names.

    ``model_class``/``processor_class`` name classes of the ``transformers`` package (e.g.
    ``"AutoModelForObjectDetection"``, ``"AutoImageProcessor"``, ``"AutoTokenizer"``). Both load
    offline with :func:`from_pretrained_kwargs`; the model's weights load as ``dtype`` (a
    ``torch.dtype``), then the model moves to ``device`` and is put in eval mode. Progress bars
    are silenced (:func:`quiet_progress_bars`). Weights that do not cover the model raise
    (``hf.checkpoint_check.check_loading_info``; ``who`` names the setting).
    """
    import transformers

    kwargs = from_pretrained_kwargs()
    with quiet_progress_bars():
        processor = getattr(transformers, processor_class).from_pretrained(model_dir, **kwargs)
        model, info = getattr(transformers, model_class).from_pretrained(model_dir, dtype=dtype,
                                                                         output_loading_info=True, **kwargs)
    check_loading_info(info, model_dir, who)
    return model.to(device).eval(), processor


def move_inputs(inputs: Mapping[str, Any], device: Any, dtype: Any) -> dict[str, Any]:
    """The tensors of a processor's output on ``device``; floating ones (pixel values) also cast
    to ``dtype``, the others (ids, masks) keep theirs. Entries that are not tensors are dropped."""
    return {key: value.to(device, dtype) if value.is_floating_point() else value.to(device)
            for key, value in inputs.items() if hasattr(value, "is_floating_point")}


#: keys transformers copies from ``from_pretrained``'s arguments into saved configs: they describe
#: the machine that saved the folder, not the checkpoint
MACHINE_KEYS = ("is_local", "local_files_only", "cache_dir", "_commit_hash", "token", "use_auth_token")
SAVED_CONFIGS = ("tokenizer_config.json", "processor_config.json", "preprocessor_config.json")


def drop_machine_keys(folder: str | os.PathLike[str]) -> None:
    """Remove :data:`MACHINE_KEYS` from the configs ``save_pretrained`` wrote into ``folder``."""
    import json

    for name in SAVED_CONFIGS:
        path = Path(folder) / name
        if not path.is_file():
            continue
        config = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(config, dict) and any(key in config for key in MACHINE_KEYS):
            kept = {k: v for k, v in config.items() if k not in MACHINE_KEYS}
            path.write_text(json.dumps(kept, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
