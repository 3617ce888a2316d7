"""Small text clean-ups shared by the annotators that write or choose texts.

White space is folded (any run of spaces, tabs and newlines becomes one space, ends
stripped) before texts are compared, so ``" A  dog"`` and ``"a dog"`` are the same text.
"""

from __future__ import annotations

from typing import Any, Sequence


def fold_spaces(text: Any) -> str:
    """``text`` (``None`` -> ``""``) with white space runs folded to one space, stripped."""
    return " ".join(str(text or "").split())


def dedupe(texts: Sequence[str]) -> list[str]:
    """Stripped, non-empty ``texts`` with case-insensitive duplicates removed, order kept.

    The first spelling of a text is the one kept (``[" A  dog", "a dog"] -> ["A dog"]``).
    """
    seen, out = set(), []
    for text in texts:
        text = fold_spaces(text)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
    return out


def strip_prompt(text: str, prompt: str) -> str:
    """``text`` stripped, without a leading copy of ``prompt`` (decoder-only models echo it).

    Both are white-space folded first; the prompt prefix is matched case-insensitively.
    """
    text = fold_spaces(text)
    prefix = fold_spaces(prompt)
    if prefix and text.lower().startswith(prefix.lower()):
        text = text[len(prefix):]
    return text.strip()
