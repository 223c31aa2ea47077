"""Shared fixtures: an isolated environment for every test, the smoke profile and its tokenizer.

Every test runs with ``FLATCOMP_RESULTS`` and ``FLATCOMP_CACHE`` pointing into its own temporary
folder (nothing is written to the repository's ``results/`` or to ``~/.cache``), without
``FLATCOMP_PROFILE``, and with provenance's git calls replaced by a fixed answer (tests must not
depend on, or touch, the state of the repository's git index).

PyTorch runs on one thread: the tiny BERT's matrices are too small to gain from more, and on a
busy 2-core machine two threads contend (about 7x slower per step measured here).
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

FAKE_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """Results and checkpoints under tmp_path; no profile chosen by the environment; a fixed
    commit in the provenance."""
    monkeypatch.setenv("FLATCOMP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("FLATCOMP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FLATCOMP_PROFILE", raising=False)
    import flatcomp.lab.results

    monkeypatch.setattr(flatcomp.lab.results, "_CODE_VERSION",
                        {"git_commit": FAKE_COMMIT, "git_dirty": False})
    return tmp_path


@pytest.fixture(scope="session")
def smoke():
    """The smoke profile: tiny random BERT, rows shipped in flatcomp/lab/smoke_data."""
    from flatcomp.lab.config import SMOKE

    return SMOKE


@pytest.fixture(scope="session")
def tokenizer(smoke):
    """The smoke profile's tokenizer (MiniLM's uncased WordPiece), loaded once per session."""
    from flatcomp.lab.models import load_tokenizer

    return load_tokenizer(smoke)
