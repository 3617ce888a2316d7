"""Order of annotators within a round: who reads whose rows.

Each annotator declares the rows of the round it reads (``Annotator.reads``) and the rows it
emits (``Annotator.emitted_rows``, see :class:`annotators.base.Rows`). Among the configured
annotators, A runs after every other one that emits rows A reads (:func:`runs_after`);
:func:`annotation_stages` turns the configured names into stages (lists run in one Beam
pipeline each), keeping config order within a stage. No annotator is known here by name.
"""

from __future__ import annotations

from typing import Iterable

from annotators.registry import annotator_class


def reads_rows_of(reader: str, writer: str) -> bool:
    """Whether annotator ``reader`` reads rows that annotator ``writer`` may emit."""
    return any(wanted.may_hold(made, writer)
               for wanted in annotator_class(reader).reads for made in annotator_class(writer).emitted_rows())


def runs_after(names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Per annotator of ``names``, the other annotators of ``names`` whose rows it reads."""
    names = list(dict.fromkeys(names))
    return {a: tuple(b for b in names if b != a and reads_rows_of(a, b)) for a in names}


def _cycle(after: dict[str, tuple[str, ...]], remaining: list[str]) -> list[str]:
    """A cycle among ``remaining`` (each of which waits for another of them), closed: [a, b, a]."""
    path = [remaining[0]]
    while True:
        nxt = next(d for d in after[path[-1]] if d in remaining)
        if nxt in path:
            return path[path.index(nxt):] + [nxt]
        path.append(nxt)


def annotation_stages(names: list[str]) -> list[list[str]]:
    """Stages of ``names``: each annotator comes after every configured one it reads."""
    remaining = list(dict.fromkeys(names))
    after = runs_after(remaining)
    stages: list[list[str]] = []
    while remaining:
        ready = [n for n in remaining if not any(d in remaining for d in after[n])]
        if not ready:
            cycle = _cycle(after, remaining)
            raise ValueError(f"annotators {', '.join(sorted(set(cycle)))} read each other's rows in a cycle "
                             f"({' reads '.join(cycle)}): declare their reads/emits (annotators.base.Rows) more precisely")
        stages.append(ready)
        remaining = [n for n in remaining if n not in ready]
    return stages
