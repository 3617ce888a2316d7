"""Tokenizers built locally in code for test-size checkpoints (nothing is downloaded).

Each builder returns a transformers tokenizer whose vocabulary covers the words of the
synthetic captions the tests use; tests save it next to a test-size model with
``save_pretrained`` so production code loads it back by path (``AutoTokenizer`` /
``AutoProcessor``).
"""

from __future__ import annotations

from typing import Iterable

#: words of the synthetic captions and region labels used across the language tests
WORDS = (
    "a an the this that of on in at to with and or next near above below left right top "
    "bottom middle center image picture photo showing shows there is are two three one "
    "red green blue yellow black white orange purple gray small large big tiny "
    "circle square triangle rectangle shape shapes word words text hello world sign "
    "dog cat person car tree house sky background foreground letter letters written "
    "drawn colored colourful bright dark . , : ; ! ? ' - caption region regions detailed "
    "describe description objects object"
).split()

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'-<>/_()[]\"#&*+="


def bert_wordpiece(words: Iterable[str] = WORDS, model_max_length: int = 256):
    """A lowercasing BERT WordPiece tokenizer over ``words`` plus single characters.

    Every character also has a ``##`` continuation piece, so any lowercase ASCII word
    tokenizes without ``[UNK]``.
    """
    from transformers import BertTokenizer

    vocab: dict[str, int] = {}
    for token in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *CHARS, *(f"##{c}" for c in CHARS), *words]:
        vocab.setdefault(token, len(vocab))
    return BertTokenizer(vocab=vocab, model_max_length=model_max_length)


def _train_bpe(corpus: list[str], vocab_size: int, *, lowercase: bool, end_of_word_suffix: str | None,
               special_tokens: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Train a byte-level BPE on ``corpus`` with the ``tokenizers`` library; return (vocab, merges)."""
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    kwargs = {"end_of_word_suffix": end_of_word_suffix} if end_of_word_suffix else {}
    tok = Tokenizer(models.BPE(unk_token=None, **kwargs))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
                                  **kwargs)
    tok.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _corpus(words: Iterable[str]) -> list[str]:
    words = list(words)
    return [" ".join(words), *words, CHARS]


def clip_bpe(words: Iterable[str] = WORDS, vocab_size: int = 600, model_max_length: int = 32):
    """A CLIP BPE tokenizer (``</w>`` word ends, lowercasing) trained on ``words``."""
    from transformers import CLIPTokenizer

    specials = ["<|startoftext|>", "<|endoftext|>"]
    # CLIP's pre-tokenizer splits words before byte-level mapping; train on the same pieces
    vocab, merges = _train_bpe(_corpus(words), vocab_size, lowercase=True, end_of_word_suffix="</w>",
                               special_tokens=specials)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def gpt2_bpe(words: Iterable[str] = WORDS, vocab_size: int = 600, model_max_length: int = 256):
    """A byte-level GPT-2 BPE tokenizer trained on ``words``; pad token = eos, left padding."""
    from transformers import GPT2Tokenizer

    eos = "<|endoftext|>"
    corpus = _corpus(words) + [" " + w for w in words]
    vocab, merges = _train_bpe(corpus, vocab_size, lowercase=False, end_of_word_suffix=None, special_tokens=[eos])
    return GPT2Tokenizer(vocab=vocab, merges=merges, pad_token=eos, model_max_length=model_max_length,
                         padding_side="left")
