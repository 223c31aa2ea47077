"""The SQuAD chapter runs whole at the smoke profile on the CPU, training every unit it shows for
real (fine-tunes, int8, IMP rounds, the compound ticket), in under two minutes."""

import os
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

CHAPTER = Path(__file__).resolve().parents[1] / "book" / "07_squad.ipynb"


def test_the_squad_chapter_runs_at_smoke_in_under_two_minutes(monkeypatch):
    monkeypatch.setenv("FLATCOMP_PROFILE", "smoke")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("FLATCOMP_DATA", raising=False)
    notebook = nbformat.read(CHAPTER, as_version=4)
    notebook.cells = [c for c in notebook.cells
                      if "nbval-skip" not in c.metadata.get("tags", [])]  # Colab's install
    start = time.monotonic()
    NotebookClient(notebook, timeout=240, kernel_name="python3",
                   resources={"metadata": {"path": os.fspath(CHAPTER.parent)}}).execute()
    elapsed = time.monotonic() - start
    assert elapsed < 120, f"the SQuAD chapter took {elapsed:.0f} s at smoke"
    shown = "\n".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("text", ""))
                      for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "| `squad_quant` |" not in shown  # computed, not skipped
    assert "Adam's int8 drop minus SAM's" in shown and "IMP at 20%, SAM − Adam" in shown
