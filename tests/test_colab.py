"""On Colab a chapter shows what is stored and trains only when the reader asks
(flatcomp.lab.colab), checked here with a stand-in ``google.colab`` module, at the smoke
profile."""

from __future__ import annotations

import os
import sys
import types

import pytest

from flatcomp.lab import colab
from flatcomp.lab.config import SMOKE, get_profile


@pytest.fixture
def on_colab(monkeypatch):
    """A stand-in for Colab: its ``google.colab`` module is loaded."""
    google = types.ModuleType("google")
    google.colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", google.colab)


def test_on_colab_is_whether_google_colab_is_loaded(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert not colab.on_colab()
    google = types.ModuleType("google")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert colab.on_colab()


def test_off_colab_the_policy_is_the_books_default(monkeypatch):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    # what every chapter did before: small shows what is stored, the others compute the rest
    assert colab.missing_policy(get_profile("small")) == "skip"
    assert colab.missing_policy(get_profile("paper")) == "run"
    assert colab.missing_policy(SMOKE) == "run"
    assert colab.missing_policy(SMOKE, None) == "run"
    TRAIN_MISSING = True  # the switch does nothing off Colab: a local "Run all" is unchanged
    for name, policy in (("small", "skip"), ("paper", "run"), ("smoke", "run")):
        profile = get_profile(name)
        assert colab.missing_policy(profile, TRAIN_MISSING if colab.on_colab() else None) \
            == policy


@pytest.mark.usefixtures("on_colab")
def test_on_colab_nothing_trains_unless_the_reader_asks():
    assert colab.on_colab()
    for name in ("small", "paper"):
        profile = get_profile(name)
        for TRAIN_MISSING, policy in ((False, "skip"), (True, "run")):  # the chapter's switch
            # the chapter's setup cell, as it is written
            assert colab.missing_policy(profile, TRAIN_MISSING if colab.on_colab() else None) \
                == policy, (name, TRAIN_MISSING)
        assert colab.missing_policy(profile, False) == "skip", name
        assert colab.missing_policy(profile, True) == "run", name
    assert colab.missing_policy(SMOKE, False) == "run"  # seconds: the smoke profile always runs
    assert colab.missing_policy(SMOKE, True) == "run"


def test_the_policy_rejects_what_is_not_a_profile_or_a_switch():
    with pytest.raises(TypeError, match="True .* False .* None"):
        colab.missing_policy(SMOKE, "yes")
    with pytest.raises(TypeError, match="needs a Profile"):
        colab.missing_policy("paper", True)


@pytest.mark.usefixtures("on_colab")
def test_estimate_hours_of_a_chapter_with_nothing_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATCOMP_RESULTS", str(tmp_path / "empty"))
    hours = colab.estimate_hours(SMOKE, "sam", seconds_per_step=lambda p: 1.0)
    assert hours > 0
    twice = colab.estimate_hours(SMOKE, "sam", seconds_per_step=lambda p: 2.0)
    assert twice == pytest.approx(2 * hours)  # the plan's steps times the seconds per step


def test_an_unknown_chapter_names_the_chapters_there_are():
    with pytest.raises(ValueError, match="unknown chapter 'flatness'") as error:
        colab.estimate_hours(SMOKE, "flatness", seconds_per_step=lambda p: 1.0)
    for chapter in ("setup", "sam", "lottery", "cofi", "quantization", "squad", "efficiency",
                    "compressibility"):
        assert repr(chapter) in str(error.value)
    assert colab.chapters()[:2] == ["setup", "sam"]


@pytest.mark.usefixtures("on_colab")
def test_use_results_folder_points_results_and_checkpoints_there(tmp_path, monkeypatch):
    from flatcomp.lab.config import cache_dir, results_dir

    monkeypatch.setenv("FLATCOMP_RESULTS", str(tmp_path / "before"))  # undone after the test
    monkeypatch.setenv("FLATCOMP_CACHE", str(tmp_path / "before-cache"))
    folder = colab.use_results_folder(tmp_path / "drive" / "flatcomp-results")
    assert folder == tmp_path / "drive" / "flatcomp-results"
    assert os.environ["FLATCOMP_RESULTS"] == str(folder) and results_dir() == folder
    assert os.environ["FLATCOMP_CACHE"] == str(folder / "cache") and cache_dir() == folder / "cache"
    assert (folder / "cache").is_dir()
    assert colab.use_results_folder(str(folder)) == folder  # again: the same folder, kept


def test_use_results_folder_says_what_is_wrong(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATCOMP_RESULTS", str(tmp_path / "before"))
    with pytest.raises(ValueError, match="no results folder"):
        colab.use_results_folder("")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ValueError, match="is a file"):
        colab.use_results_folder(tmp_path / "a-file")
    monkeypatch.setattr(colab, "DRIVE", tmp_path / "drive")  # Drive not mounted: no MyDrive
    with pytest.raises(ValueError, match="not mounted: run .*drive.mount"):
        colab.use_results_folder(tmp_path / "drive" / "MyDrive" / "flatcomp-results")
    assert not (tmp_path / "drive").exists()  # nothing made where Drive would be mounted
    assert os.environ["FLATCOMP_RESULTS"] == str(tmp_path / "before")
