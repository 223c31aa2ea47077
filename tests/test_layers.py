"""Two layers: the library a user imports (the modules directly in flatcomp/), and the book's
machinery (everything under flatcomp/lab/). Read from the source (AST), so that a lazy import
inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "flatcomp"
# What a user imports: methods any training loop can use, with no profile and no data code; every
# module directly in flatcomp/ but __main__, the command line's entry, which hands over to
# flatcomp.lab.cli.
LIBRARY = {p.stem for p in PACKAGE.glob("*.py")} - {"__main__"}
# The book's machinery: everything under flatcomp/lab/.
LAB = PACKAGE / "lab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def flatcomp_imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The flatcomp modules a file imports (``from flatcomp import x`` counts as flatcomp.x
    where x is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("flatcomp")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.startswith("flatcomp"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
                      or (PACKAGE.parent / node.module.replace(".", "/") / a.name).is_dir()}
    return found - {"flatcomp"}


def test_the_library_is_the_modules_beside_the_lab():
    assert {"sam", "pruning", "quantization", "loop", "__init__"} <= LIBRARY
    assert (LAB / "__init__.py").exists() and (LAB / "experiments" / "__init__.py").exists()
    assert not LIBRARY & {"config", "data", "train", "plan", "results", "reporting", "experiments"}


def test_no_library_module_imports_the_machinery():
    for name in sorted(LIBRARY):
        imported = flatcomp_imports(PACKAGE / f"{name}.py")
        outside = sorted(m for m in imported if m.split(".")[1] not in LIBRARY)
        assert not outside, f"flatcomp.{name} imports the book's machinery: {', '.join(outside)}"


def test_the_package_has_no_import_cycle_at_import_time():
    graph = {module_name(p): flatcomp_imports(p, top_level_only=True) - {module_name(p)}
             for p in PACKAGE.rglob("*.py")}  # a package importing its own modules is no cycle
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path + [node, nxt])
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_the_check_sees_a_machinery_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from flatcomp.lab.config import get_profile\n")
    assert "flatcomp.lab.config" in flatcomp_imports(bad)
    assert "flatcomp.lab.config" not in flatcomp_imports(bad, top_level_only=True)
    for line in ("from flatcomp.lab import plan", "import flatcomp.lab.train",
                 "from flatcomp import lab"):
        bad.write_text(line + "\n")
        found = flatcomp_imports(bad)
        assert found and all(m.split(".")[1] not in LIBRARY for m in found), (line, found)
