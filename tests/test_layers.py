"""Two layers: the library a user imports (the modules directly in flatcomp/), and the book's
machinery (everything under flatcomp/lab/). Read from the source (AST), so that a lazy import
inside a function counts too. Within the machinery, the presentation (the chapters' report
modules) imports no execution when it is imported, and importing it runs nothing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "flatcomp"
# What a user imports: methods any training loop can use, with no profile and no data code; every
# module directly in flatcomp/ but __main__, the command line's entry, which hands over to
# flatcomp.lab.cli.
LIBRARY = {p.stem for p in PACKAGE.glob("*.py")} - {"__main__"}
# The book's machinery: everything under flatcomp/lab/.
LAB = PACKAGE / "lab"
# Its presentation: the shared reporting module, one report module per chapter, the claims page.
# It reads stored results. What computes or stores them (the experiments, the training loops, the
# plan, the results store, which asks git for the commit when imported) it may import only inside
# a function, when called.
PRESENTATION = {"reporting", "claims"} | {p.stem for p in LAB.glob("*_report.py")}
EXECUTION = {"experiments", "train", "cofi_train", "plan", "pack", "assemble", "results", "models",
             "precision", "colab", "cli"}


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


def test_the_presentation_imports_no_execution_at_import_time():
    assert {"reporting", "data_report", "sam_report", "cofi_report", "coverage_report"} <= \
        PRESENTATION
    graph = {module_name(p): flatcomp_imports(p, top_level_only=True)
             for p in PACKAGE.rglob("*.py")}
    for name in sorted(PRESENTATION):
        seen, todo = set(), [f"flatcomp.lab.{name}"]
        while todo:  # everything importing it imports, through any chain
            module = todo.pop()
            if module not in seen:
                seen.add(module)
                todo += graph.get(module, ())
        found = sorted(m for m in seen if m.split(".")[:2] == ["flatcomp", "lab"]
                       and len(m.split(".")) > 2 and m.split(".")[2] in EXECUTION)
        assert not found, f"importing flatcomp.lab.{name} imports {', '.join(found)}"


def test_importing_the_presentation_starts_no_process_and_sets_no_variable():
    """No git (nor any other process) and no change to ``os.environ`` or matplotlib's settings
    when every report module is imported (the libraries they use are imported first: some set
    variables of their own when imported)."""
    modules = " ".join(f"flatcomp.lab.{n}" for n in sorted(PRESENTATION))
    check = f"""
import os, subprocess
import matplotlib, pandas, scipy.stats, torch
started, start = [], subprocess.Popen.__init__
def record(self, args, *rest, **kwargs):
    started.append(args)
    return start(self, args, *rest, **kwargs)
subprocess.Popen.__init__ = record
environ, settings = dict(os.environ), dict(matplotlib.rcParams)
for name in "{modules}".split():
    __import__(name)
assert not started, started
assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
assert dict(matplotlib.rcParams) == settings
"""
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


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
