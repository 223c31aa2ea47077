"""What a chapter does on Colab: show what is stored, and train only when the reader asks.

Every chapter's first cell installs flatcomp on Colab and switches to the ``paper`` profile
(bert-base: its missing units cost tens to hundreds of GPU-hours). There, unlike a local run,
nothing trains unless the reader sets the chapter's ``TRAIN_MISSING = True``, and then only after
the estimate of what it will cost on this device is printed. Results go to a folder the reader
names (Google Drive, say), not beside site-packages where they would vanish with the session:

    from flatcomp.lab.colab import estimate_hours, missing_policy, on_colab, use_results_folder

    use_results_folder("/content/drive/MyDrive/flatcomp-results")  # results and checkpoints
    MISSING = missing_policy(profile, TRAIN_MISSING if on_colab() else None)
    if MISSING == "run" and on_colab():
        print(f"about {estimate_hours(profile, 'sam'):.1f} GPU-hours")

Off Colab (``train_missing=None``) the policy is the book's: ``small`` shows what is stored,
every other profile computes what is missing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # the profile's type only: this module imports the machinery when called
    from flatcomp.lab.config import Profile

# Where Colab mounts Google Drive (``drive.mount("/content/drive")``).
DRIVE = Path("/content/drive")


def on_colab() -> bool:
    """Whether this Python runs in a Colab notebook (its ``google.colab`` module is loaded)."""
    return "google.colab" in sys.modules


def missing_policy(profile: "Profile", train_missing: bool | None = None) -> str:
    """What a chapter does with the units it has no stored result for, as ``load_or_run``'s
    ``missing``: ``"run"`` (train them) or ``"skip"`` (show what is stored).

    ``train_missing=None`` (off Colab): the book's default, ``"skip"`` at ``small`` (its results
    are committed; the plan computes the rest), ``"run"`` at every other profile. ``True`` or
    ``False`` (the chapter's ``TRAIN_MISSING`` switch, on Colab): ``"run"`` only where the reader
    set it, or at ``smoke`` (seconds); else ``"skip"``."""
    name = getattr(profile, "name", None)
    if not isinstance(name, str):
        raise TypeError(f"missing_policy needs a Profile (flatcomp.lab.config.get_profile()), "
                        f"not {type(profile).__name__}")
    if train_missing is None:
        return "skip" if name == "small" else "run"
    if not isinstance(train_missing, bool):
        raise TypeError(f"train_missing={train_missing!r}: say True (train the missing units), "
                        "False (show what is stored) or None (the profile's default)")
    return "run" if train_missing or name == "smoke" else "skip"


def chapters() -> list[str]:
    """The chapter names experiments belong to (``Experiment.chapter``), in the book's order."""
    from flatcomp.lab.experiments import EXPERIMENTS

    return list(dict.fromkeys(e.chapter for e in EXPERIMENTS.values()))


def estimate_hours(profile: "Profile", chapter: str,
                   seconds_per_step: Callable[["Profile"], float] | None = None,
                   store=None) -> float:
    """Hours that training the missing units of ``chapter``'s experiments would take on this
    device, one after the other: the plan's estimate (:func:`flatcomp.lab.plan.make_plan` of every
    experiment whose ``chapter`` it is, with the ticket files they need), 0 when all are stored.
    ``seconds_per_step``: seconds of one training step at a profile (default: measured here, once
    per device, see :func:`flatcomp.lab.plan.measured_seconds_per_step`). An unknown chapter raises
    ``ValueError`` naming the chapters there are."""
    from flatcomp.lab.experiments import EXPERIMENTS
    from flatcomp.lab.plan import make_plan

    names = [name for name, exp in EXPERIMENTS.items() if exp.chapter == chapter]
    if not names:
        raise ValueError(f"unknown chapter {chapter!r}: choose one of "
                         f"{', '.join(map(repr, chapters()))}")
    steps = make_plan(profile, store, experiments=names, seconds_per_step=seconds_per_step)
    return sum(step.seconds for step in steps) / 3600


def use_results_folder(path: str | os.PathLike) -> Path:
    """Store results in ``path`` (``$FLATCOMP_RESULTS``) and fine-tuned checkpoints in its
    ``cache`` subfolder (``$FLATCOMP_CACHE``), both created; returns the folder. A folder on
    Google Drive outlives the Colab session, so a chapter that trained shows its results the
    next time without training again. A path under an unmounted Drive, or one that is a file,
    raises ``ValueError`` saying what to do."""
    if not str(path).strip():
        raise ValueError("no results folder named: give a path, e.g. "
                         "'/content/drive/MyDrive/flatcomp-results'")
    folder = Path(path).expanduser().absolute()
    if folder.is_relative_to(DRIVE) and not (DRIVE / "MyDrive").is_dir():
        raise ValueError(f"{folder} is on Google Drive, which is not mounted: run "
                         f"`from google.colab import drive; drive.mount({str(DRIVE)!r})` first, "
                         "or name a folder off Drive (e.g. '/content/flatcomp-results', which "
                         "is lost when the session ends)")
    for where in (folder, folder / "cache"):
        if where.exists() and not where.is_dir():
            raise ValueError(f"{where} is a file: name a folder for the results")
    (folder / "cache").mkdir(parents=True, exist_ok=True)
    os.environ["FLATCOMP_RESULTS"] = str(folder)
    os.environ["FLATCOMP_CACHE"] = str(folder / "cache")
    return folder
