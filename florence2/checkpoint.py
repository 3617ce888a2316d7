"""Build a complete Florence-2 checkpoint directory offline, with random weights.

``build_checkpoint(out_dir, size=...)`` writes what ``save_pretrained`` of a released
checkpoint holds (``config.json``, ``generation_config.json``, ``model.safetensors``,
``tokenizer.json`` + ``tokenizer_config.json``, and ``processor_config.json``, which holds the
image processor's settings and the post-processing rules), so that
``Florence2ForConditionalGeneration.from_pretrained(dir, local_files_only=True)`` and
``Florence2Processor.from_pretrained(dir, local_files_only=True)`` load it with nothing
downloaded. Used by tests (``size="tiny"``: DESIGN.md's test dims, about 15k parameters
besides the text embeddings, 64x64 images), the demo, and GPU throughput benchmarks
(``"base"``/``"large"``: Florence-2-B / -L dimensions, 768x768 images, random weights).

The tokenizer is a byte-level BPE (BART-style: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3,
``<mask>`` 4) trained here on a built-in English word list plus ``vocab_words``, followed by
Florence-2's 1024 extra tokens (``<loc_0>``..``<loc_999>``, ``<poly>``, ``<sep>``, ...) and the
``<image>`` token, in that order, like the released tokenizer. Task tokens (``<CAPTION>``...)
are not tokens: the processor replaces them by prompt sentences. For base/large the text
vocabulary is padded to the released size (51289 + ``<image>``) so the embedding matrices
and the softmax have the real cost; ids above the tokenizer decode to nothing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from florence2.format import EXTRA_TOKENS, IMAGE_TOKEN, POST_PROCESSOR_CONFIG
from hf.loading import quiet_progress_bars

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
RELEASED_TEXT_VOCAB = 51289  # BART's 50265 + Florence-2's 1024 extra tokens

WORDS = """
a an the this that of on in at with and or to from by near under over behind above below
next beside front back left right top bottom middle side inside outside is are was has have
sitting standing walking running holding wearing looking lying riding playing eating parked
man woman person people child boy girl player group crowd dog cat horse bird cow sheep animal
car bus truck bicycle motorcycle train boat plane road street sidewalk sign light pole building
house window door wall roof fence tree grass field sky cloud water beach sand snow mountain hill
table chair bench bed couch desk shelf book cup bottle plate bowl food pizza cake fruit banana
apple phone laptop screen keyboard clock vase flower plant box bag umbrella hat shirt jacket
shoe hand head face hair eye red blue green yellow white black brown gray orange pink purple
small large big tall long short old young wooden metal glass open closed two three several many
image picture photo view scene square circle stripe text word letter number label logo page
""".split()


@dataclass(frozen=True)
class ModelSize:
    """Dimensions of one model size: BART text model, DaViT vision tower, square image side."""

    d_model: int
    layers: int  # encoder layers = decoder layers
    heads: int
    ffn: int
    max_positions: int
    depths: tuple[int, ...]
    patch_size: tuple[int, ...]
    patch_stride: tuple[int, ...]
    patch_padding: tuple[int, ...]
    patch_prenorm: tuple[bool, ...]
    embed_dim: tuple[int, ...]
    num_heads: tuple[int, ...]
    num_groups: tuple[int, ...]
    image_size: int
    min_vocab: int = 0  # pad the text vocabulary up to this many ids
    #: std of the random weights (matrices); None keeps transformers' init (std 0.02). The tiny
    #: model uses a wide one so its generations differ per image and mix words and location
    #: tokens, which exercises every parser in tests.
    init_std: float | None = None
    window_size: int = 12


_BASE_VISION = dict(depths=(1, 1, 9, 1), patch_size=(7, 3, 3, 3), patch_stride=(4, 2, 2, 2),
                    patch_padding=(3, 1, 1, 1), patch_prenorm=(False, True, True, True))
SIZES: dict[str, ModelSize] = {
    "tiny": ModelSize(d_model=16, layers=1, heads=1, ffn=16, max_positions=512, depths=(1,),
                      patch_size=(7,), patch_stride=(4,), patch_padding=(3,), patch_prenorm=(False,),
                      embed_dim=(16,), num_heads=(1,), num_groups=(1,), image_size=64, init_std=0.3),
    "base": ModelSize(d_model=768, layers=6, heads=12, ffn=3072, max_positions=1024, **_BASE_VISION,
                      embed_dim=(128, 256, 512, 1024), num_heads=(4, 8, 16, 32),
                      num_groups=(4, 8, 16, 32), image_size=768, min_vocab=RELEASED_TEXT_VOCAB + 1),
    "large": ModelSize(d_model=1024, layers=12, heads=16, ffn=4096, max_positions=1024, **_BASE_VISION,
                       embed_dim=(256, 512, 1024, 2048), num_heads=(8, 16, 32, 64),
                       num_groups=(8, 16, 32, 64), image_size=768, min_vocab=RELEASED_TEXT_VOCAB + 1),
}


def feature_side(size: ModelSize, image_size: int) -> int:
    """Side of the vision tower's square feature map for a square image of ``image_size`` px."""
    side = image_size
    for k, s, p in zip(size.patch_size, size.patch_stride, size.patch_padding):
        side = (side + 2 * p - k) // s + 1
    return side


def image_seq_length(size: ModelSize, image_size: int) -> int:
    """Image tokens the model makes of one image: the feature map's cells plus one pooled token."""
    return feature_side(size, image_size) ** 2 + 1


def build_tokenizer(out_dir: Path, vocab_words: Iterable[str] = ()) -> Any:
    """Train the byte-level BPE on the word list, add Florence-2's tokens, save it to ``out_dir``."""
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers, trainers
    from transformers import BartTokenizer

    words = list(dict.fromkeys([*WORDS, *(w.strip() for w in vocab_words if w.strip())]))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=4000, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    corpus = [" ".join(words)] + [f" {w}" for w in words] + words
    bpe.train_from_iterator(corpus, trainer)
    merges = [tuple(m) for m in json.loads(bpe.to_str())["model"]["merges"]]
    tokenizer = BartTokenizer(vocab=bpe.get_vocab(), merges=merges)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in EXTRA_TOKENS],
                         special_tokens=True)
    tokenizer.save_pretrained(out_dir)
    # the named image token is appended after the extra tokens (as in the released tokenizer)
    tokenizer = BartTokenizer.from_pretrained(out_dir, local_files_only=True,
                                              extra_special_tokens={"image_token": IMAGE_TOKEN})
    tokenizer.save_pretrained(out_dir)
    _drop_keys(out_dir / "tokenizer_config.json", ("is_local", "local_files_only"))
    return BartTokenizer.from_pretrained(out_dir, local_files_only=True)


def _drop_keys(path: Path, keys: Iterable[str]) -> None:
    data = json.loads(path.read_text())
    for key in keys:
        data.pop(key, None)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build_config(size: str | ModelSize = "tiny", vocab_size: int = 0, image_token_id: int = 0,
                 image_size: int | None = None) -> Any:
    """The ``Florence2Config`` of ``size`` (a name of :data:`SIZES`, or the caller's own
    :class:`ModelSize`) for a tokenizer of ``vocab_size`` ids."""
    from transformers import BartConfig, Florence2Config, Florence2VisionConfig

    if not isinstance(size, ModelSize) and size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    dims = size if isinstance(size, ModelSize) else SIZES[size]
    side = feature_side(dims, image_size or dims.image_size)
    if side < 1:
        raise ValueError(f"image_size {image_size!r} is too small for the {size} vision tower")
    vocab = max(vocab_size, dims.min_vocab)
    text = BartConfig(
        vocab_size=vocab, d_model=dims.d_model, encoder_layers=dims.layers, decoder_layers=dims.layers,
        encoder_attention_heads=dims.heads, decoder_attention_heads=dims.heads,
        encoder_ffn_dim=dims.ffn, decoder_ffn_dim=dims.ffn, max_position_embeddings=dims.max_positions,
        bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2,
        forced_bos_token_id=0, forced_eos_token_id=2, scale_embedding=False,
    )
    vision = Florence2VisionConfig(
        depths=list(dims.depths), patch_size=list(dims.patch_size), patch_stride=list(dims.patch_stride),
        patch_padding=list(dims.patch_padding), patch_prenorm=list(dims.patch_prenorm),
        embed_dim=list(dims.embed_dim), num_heads=list(dims.num_heads), num_groups=list(dims.num_groups),
        window_size=dims.window_size, projection_dim=dims.d_model,
        max_position_embeddings=max(50, side), drop_path_rate=0.0,
    )
    return Florence2Config(text_config=text.to_dict(), vision_config=vision.to_dict(),
                           image_token_id=image_token_id or vocab - 1)


def build_processor(tokenizer: Any, size: ModelSize, image_size: int) -> Any:
    """The ``Florence2Processor`` of a model of ``size`` taking square ``image_size`` px images
    (bicubic resize of the whole image, no crop; ImageNet mean/std; one image token per
    feature-map cell plus the pooled one)."""
    from transformers import CLIPImageProcessorPil, Florence2Processor

    image_processor = CLIPImageProcessorPil(
        do_resize=True, size={"height": image_size, "width": image_size}, resample=3, do_center_crop=False,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD, do_convert_rgb=True, image_seq_length=image_seq_length(size, image_size),
    )
    return Florence2Processor(image_processor=image_processor, tokenizer=tokenizer,
                              num_additional_image_tokens=1, post_processor_config=POST_PROCESSOR_CONFIG)


def generation_config() -> Any:
    """The generation defaults saved with a built checkpoint (BART's special ids, beam 3)."""
    from transformers import GenerationConfig

    return GenerationConfig(bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2,
                            forced_bos_token_id=0, forced_eos_token_id=2, num_beams=3, max_new_tokens=1024)


def build_checkpoint(out_dir: str | os.PathLike[str], size: str = "tiny", vocab_words: Iterable[str] = (),
                     seed: int = 0, image_size: int | None = None) -> Path:
    """Write a complete, loadable Florence-2 checkpoint of ``size`` with random weights.

    ``vocab_words`` are added to the tokenizer's training words (so they tokenize compactly);
    ``image_size`` (square side, px) overrides the size's default (tiny 64, base/large 768).
    Deterministic for a given ``seed``. Returns the directory.
    """
    import torch
    from transformers import Florence2ForConditionalGeneration

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}; got {size!r}")
    side = image_size or SIZES[size].image_size
    tokenizer = build_tokenizer(out, vocab_words)
    config = build_config(size, vocab_size=len(tokenizer), image_token_id=tokenizer.image_token_id,
                          image_size=side)
    build_processor(tokenizer, SIZES[size], side).save_pretrained(out)

    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's RNG is left alone
        torch.manual_seed(seed)
        model = Florence2ForConditionalGeneration(config)
        if SIZES[size].init_std is not None:
            with torch.no_grad():
                for param in model.parameters():
                    if param.ndim >= 2:
                        param.normal_(0.0, SIZES[size].init_std)
    model.generation_config = generation_config()
    with quiet_progress_bars():  # no "Writing model shards" bar
        model.save_pretrained(out)
    return out
