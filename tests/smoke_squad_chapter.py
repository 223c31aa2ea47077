"""The smoke pass's first step (``make test-smoke``): the SQuAD chapter runs whole at the smoke
profile, as a reader's Colab runs it, training every unit it shows for real (fine-tunes, int8,
IMP rounds, the compound ticket) into the smoke pass's still empty results folder, in under two
and a half minutes of its kernel's CPU time (about two where nothing else runs). The plan that
follows finds these units stored and trains only the rest: no SQuAD unit is trained twice.

CPU time, not wall time: the kernel runs on one thread, so its CPU time is what it takes on a
free core, whatever else the test run has on the machine (the notebooks' re-execution runs
beside the smoke pass).

Run it with ``--noconftest`` and the smoke pass's environment (``FLATCOMP_PROFILE=smoke``,
``FLATCOMP_RESULTS`` an empty folder), as ``make test-smoke`` does.
"""

import os
import resource
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "07_squad.ipynb"


def _children_cpu_seconds() -> float:
    """CPU seconds of this process's ended and reaped children (the kernel, once shut down)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def test_the_squad_chapter_computes_its_units_in_minutes_of_cpu():
    assert os.environ.get("FLATCOMP_PROFILE") == "smoke" and os.environ.get("FLATCOMP_RESULTS"), \
        "run with FLATCOMP_PROFILE=smoke and FLATCOMP_RESULTS at the smoke pass's results"
    assert os.environ.get("OMP_NUM_THREADS") == "1", "run with OMP_NUM_THREADS=1: one core"
    results = Path(os.environ["FLATCOMP_RESULTS"], "smoke")
    assert not list(results.glob("squad*/*.json")), f"{results} holds SQuAD units already"
    notebook = nbformat.read(CHAPTER, as_version=4)
    notebook.cells = [c for c in notebook.cells
                      if "nbval-skip" not in c.metadata.get("tags", [])]  # Colab's install
    before = _children_cpu_seconds()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.fspath(CHAPTER.parent)}}).execute()
    used = _children_cpu_seconds() - before
    assert used > 1, "the kernel's CPU time was not counted: was it this process's child?"
    assert used < 150, f"the SQuAD chapter took {used:.0f} CPU seconds at smoke"
    assert list(results.glob("squad_finetune/*.json")), "the chapter stored no fine-tune"
    shown = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", ""))
                      for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "| `squad_quant` |" not in shown  # computed, not skipped
    assert "Adam's int8 drop minus SAM's" in shown and "IMP at 20%, SAM − Adam" in shown
