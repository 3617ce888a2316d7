"""``fld demo --fresh``: empty a demo's data root, and nothing else.

Only a folder whose marker (``storage.layout.DataRoot.marker``) says ``fld demo`` created it is
emptied, and only while no run holds its lock; a folder that does not exist or is empty needs
nothing (a root an earlier version of ``fld demo`` made, without a marker, is known by its
``demo.toml`` and ``sample/ground_truth.json``). Anything else (a user's folder, a data root with
real data) is refused with :class:`FreshRefused`, one line that says what to do. The lock file (the
kernel's lock lives on it) and the marker stay.
"""

from __future__ import annotations

from engine.rounds.lock import RoundLock
from storage.atomic import remove_path
from storage.layout import DataRoot

DEMO_KIND = "demo"


class FreshRefused(ValueError):
    """``--fresh`` would delete something that is not a demo's data root."""


def _demo_of_an_earlier_version(root: DataRoot) -> bool:
    """A root ``fld demo`` made before markers existed: its catalog, config and sample are there."""
    return all(p.exists() for p in (root.catalog, root.path / "demo.toml", root.path / "sample" / "ground_truth.json"))


def clear_demo_root(root: DataRoot) -> list[str]:
    """Delete every entry of the demo root ``root`` but its lock file; returns their names
    (sorted; folders end in ``/``). Raises :class:`FreshRefused` for anything but a demo root
    and ``RoundBusy`` while a run holds its lock."""
    path = root.path
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return []
    if not path.is_dir():
        raise FreshRefused(f"--fresh refused: {path} is a file, not a data root; choose another --root")
    kind = root.kind()
    if kind is None and _demo_of_an_earlier_version(root):
        kind = DEMO_KIND
    if kind != DEMO_KIND or not root.catalog.exists():
        what = ("a data root with your data, not a demo's" if kind is not None
                else "not a data root that fld demo created (no .fld-root marker saying so)")
        raise FreshRefused(f"--fresh refused: {path} is {what}; delete it yourself if you mean it, "
                           f"or choose another --root")
    lock = RoundLock(root, purpose="demo --fresh")
    with lock:
        entries = sorted(p for p in path.iterdir() if p not in (lock.path, root.marker))
        names = [p.name + ("/" if p.is_dir() and not p.is_symlink() else "") for p in entries]
        for entry in entries:
            remove_path(entry)
    return names
