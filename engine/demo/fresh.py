"""``fld demo --fresh``: empty a demo's data root of what the engine made, and nothing else.

Only a folder whose marker (``storage.layout.DataRoot.marker``) says ``fld demo`` created it is
emptied, only of the entries the engine makes there (the data root's layout,
``storage.layout.LAYOUT_ENTRIES``, and the demo's own :data:`DEMO_ENTRIES`), and only while no
run holds its lock; a folder that does not exist or is empty needs nothing (a root an earlier
version of ``fld demo`` made, without a marker, is known by its private catalog, ``demo.toml``
and ``sample/ground_truth.json``). Anything else (a user's folder, a data root with real data, a
demo root holding a file the engine did not make) is refused with :class:`FreshRefused`, one
line that names what is in the way and says what to do. The lock file (the kernel's lock lives
on it) and the marker stay.
"""

from __future__ import annotations

from engine.rounds.lock import RoundLock
from storage.atomic import remove_path
from storage.layout import DataRoot

DEMO_KIND = "demo"
#: what ``fld demo`` writes into its root besides the layout (``engine.demo.report.prepare_demo``)
DEMO_ENTRIES = ("demo.toml", "sample", "spacy-demo")


class FreshRefused(ValueError):
    """``--fresh`` would delete something that is not a demo's data root."""


def _demo_of_an_earlier_version(root: DataRoot) -> bool:
    """A root ``fld demo`` made before markers existed: its catalogs, config and sample are there."""
    return all(p.is_file() for p in (root.engine_catalog, root.catalog, root.path / "demo.toml",
                                     root.path / "sample" / "ground_truth.json"))


def _few(names: list[str]) -> str:
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _refuse_unless_a_demo_root(root: DataRoot) -> None:
    kind = root.kind()
    if kind is None and _demo_of_an_earlier_version(root):
        kind = DEMO_KIND
    problems = []
    if kind != DEMO_KIND:
        problems.append("is a data root with your data, not a demo's" if kind is not None
                        else "is not a data root that fld demo created (no .fld-root marker saying so)")
    if foreign := root.foreign_entries(own=DEMO_ENTRIES):
        problems.append(f"holds files fld demo does not make ({_few(foreign)})")
    if problems:
        raise FreshRefused(f"--fresh refused: {root.path} {' and '.join(problems)}; delete or move them yourself "
                           f"if you mean it, or choose another --root")


def clear_demo_root(root: DataRoot) -> list[str]:
    """Delete every entry of the demo root ``root`` but its lock file and marker; returns their
    names (sorted; folders end in ``/``). Raises :class:`FreshRefused` for anything but a demo
    root holding only what the engine made, and ``RoundBusy`` while a run holds its lock."""
    path = root.path
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return []
    if not path.is_dir():
        raise FreshRefused(f"--fresh refused: {path} is a file, not a data root; choose another --root")
    _refuse_unless_a_demo_root(root)
    lock = RoundLock(root, purpose="demo --fresh")
    with lock:
        _refuse_unless_a_demo_root(root)  # again, now that no run can write: nothing of the user's goes
        entries = sorted(p for p in path.iterdir() if p not in (lock.path, root.marker))
        names = [p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in entries]
        for entry in entries:
            remove_path(entry)
    return names
