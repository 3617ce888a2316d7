"""engine/dataset/ is shared by the stages after ingest: it imports only ingest and storage,
and report and release read the dataset through it, never through retrain."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def _imported(package: str) -> dict[str, set[str]]:
    """module file -> the project modules it imports (module level or inside a function)."""
    out = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
        out[str(path.relative_to(REPO))] = names
    return out


def test_dataset_imports_only_ingest_and_storage():
    ours = ("engine", "storage", "hf", "florence2", "filters", "annotators", "flows")
    wrong = [f"{path} imports {name}" for path, names in _imported("engine/dataset").items() for name in names
             if name.split(".")[0] in ours
             and not name.startswith(("engine.dataset", "engine.ingest", "storage"))]
    assert not wrong, wrong


def test_report_and_release_do_not_read_through_retrain():
    wrong = [f"{path} imports {name}" for package in ("engine/report", "engine/release")
             for path, names in _imported(package).items() for name in names if name.startswith("engine.retrain")]
    assert not wrong, wrong
