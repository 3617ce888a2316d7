"""Loading Hugging Face checkpoints from local places only, for every model-backed annotator.

A model setting is either a local directory (what ``save_pretrained`` wrote, or a snapshot
the user downloaded beforehand) or a hub id that is already in the local Hugging Face cache.
Nothing is ever downloaded: every ``from_pretrained`` call here passes
``local_files_only=True`` and ``trust_remote_code=False``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from annotators.base import AnnotatorError

DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}


def require_package(module: str, extra: str | None = None) -> None:
    """Raise :class:`AnnotatorError` naming what to install when ``module`` is not importable.

    ``extra``: the pip extra that brings it, or None for a core dependency of fld-engine.
    """
    if importlib.util.find_spec(module) is None:
        how = f"pip install 'fld-engine[{extra}]'" if extra else "pip install fld-engine (a core dependency)"
        raise AnnotatorError(f"the Python package {module!r} is not installed; install it with `{how}`")


def resolve_model_dir(model: str | os.PathLike[str], annotator: str) -> Path:
    """Return the local directory of ``model``: a path, or a hub id found in the local cache.

    Raises :class:`AnnotatorError` saying where to put the weights when neither exists.
    """
    if not model:
        raise AnnotatorError(f"annotator {annotator!r} needs a `model` setting: a local checkpoint directory")
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise AnnotatorError(f"{path} has no config.json: it is not a transformers checkpoint directory")
        return path.resolve()
    if path.exists():
        raise AnnotatorError(f"model {str(path)!r} for {annotator!r} is a file; give the checkpoint directory")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), local_files_only=True))
    except Exception:  # not cached, bad id, or hub library missing: one clear message
        raise AnnotatorError(
            f"model {str(model)!r} for annotator {annotator!r} is neither a local directory nor in the "
            f"local Hugging Face cache; download it beforehand (e.g. `huggingface-cli download {model} "
            f"--local-dir DIR`) and set `model = \"DIR\"` in the config. Nothing is downloaded at run time."
        ) from None


def checkpoint_version(model_dir: str | os.PathLike[str]) -> str:
    """A short hash identifying a checkpoint directory (the ``source_version`` column).

    Hashes the config and, for each weight file, its name, size and first and last MiB, so
    multi-GB checkpoints are identified in milliseconds. Returns 16 hex characters.
    """
    model_dir = Path(model_dir)
    digest = hashlib.sha256()
    for path in sorted(model_dir.iterdir()):
        if not path.is_file():
            continue
        if path.suffix in {".json", ".txt", ".model"}:
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
        elif path.suffix in {".safetensors", ".bin", ".pt"}:
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
        raise AnnotatorError(f"device {device!r} was asked for but torch sees no CUDA GPU")
    return torch.device(device), getattr(torch, DTYPES[dtype])


def from_pretrained_kwargs() -> dict[str, Any]:
    """The keyword arguments every ``from_pretrained`` call here passes (offline, no remote code)."""
    return {"local_files_only": True, "trust_remote_code": False}
