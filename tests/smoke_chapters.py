"""The smoke pass's last step (``make test-smoke``): the smoke plan left nothing to compute, and
every chapter's code runs on the results it has just computed (``FLATCOMP_RESULTS``), so that
every report's code path runs, those whose ``small`` results are not stored yet included.

Each chapter runs in an IPython shell inside this process, in a namespace of its own, as a
kernel would run it (rich display of a cell's last value, inline figures drawn to PNG), without
a kernel's start and imports for every chapter: about 100 CPU-seconds for the whole book, where
``pytest --nbval-lax`` took about three times that. Cells tagged ``nbval-skip`` (Colab's
install) are left out, as nbval leaves them out.

Run it with ``--noconftest``: the unit tests' conftest gives every test a results folder of its
own, and this one must read the smoke plan's.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"


def _smoke_env() -> None:
    assert os.environ.get("FLATCOMP_PROFILE") == "smoke" and os.environ.get("FLATCOMP_RESULTS"), \
        "run with FLATCOMP_PROFILE=smoke and FLATCOMP_RESULTS at the smoke plan's results"


def test_the_smoke_plan_left_nothing_to_compute():
    from flatcomp.lab import plan
    from flatcomp.lab.config import get_profile

    _smoke_env()
    left = plan.make_plan(get_profile())
    assert not left, plan.describe(get_profile(), left)


@pytest.fixture(scope="module")
def shell():
    """One IPython shell for every chapter this worker runs, with inline figures."""
    from IPython.core.interactiveshell import InteractiveShell

    class Shell(InteractiveShell):
        def enable_gui(self, gui=None):  # inline figures need no GUI event loop
            pass

    shell = Shell.instance()
    shell.enable_matplotlib("inline")
    return shell


def chapter_cells(path: Path) -> list[str]:
    """The code cells of a chapter that this pass runs, in order."""
    notebook = nbformat.read(path, as_version=4)
    return ["".join(cell.source) for cell in notebook.cells if cell.cell_type == "code"
            and "nbval-skip" not in cell.metadata.get("tags", [])]


@pytest.mark.parametrize("chapter", sorted(BOOK.glob("*.ipynb")), ids=lambda path: path.stem)
def test_the_chapter_runs_on_the_smoke_plans_results(chapter, shell, monkeypatch):
    _smoke_env()
    monkeypatch.chdir(BOOK)  # where a kernel started by nbval would run
    shell.reset(new_session=False)
    for number, source in enumerate(chapter_cells(chapter), 1):
        result = shell.run_cell(source, silent=False, store_history=False)
        assert result.success, f"{chapter.name}, code cell {number}: " \
            f"{result.error_before_exec or result.error_in_exec!r}"
