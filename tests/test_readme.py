"""Every ```python block of README.md runs, each in a fresh namespace that holds small stand-ins
for the names the snippets assume:

    torch, nn            the modules
    model                nn.Sequential(Linear(8, 16), LayerNorm(16), ReLU(), Linear(16, 16),
                         ReLU(), Linear(16, 4)): prunable set the first two Linears
    loss_fn              nn.CrossEntropyLoss()
    x, y                 a batch: 32 inputs of width 8, 32 labels in 0..3

A top-level expression whose line ends in a comment holding a number, such as
``sparsity_report(model)["sparsity"]  # 0.5``, must evaluate to that number.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def snippets(text: str) -> list[tuple[int, str]]:
    """(line number of the block's first line in the file, its code) for each python block."""
    return [(text[:m.start(1)].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def stand_ins() -> dict:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 16),
                          nn.ReLU(), nn.Linear(16, 4))
    return {"torch": torch, "nn": nn, "model": model, "loss_fn": nn.CrossEntropyLoss(),
            "x": torch.randn(32, 8), "y": torch.randint(0, 4, (32,))}


def _claimed(stmt: ast.stmt, lines: list[str]) -> float | None:
    """The number in the comment that ends an expression statement, if any."""
    if not isinstance(stmt, ast.Expr):
        return None
    comment = lines[stmt.end_lineno - 1].partition("#")[2].strip()
    try:
        value = ast.literal_eval(comment)
    except (ValueError, SyntaxError):
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def run_snippet(first_line: int, code: str) -> None:
    namespace, lines = stand_ins(), code.splitlines()
    for stmt in ast.parse(code).body:
        where = f"README.md, block at line {first_line}, its line {stmt.lineno}"
        expected = _claimed(stmt, lines)
        if expected is None:
            exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)
        else:
            got = eval(compile(ast.Expression(stmt.value), where, "eval"), namespace)
            assert float(got) == pytest.approx(expected), \
                f"{where}: {got}, the README says {expected}"


SNIPPETS = snippets(README.read_text())


def test_the_readme_has_its_library_snippets():
    assert len(SNIPPETS) >= 2
    assert any("flatcomp.sam" in code for _, code in SNIPPETS)
    assert any("flatcomp.pruning" in code for _, code in SNIPPETS)


@pytest.mark.parametrize("first_line, code", SNIPPETS, ids=[f"line{n}" for n, _ in SNIPPETS])
def test_readme_snippet_runs(first_line, code):
    run_snippet(first_line, code)


def test_a_broken_snippet_or_a_wrong_claim_fails():
    with pytest.raises(NameError):
        run_snippet(1, "from flatcomp.pruning import prunable_weights\nprunable_weight(model)\n")
    with pytest.raises(AssertionError, match="the README says 0.25"):
        run_snippet(1, "from flatcomp.pruning import *\n"
                       "apply_masks(model, magnitude_masks(prunable_weights(model), 0.5))\n"
                       "sparsity_report(model)['sparsity']  # 0.25\n")
    [(line, code)] = snippets("text\n```python\nx = 1  # 2\n```\n")
    assert line == 3 and code == "x = 1  # 2\n"
    run_snippet(line, code)  # an assignment's comment is no claim


NEWCOMER = re.compile(r"^## From a clone to the command line\n.*?^```bash\n(.*?)^```", re.S | re.M)


def test_the_newcomer_path_gives_a_working_command_line(tmp_path):
    """The README's "From a clone to the command line": `make install`, then `.venv/bin/python
    -m flatcomp list`. `make test` has just run `make install` for the environment these tests
    run in, so that environment must be up to date by the Makefile's own rule, and its Python
    must list the experiments from outside the repository (no help from the working folder)."""
    from flatcomp.lab.experiments import EXPERIMENTS

    block = NEWCOMER.search(README.read_text())
    assert block, "README.md has no bash block under '## From a clone to the command line'"
    commands = [line.partition("#")[0].strip() for line in block.group(1).splitlines()]
    assert commands[:2] == ["make install", ".venv/bin/python -m flatcomp list"], commands
    venv = Path(sys.prefix)
    if not (venv / ".flatcomp-installed").exists():
        pytest.skip(f"{venv} was not made by `make install` (no .flatcomp-installed stamp)")
    stale = subprocess.run(["make", "-q", "install", f"VENV={venv}"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert stale.returncode == 0, f"`make install VENV={venv}` would install again: run it"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "flatcomp", "list"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=600)
    assert listed.returncode == 0, listed.stderr[-3000:]
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert set(EXPERIMENTS) <= names, f"not listed: {sorted(set(EXPERIMENTS) - names)}"
