"""What the chapters' report modules share: one environment per comparison, the table class, the
formatting of scores, the labels and colours, the layout of task panels, and glue for the prose.

Each chapter has its own report module built on this one (:mod:`~flatcomp.lab.data_report` for
chapter 1, :mod:`~flatcomp.lab.flat_minima_report`, :mod:`~flatcomp.lab.sam_report`,
:mod:`~flatcomp.lab.lottery_report`, :mod:`~flatcomp.lab.cofi_report`,
:mod:`~flatcomp.lab.quantization_report`, :mod:`~flatcomp.lab.squad_report`,
:mod:`~flatcomp.lab.efficiency_report`, :mod:`~flatcomp.lab.compressibility_report`; every
chapter's cut section and the appendix: :mod:`~flatcomp.lab.coverage_report`). Stored results in,
pandas DataFrames, matplotlib Figures and Markdown out. Scores are shown in percent.
"""

from __future__ import annotations

import html
from collections import defaultdict
from typing import Callable, Hashable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from flatcomp.lab.config import ENVIRONMENT, ENVIRONMENT_FIELDS
from flatcomp.metrics import MAIN_METRIC
from flatcomp.stats import mean_std

TASK_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
              "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "squad": "SQuAD"}
OPTIMIZER_NAMES = {"adam": "Adam", "sam": "SAM", "swa": "SWA", "ksam": "SAM every 5th step",
                   "looksam": "LookSAM", "esam": "ESAM", "sam_on": "SAM-ON"}
OPTIMIZER_COLORS = {"adam": "tab:blue", "sam": "tab:orange", "swa": "tab:green"}

# The book's text column is 676 CSS px wide in a 1280 px window, and the notebooks draw at 100 dpi:
# a figure at most BOOK_WIDTH inches wide is shown at its own size, so that its smallest text,
# SMALL points, reads as SMALL points (tests/test_figures.py checks every figure of the book).
BOOK_WIDTH = 6.7
SMALL = 8


# ---------------------------------------------------------------- one environment per comparison
# A comparison (a paired difference, a mean over seeds, arms side by side) holds the device, the
# precision and the starting weights fixed. Loaded results carry theirs under "environment"
# (:func:`flatcomp.lab.results.with_environment`); hand-made ones without it are not checked.

Environment = tuple[str, ...]


def environment(record: dict) -> Environment | None:
    """A result's (device, precision, starting weights, batching), or None if it does not say."""
    env = record.get(ENVIRONMENT)
    return tuple(env.get(k, "random") if k == "batching" else env[k]
                 for k in ENVIRONMENT_FIELDS) if env else None


def describe(env: Environment) -> str:
    """``cuda: NVIDIA H200 (bf16, weights fp16-rounded copy)``, and ``, length-grouped batches``
    where they were."""
    device, precision, weights, *batching = env
    grouped = ", length-grouped batches" if batching == ["length-grouped"] else ""
    return f"{device} ({precision}, weights {weights}{grouped})"


def _unit(record: dict) -> str:
    return record[ENVIRONMENT].get("unit") or "?"


def _by_environment(records: list[dict]) -> dict[Environment, list[dict]]:
    """The records that say where they ran, by environment, the commonest first (ties: the
    first seen)."""
    groups = defaultdict(list)
    for r in records:
        if environment(r) is not None:
            groups[environment(r)].append(r)
    return dict(sorted(groups.items(), key=lambda kv: -len(kv[1])))


def units_of(records: list[dict], most: int = 8) -> str:
    names = [_unit(r) for r in records]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_one_environment(records: list[dict], what: str) -> None:
    """Raise ``ValueError`` if ``records`` ran in more than one environment, naming each
    environment and its records (unit ids)."""
    groups = _by_environment(records)
    if len(groups) > 1:
        raise ValueError(f"{what} mixes environments: " + "; ".join(
            f"{units_of(rs)} ran on {describe(env)}" for env, rs in groups.items()))


def one_environment(records: list[dict], what: str) -> tuple[list[dict], str | None]:
    """The records of the environment most of them share (with those that do not say where they
    ran), and a note naming the records left out (None if none were). The note names runs, not
    machines: where each ran is on the appendix page
    (:func:`~flatcomp.lab.coverage_report.provenance_table`)."""
    groups = _by_environment(records)
    if len(groups) < 2:
        return records, None
    (_, kept), *others = groups.items()
    left = [r for _, rs in others for r in rs]
    note = (f"{what}: only the {len(kept)} runs of one environment are used; left out, as made "
            f"in another: {units_of(left)} (the appendix says where each ran).")
    return [r for r in records if not any(r is x for x in left)], note


def one_environment_per(records: list[dict], key: Callable[[dict], Hashable],
                        what: Callable[[Hashable], str]) -> tuple[list[dict], list[str]]:
    """:func:`one_environment` within each group of ``records`` by ``key`` (a task, a block of a
    table), in their order; and the notes, one per group that lost records (``what(key)`` names
    the group in its note)."""
    groups = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    kept, notes = set(), []
    for k, group in groups.items():
        mine, note = one_environment(group, what(k))
        kept |= {id(r) for r in mine}
        notes += [note] if note else []
    return [r for r in records if id(r) in kept], notes


# ---------------------------------------------------------------- tables

class NotedTable(pd.DataFrame):
    """A table shown whole (pandas cuts a cell's text at 50 characters), with an optional note
    under it: the runs a comparison left out, and why."""

    _metadata = ["note"]
    note: str | None = None

    @property
    def _constructor(self):
        return NotedTable

    def _repr_html_(self) -> str | None:
        with pd.option_context("display.max_colwidth", None):
            out = super()._repr_html_()
        if not self.note or out is None:
            return out
        return out + f"<p><em>Note: {html.escape(self.note)}</em></p>"

    def __repr__(self) -> str:
        with pd.option_context("display.max_colwidth", None):
            out = super().__repr__()
        return out + (f"\n\nNote: {self.note}" if self.note else "")


def with_notes(table: pd.DataFrame, notes: Sequence[str] = ()) -> NotedTable:
    """``table`` as a :class:`NotedTable`: shown whole, with ``notes`` under it if any."""
    noted = NotedTable(table)
    noted.note = " ".join(notes) or None
    return noted


def task_block(what: str) -> Callable[[Hashable], str]:
    """Names a group of :func:`one_environment_per` keyed by task, in its note."""
    return lambda task: f"{what}, {TASK_NAMES[task]}"


def task_of(r: dict) -> str:
    return r["task"]


def by_task_and_optimizer(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Records grouped by (task, optimizer), groups and members in the order first seen."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["task"], r["optimizer"])].append(r)
    return groups


def majority_class(cards: list[dict]) -> dict[str, float]:
    """Accuracy of always answering the commonest dev label, per classification task."""
    return {c["task"]: max(c["dev_labels"].values()) for c in cards
            if c["available"] and "dev_labels" in c and MAIN_METRIC.get(c["task"]) == "accuracy"}


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pm(values: list[float]) -> str:
    """'mean ± std' in percent over seeds ('score (1 seed)' for a single one)."""
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{100 * mean:.1f} (1 seed)"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def sig(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant digits."""
    return f"{x:.{digits}g}"


def pm_sig(values: list[float]) -> str:
    """'mean ± std' to 3 significant digits, for quantities that are not scores ('value (1
    seed)' for a single one, which has no spread)."""
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{sig(mean)} (1 seed)"
    return f"{sig(mean)} ± {sig(std, 2)}"


def paired_rows(values: dict[tuple[str, str, int], float], base: str,
                base_first: bool = False) -> list[dict]:
    """Per task and optimizer: the paired difference to ``base`` over the seeds both have
    (``values`` keyed by task, optimizer and seed; ``base_first``: base minus optimizer), in
    points, with Student's t interval and the verdict for the paper's claim that it is positive
    (:func:`flatcomp.stats.verdict`)."""
    from flatcomp.stats import paired_difference, verdict

    rows = []
    for task, optimizer in dict.fromkeys((t, o) for t, o, _ in values):
        seeds = sorted(s for t, o, s in values if (t, o) == (task, optimizer)
                       and (task, base, s) in values)
        if optimizer == base or not seeds:
            continue
        mine, theirs = ([values[task, o, s] for s in seeds] for o in (optimizer, base))
        d = paired_difference(theirs, mine) if base_first else paired_difference(mine, theirs)
        names = [OPTIMIZER_NAMES[optimizer], OPTIMIZER_NAMES[base]]
        rows.append({"task": TASK_NAMES[task],
                     "comparison": " − ".join(names[::-1] if base_first else names),
                     "paired seeds": d.pairs, "difference (points)": f"{100 * d.mean:+.1f}",
                     "95% CI": d.interval(),
                     "verdict": verdict(d)})
    return rows


def paired_table(rows: list[dict], notes: list[str]) -> pd.DataFrame:
    columns = ["task", "comparison", "paired seeds", "difference (points)", "95% CI", "verdict"]
    return with_notes(pd.DataFrame(rows, columns=columns).set_index(["task", "comparison"]),
                      notes)


# ---------------------------------------------------------------- figures

def task_panels(tasks: list[str], height: float = 2.8,
                per_row: int = 2) -> tuple[plt.Figure, np.ndarray]:
    """One panel per task, ``per_row`` to a row (unused panels of the last row hidden), laid out
    by matplotlib's constrained layout so that a legend fits below them (:func:`legend_below`)."""
    columns, rows = min(per_row, len(tasks)), -(-len(tasks) // per_row)
    fig, axes = plt.subplots(rows, columns, figsize=(BOOK_WIDTH, height * rows + 0.6),
                             squeeze=False, layout="constrained")
    for ax in axes.flat[len(tasks):]:
        ax.set_visible(False)
    return fig, axes.flat[:len(tasks)]


def label_task_panel(ax: plt.Axes, task: str, xlabel: str) -> None:
    """Title, axis labels (the task's dev metric in percent) and grid of a task panel."""
    ax.set_title(TASK_NAMES[task], fontsize=10)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(f"dev {MAIN_METRIC[task]} (%)", fontsize=9)
    ax.tick_params(labelsize=SMALL)
    ax.grid(alpha=0.3)


def legend_below(fig: plt.Figure, axes, title: str | None = None) -> None:
    """One legend for every panel, below them all: each label once, in the order first drawn."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center",
               ncol=min(3, len(handles)), fontsize=SMALL, title=title, title_fontsize=SMALL,
               frameon=False)


# ---------------------------------------------------------------- the prose

def glue_numbers(numbers: dict[str, float]) -> None:
    """Glue each number under its name for the chapter's prose (``{glue:text}`name:.1f``` in
    Markdown, myst-nb's glue), without displaying it. Without myst-nb (a bare Colab runtime) it
    does nothing: the prose is rendered from the book's committed outputs, not at run time."""
    try:
        from myst_nb import glue
    except ImportError:
        return
    for name, value in numbers.items():
        glue(name, float(value), display=False)  # a plain float: NumPy's repr would reach the text
