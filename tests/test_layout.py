"""The package's import graph has no circles: each module can be read after the ones it imports."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import anomalyclip

ROOT = Path(anomalyclip.__file__).resolve().parent


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of the package that `path` imports, at module level or inside functions alike."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            candidates = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(c for c in candidates if c in known)
    # a module importing a name its own package re-exports is reading its parent, not a circle
    return {m for m in found if m != name and not name.startswith(m + ".")}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    known = set(files)
    return {name: imported(path, name, known) for name, path in files.items()}


def test_the_graph_sees_the_imports_it_should():
    graph = import_graph()
    assert "anomalyclip.errors" in graph["anomalyclip.fileio"] or "anomalyclip.errors" in graph["anomalyclip.checkpoint.loader"]
    assert "anomalyclip.cli.common" in graph["anomalyclip.cli.predict"]
    assert len(graph) > 50


def test_a_circle_through_a_function_level_import_is_caught(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from .sub import b\n\ndef f():\n    return b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..a import f\n    return f\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub", "pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": {"pkg.a"}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


def test_no_import_circles():
    graphlib.TopologicalSorter(import_graph()).prepare()  # raises CycleError naming the circle
