"""The one check every checkpoint folder passes before any model-backed annotator or training
uses it: the layouts people download are loaded or refused in one line, never half-loaded.

:func:`check_checkpoint` refuses (``ModelError``, one line saying what to do):

* a remote-code checkpoint (``auto_map`` in ``config.json``, or ``modeling_*.py`` /
  ``configuration_*.py`` / ``processing_*.py`` files beside it): fld never runs downloaded code.
  For Florence-2 the message names the native equivalent (``florence-community/Florence-2-*``)
  and transformers' conversion script;
* a folder with no weights, or with pickle weights only (``pytorch_model.bin``, ``*.pt``) unless
  the setting ``allow_pickle_weights = true`` says to load them (with torch's ``weights_only``);
* a config that needs a package that is not installed (``use_timm_backbone``: ``timm``), naming
  the extra that brings it and the alternative (DETR's ``no_timm`` revision).

:func:`check_loading_info` turns transformers' ``output_loading_info`` into an error when the
weights do not cover the model (missing parameters would be randomly initialised).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any, Mapping

from hf.errors import ModelError

SAFE_WEIGHTS = ("*.safetensors",)
PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
CODE_FILES = ("modeling_*.py", "configuration_*.py", "processing_*.py", "tokenization_*.py")
#: model_type (as a remote-code config spells it) -> the native checkpoints to use instead
NATIVE_EQUIVALENTS = {
    "florence2": "florence-community/Florence-2-base or florence-community/Florence-2-large (native transformers "
                 "layout; or convert yours with transformers' "
                 "models/florence2/convert_florence2_original_pytorch_to_hf.py)",
}


def _config(model_dir: Path) -> dict[str, Any]:
    try:
        value = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"{model_dir}/config.json cannot be read: {error}") from None
    return value if isinstance(value, dict) else {}


def _any(model_dir: Path, patterns: tuple[str, ...]) -> list[Path]:
    return sorted(p for pattern in patterns for p in model_dir.glob(pattern))


def check_checkpoint(model_dir: str | Path, who: str, allow_pickle_weights: bool = False) -> None:
    """Refuse ``model_dir`` for ``who`` (an annotator name or a config key) in one line (module
    docstring); return quietly when it can be loaded."""
    model_dir = Path(model_dir)
    config = _config(model_dir)
    code = _any(model_dir, CODE_FILES)
    if "auto_map" in config or code:
        kind = str(config.get("model_type", "")).lower()
        native = NATIVE_EQUIVALENTS.get(kind, "a checkpoint in the native transformers layout (no auto_map, no .py files)")
        found = "auto_map in config.json" if "auto_map" in config else f"{code[0].name}"
        raise ModelError(f"{who}: {model_dir} is a remote-code checkpoint ({found}); fld never runs "
                             f"downloaded code. Use {native}")
    if config.get("use_timm_backbone") and importlib.util.find_spec("timm") is None:
        raise ModelError(f"{who}: {model_dir} uses a timm backbone (use_timm_backbone) and the timm package is "
                             f"not installed; `pip install 'fld-engine[timm]'`, or download the checkpoint's "
                             f"no_timm revision (e.g. `huggingface-cli download facebook/detr-resnet-50 --revision "
                             f"no_timm --local-dir DIR`)")
    safe, pickled = _any(model_dir, SAFE_WEIGHTS), _any(model_dir, PICKLE_WEIGHTS)
    if not safe and not pickled:
        raise ModelError(f"{who}: {model_dir} holds no weights (no *.safetensors); download the whole "
                             f"checkpoint folder")
    if not safe and not allow_pickle_weights:
        raise ModelError(f"{who}: {model_dir} holds only pickle weights ({pickled[0].name}); convert them to "
                             f"safetensors, or set allow_pickle_weights = true for it (loaded with torch's "
                             f"weights_only, which runs no code)")


def check_loading_info(info: Mapping[str, Any], model_dir: str | Path, who: str) -> None:
    """Raise when transformers' loading info shows parameters the checkpoint did not provide."""
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        raise ModelError(f"{who}: the weights in {model_dir} do not cover the model: {len(missing)} parameters "
                             f"missing (e.g. {missing[0]}); it is not a checkpoint of this architecture, or was "
                             f"saved by other code")
