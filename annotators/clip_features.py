"""Image and text embeddings of a CLIP-style model, shared by the annotators that compare them.

Works with any transformers model that has ``get_image_features`` / ``get_text_features``
(CLIP and its relatives) and its processor. Embeddings are the model's projected features,
L2-normalised in float32, so the dot product of an image and a text embedding is their
cosine similarity in [-1, 1]. :func:`similarity01` maps a cosine to the unitless [0, 1]
image-text similarity the ``caption_scorer`` annotator and the caption report use.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["image_embeddings", "max_text_tokens", "similarity01", "text_embeddings"]


def max_text_tokens(model: Any) -> int | None:
    """The longest token sequence the model's text tower takes (its position embeddings), or
    None when the config does not say (then the tokenizer's own limit applies)."""
    config = getattr(model, "config", None)
    for owner in (getattr(config, "text_config", None), config):
        value = getattr(owner, "max_position_embeddings", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def text_embeddings(model: Any, processor: Any, texts: Sequence[str], device: Any) -> Any:
    """``(len(texts), d)`` float32 tensor of unit-length text embeddings; texts longer than the
    text tower takes (:func:`max_text_tokens`) are truncated there."""
    import torch

    limit = max_text_tokens(model)
    kwargs = {"max_length": limit} if limit else {}
    inputs = processor(text=list(texts), return_tensors="pt", padding=True, truncation=True, **kwargs)
    with torch.inference_mode():
        features = _pooled(model.get_text_features(
            **{k: v.to(device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}))
        return torch.nn.functional.normalize(features.float(), dim=-1)


def image_embeddings(model: Any, processor: Any, images: Sequence[Any], device: Any, dtype: Any) -> Any:
    """``(len(images), d)`` float32 tensor of unit-length embeddings of PIL ``images`` (each
    resized and cropped by the processor, as the model was trained)."""
    import torch

    inputs = processor(images=list(images), return_tensors="pt")
    with torch.inference_mode():
        features = _pooled(model.get_image_features(pixel_values=inputs["pixel_values"].to(device, dtype)))
        return torch.nn.functional.normalize(features.float(), dim=-1)


def similarity01(cosine: Any) -> Any:
    """``(1 + cosine) / 2``: a cosine in [-1, 1] as a unitless similarity in [0, 1] (0.5 =
    orthogonal embeddings; no temperature, so the value does not depend on ``logit_scale``).
    Works on floats, numpy arrays and tensors alike."""
    return (1.0 + cosine) / 2.0


def _pooled(output: Any) -> Any:
    """The projected embedding from ``get_*_features`` (a tensor, or an output's ``pooler_output``)."""
    return getattr(output, "pooler_output", output)
