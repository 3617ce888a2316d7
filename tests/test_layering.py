"""The import rules of ARCHITECTURE.md, read from the source (every import, at module level or
inside a function): dependencies point one way, no import cycles, Beam only in engine/, Prefect
only in flows/, and Florence-2's token facts (location tokens, task prompts) only in florence2/."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("storage", "hf", "florence2", "filters", "annotators", "engine", "flows")
#: package -> the project packages it may import (besides itself)
ALLOWED = {
    "storage": set(),
    "hf": set(),
    "florence2": {"storage", "hf"},
    "filters": {"storage"},
    "annotators": {"storage", "hf", "florence2"},
    "engine": {"storage", "hf", "florence2", "filters", "annotators"},
    "flows": {"engine"},
}
#: Florence-2's special tokens as a string literal spells them
TOKEN_RE = re.compile(r"<loc_|<(?:OD|CAPTION|DETAILED_CAPTION|MORE_DETAILED_CAPTION|DENSE_REGION_CAPTION|OCR|"
                      r"OCR_WITH_REGION|CAPTION_TO_PHRASE_GROUNDING|REGION_TO_SEGMENTATION|REGION_TO_DESCRIPTION)>")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path, name: str, known: set[str] | frozenset[str] = frozenset()) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved); ``known``: the
    project's modules (``from package import module`` then counts as importing the module only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            # ``from package import module`` depends on the module, not on the package's __init__
            found.update(submodules)
            if len(submodules) < len(node.names):  # names defined by the package itself
                found.add(base)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: {m for m in _imports(path, name, known) if m in modules and m != name} for name, path in modules.items()}


def test_dependencies_point_one_way(graph):
    wrong = sorted(f"{name} imports {target}" for name, targets in graph.items() for target in targets
                   if target.split(".")[0] != name.split(".")[0]
                   and target.split(".")[0] not in ALLOWED[name.split(".")[0]])
    assert not wrong, wrong


def test_there_is_no_import_cycle(graph):
    # Tarjan's strongly connected components over the module graph
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_beam_only_in_engine_and_prefect_only_in_flows():
    wrong = []
    for name, path in _modules().items():
        top = name.split(".")[0]
        for imported in _imports(path, name):
            if imported.split(".")[0] == "apache_beam" and top != "engine":
                wrong.append(f"{name} imports {imported}")
            if imported.split(".")[0] == "prefect" and top != "flows":
                wrong.append(f"{name} imports {imported}")
    assert not wrong, wrong


def test_only_florence2_spells_location_tokens_and_task_prompts():
    wrong = []
    for name, path in _modules().items():
        if name.split(".")[0] == "florence2":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                      and node.body and isinstance(node.body[0], ast.Expr)
                      and isinstance(node.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                    and TOKEN_RE.search(node.value):
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno}: {node.value[:60]!r}")
    assert not wrong, wrong


def test_the_rules_see_the_imports_they_judge(tmp_path):
    """The checks above can fail: a made-up module breaking each rule is seen breaking it."""
    probe = tmp_path / "bad.py"
    probe.write_text("from flows.main import main\nimport apache_beam\n\ndef f():\n    from engine import cli\n",
                     encoding="utf-8")
    assert {"flows.main", "apache_beam", "engine"} <= _imports(probe, "storage.bad")
    assert TOKEN_RE.search("<OD>") and TOKEN_RE.search("cat<loc_1>") and not TOKEN_RE.search("<s>")
