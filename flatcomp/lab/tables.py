"""The book's tables: stored results in, a pandas DataFrame out. Scores are shown in percent."""

from __future__ import annotations

import html
import statistics
from collections import defaultdict
from typing import Callable, Hashable, Sequence

import pandas as pd

from flatcomp.lab.config import ENVIRONMENT, ENVIRONMENT_FIELDS, PROFILES, Profile
from flatcomp.lab.paper import (FULL_BERT_BASE, IMP_REWIND, INT8_DROP, MASK_X_OPTIMIZER,
                                TRANSFER)
from flatcomp.metrics import MAIN_METRIC, recorded_score
from flatcomp.stats import mean_std

TASK_NAMES = {"cola": "CoLA", "sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "qqp": "QQP",
              "mnli": "MNLI", "qnli": "QNLI", "rte": "RTE", "wnli": "WNLI", "squad": "SQuAD"}
OPTIMIZER_NAMES = {"adam": "Adam", "sam": "SAM", "swa": "SWA", "ksam": "SAM every 5th step",
                   "looksam": "LookSAM", "esam": "ESAM", "sam_on": "SAM-ON"}
FLATNESS_MEASURES = {"sharpness": "sharpness (loss rise, rho = 0.05)",
                     "top_eigenvalue": "top Hessian eigenvalue", "trace": "Hessian trace"}
_PROFILE_FIELDS = ("model", "tasks", "seeds", "lr", "epochs", "max_length", "batch_size",
                   "train_size", "precision", "sam_rho", "weight_decay", "imp_rounds", "imp_rate",
                   "imp_rewind", "lottery")


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


def _units_of(records: list[dict], most: int = 8) -> str:
    names = [_unit(r) for r in records]
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_one_environment(records: list[dict], what: str) -> None:
    """Raise ``ValueError`` if ``records`` ran in more than one environment, naming each
    environment and its records (unit ids)."""
    groups = _by_environment(records)
    if len(groups) > 1:
        raise ValueError(f"{what} mixes environments: " + "; ".join(
            f"{_units_of(rs)} ran on {describe(env)}" for env, rs in groups.items()))


def one_environment(records: list[dict], what: str) -> tuple[list[dict], str | None]:
    """The records of the environment most of them share (with those that do not say where they
    ran), and a note naming the records left out (None if none were). The note names runs, not
    machines: where each ran is on the appendix page (:func:`provenance_table`)."""
    groups = _by_environment(records)
    if len(groups) < 2:
        return records, None
    (_, kept), *others = groups.items()
    left = [r for _, rs in others for r in rs]
    note = (f"{what}: only the {len(kept)} runs of one environment are used; left out, as made "
            f"in another: {_units_of(left)} (the appendix says where each ran).")
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


def _task_block(what: str) -> Callable[[Hashable], str]:
    """Names a group of :func:`one_environment_per` keyed by task, in its note."""
    return lambda task: f"{what}, {TASK_NAMES[task]}"


def _task(r: dict) -> str:
    return r["task"]


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def pm(values: list[float]) -> str:
    """'mean ± std' in percent over seeds ('score (1 seed)' for a single one)."""
    mean, std = mean_std(values)
    if len(values) == 1:
        return f"{100 * mean:.1f} (1 seed)"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def profiles_table(profiles: tuple[Profile, ...] = tuple(PROFILES.values())) -> pd.DataFrame:
    """The three profiles side by side. ``tasks`` (those of every analysis) is followed by every
    task fine-tuned and quantized (:meth:`~flatcomp.lab.config.Profile.dense_tasks`)."""
    rows = {}
    for f in _PROFILE_FIELDS:
        rows[f] = [_show(getattr(p, f)) for p in profiles]
        if f == "tasks":
            rows["fine-tuned tasks"] = [_show(p.dense_tasks()) for p in profiles]
    return with_notes(pd.DataFrame(rows, index=[p.name for p in profiles]).T)


def _show(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_show_nested(v)}" for k, v in value.items()) or "-"
    if isinstance(value, tuple):
        return ", ".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _show_nested(value) -> str:
    """A value inside a dict: a per-task dict with only a default shows as that default."""
    if isinstance(value, dict):
        return _show(value["default"]) if list(value) == ["default"] else f"({_show(value)})"
    return _show(value)


def cuts_markdown(profile: Profile, only: tuple[str, ...] | None = None) -> str:
    """What the profile changes from the paper, and why: one Markdown bullet per cut (those named
    in ``only``, if given), whole (a table would truncate the reasons)."""
    cuts = {k: v for k, v in profile.cuts.items() if only is None or k in only}
    if not cuts:
        return f"The `{profile.name}` profile runs the paper's settings here."
    return "\n".join(f"* **{what}**: {why}" for what, why in cuts.items())


def data_cards_table(cards: list[dict]) -> pd.DataFrame:
    rows = []
    for c in cards:
        if not c["available"]:
            rows.append({"task": TASK_NAMES[c["task"]], "train": "-", "dev": "-",
                         "note": "not available here"})
            continue
        quantiles = c.get("length_quantiles", {})
        rows.append({
            "task": TASK_NAMES[c["task"]], "train": c["train_rows"], "dev": c["dev_rows"],
            "metric": c["metric"],
            "labels (train)": _balance(c.get("labels", {})),
            "median tokens": f"{quantiles['p50']:.0f}" if quantiles else "-",
            "90th pct": f"{quantiles['p90']:.0f}" if quantiles else "-",
            "truncated": pct(c["truncated_at_max_length"]) + "%"
                         if "truncated_at_max_length" in c else "-",
            "note": c.get("cut") or "official splits",
        })
    return with_notes(pd.DataFrame(rows).set_index("task"))


def _balance(labels: dict) -> str:
    if set(labels) == {"min", "mean", "max"}:
        return f"score {labels['min']:.0f}-{labels['max']:.0f}, mean {labels['mean']:.2f}"
    return " / ".join(f"{k} {100 * v:.0f}%" for k, v in labels.items())


def examples_table(cards: list[dict]) -> pd.DataFrame:
    rows = [{"task": TASK_NAMES[c["task"]], "text": " ‖ ".join(e["text"]), "label": e["label"]}
            for c in cards if c["available"] for e in c["examples"][:1]]
    return pd.DataFrame(rows).set_index("task")


def sweep_table(runs: list[dict]) -> pd.DataFrame:
    """One row per (task, lr), Adam and SAM side by side: best dev score and its epoch. Rows by
    task (in the order first seen) and rising rate; "-" where an optimizer was not run at a
    rate."""
    rows = defaultdict(dict)
    tasks = list(dict.fromkeys(r["task"] for r in runs))
    for r in sorted(runs, key=lambda r: (tasks.index(r["task"]), r["lr"])):
        key = (TASK_NAMES[r["task"]], f"{r['lr']:g}")
        metric = MAIN_METRIC[r["task"]]
        rows[key][f"{r['optimizer']} best"] = pct(r["best_score"])
        rows[key][f"{r['optimizer']} epoch"] = f"{r['best_epoch']}/{r['epochs']}"
        rows[key][f"{r['optimizer']} first epoch"] = pct(r["history"][0][metric])
        rows[key]["metric"] = metric
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    table.index.names = ["task", "lr"]
    return table


def by_task_and_optimizer(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Records grouped by (task, optimizer), groups and members in the order first seen."""
    groups = defaultdict(list)
    for r in records:
        groups[(r["task"], r["optimizer"])].append(r)
    return groups


def finetune_table(runs: list[dict], cards: list[dict]) -> pd.DataFrame:
    """Mean ± std over seeds of the best dev score, per task and optimizer, beside the majority
    class of the dev set and the paper's full BERT-base score. Each task's runs are of one
    environment (:func:`one_environment_per`)."""
    runs, notes = one_environment_per(runs, _task, _task_block("fine-tunes"))
    majority = majority_class(cards)
    rows = []
    for (task, optimizer), rs in by_task_and_optimizer(runs).items():
        rows.append({"task": TASK_NAMES[task], "optimizer": optimizer,
                     "metric": MAIN_METRIC[task], "seeds": len(rs),
                     "ours": pm([r["best_score"] for r in rs]),
                     "best epochs": ", ".join(str(r["best_epoch"]) for r in rs),
                     "majority class": pct(majority[task]) if task in majority else "-",
                     "paper (BERT-base, Adam)": f"{FULL_BERT_BASE[task]:.1f}"})
    return with_notes(pd.DataFrame(rows).set_index(["task", "optimizer"]), notes)


def tuned_grid_table(grid: list[dict]) -> pd.DataFrame:
    """The tuned protocol's learning-rate grid (experiment ``tuned_lr``): per task and optimizer,
    each rate's best dev score with the epoch it came at out of the budget, and the rate that
    wins (the one every seed of ``tuned`` then trains at). Each task's runs are of one
    environment (:func:`one_environment_per`)."""
    grid, notes = one_environment_per(grid, _task, _task_block("grid runs"))
    rows = {}
    for r in sorted(grid, key=lambda r: r["lr"]):
        row = rows.setdefault((TASK_NAMES[r["task"]], OPTIMIZER_NAMES[r["optimizer"]]), {})
        row[f"lr {r['lr']:g}"] = (f"{100 * r['best_score']:.1f} (epoch {r['best_epoch']} of "
                                 f"{r['epochs']})")
    for (task, optimizer), row in rows.items():
        best = max((r for r in grid if TASK_NAMES[r["task"]] == task
                    and OPTIMIZER_NAMES[r["optimizer"]] == optimizer),
                   key=lambda r: r["best_score"])
        row["best so far"] = f"{best['lr']:g}"
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["task", "optimizer"]) \
        if rows else table.index
    return with_notes(table, notes)


def majority_class(cards: list[dict]) -> dict[str, float]:
    """Accuracy of always answering the commonest dev label, per classification task."""
    return {c["task"]: max(c["dev_labels"].values()) for c in cards
            if c["available"] and "dev_labels" in c and MAIN_METRIC.get(c["task"]) == "accuracy"}


def sweep_verdict(runs: list[dict], cards: list[dict], profile: Profile,
                  margin: float = 0.05) -> str:
    """One Markdown line per task: the best run of each optimizer, whether it clearly beat the
    majority class (by ``margin``), the standard error of an accuracy on that dev set, and the
    learning rate the profile uses (or that the profile dropped the task)."""
    majority = majority_class(cards)
    dev_rows = {c["task"]: c["dev_rows"] for c in cards if c["available"]}
    lines = []
    for task in dict.fromkeys(r["task"] for r in runs):
        parts = []
        for optimizer in ("adam", "sam"):
            mine = [r for r in runs if r["task"] == task and r["optimizer"] == optimizer]
            if not mine:
                continue
            best = max(mine, key=lambda r: r["best_score"])
            learned = task not in majority or best["best_score"] >= majority[task] + margin
            parts.append(f"{OPTIMIZER_NAMES[optimizer]} best {pct(best['best_score'])} at lr "
                         f"{best['lr']:g}, epoch {best['best_epoch']} of {best['epochs']}"
                         + ("" if learned else " (**not clearly above the majority class**)"))
        base = ""
        if task in majority:
            p = majority[task]
            base = (f" (majority class {pct(p)}; {dev_rows[task]} dev rows, so one standard error"
                    f" of an accuracy near it is {pct((p * (1 - p) / dev_rows[task]) ** 0.5)} "
                    "points)")
        use = (f"The `{profile.name}` profile uses lr {profile.lr_for(task):g}."
               if task in profile.dense_tasks()
               else f"The `{profile.name}` profile drops {TASK_NAMES[task]}.")
        lines.append(f"* **{TASK_NAMES[task]}**{base}: {'; '.join(parts)}. {use}")
    return "\n".join(lines)


def step_time_table(timings: list[dict]) -> pd.DataFrame:
    """Seconds per training step of Adam and SAM, timed on the same batches."""
    rows = [{"task": TASK_NAMES[t["task"]], "batch": t["batch_size"],
             "mean padded length": f"{t['mean_padded_length']:.0f}",
             "Adam s / step": f"{t['seconds_per_step']['adam']:.2f}",
             "SAM s / step": f"{t['seconds_per_step']['sam']:.2f}",
             "SAM / Adam": f"{t['sam_over_adam']:.2f}",
             "threads": t["threads"], "device": t["device"]} for t in timings]
    return pd.DataFrame(rows).set_index("task")


def precision_table(runs: list[dict]) -> pd.DataFrame:
    """Best dev score and epoch, and the training loss per epoch, of the same fine-tune in each
    precision. (No step times: these runs shared the CPU; see the ``step_time`` experiment.)"""
    rows = [{"precision": r["precision"], "task": TASK_NAMES[r["task"]],
             "best dev score": pct(r["best_score"]), "best epoch": r["best_epoch"],
             "train loss per epoch": ", ".join(f"{h['train_loss']:.3f}" for h in r["history"])}
            for r in runs]
    return pd.DataFrame(rows).set_index("precision")


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


def flatness_table(flat: list[dict]) -> pd.DataFrame:
    """Training loss on the measured rows, sharpness, top Hessian eigenvalue and Hessian trace:
    mean ± std over seeds per task and optimizer, each task's of one environment."""
    flat, notes = one_environment_per(flat, _task, _task_block("flatness"))
    rows = {(TASK_NAMES[task], optimizer): {"seeds": len(rs), "rows measured": rs[0]["rows"],
                  "train loss": pm_sig([r["loss"] for r in rs]),
                  "sharpness": pm_sig([r["sharpness"] for r in rs]),
                  "top eigenvalue": pm_sig([r["top_eigenvalue"] for r in rs]),
                  "power iterations": ", ".join(str(r["eigen_iterations"]) for r in rs),
                  "trace": pm_sig([r["trace"] for r in rs]),
                  "trace std error": pm_sig([r["trace_std_error"] for r in rs])}
            for (task, optimizer), rs in by_task_and_optimizer(flat).items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.names = ["task", "optimizer"]
    return with_notes(table, notes)


def flatness_verdict(flat: list[dict], a: str = "sam", b: str = "adam") -> str:
    """Per task and measure: on how many seeds ``a``'s model is flatter than ``b``'s (same seed),
    and the ratio of their means, each task within one environment. Markdown bullets."""
    flat, notes = one_environment_per(flat, _task, _task_block("flatness"))
    lines = []
    for task in dict.fromkeys(r["task"] for r in flat):
        by_seed = {(r["optimizer"], r["seed"]): r for r in flat if r["task"] == task}
        seeds = sorted(s for o, s in by_seed if o == a and (b, s) in by_seed)
        if not seeds:
            continue
        parts = []
        for key, label in FLATNESS_MEASURES.items():
            wins = sum(by_seed[(a, s)][key] < by_seed[(b, s)][key] for s in seeds)
            ratio = (mean_std([by_seed[(a, s)][key] for s in seeds])[0]
                     / mean_std([by_seed[(b, s)][key] for s in seeds])[0])
            parts.append(f"{label.split(' (')[0]}: lower on {wins} of {len(seeds)} seeds, "
                         f"mean ratio {ratio:.2f}")
        lines.append(f"* **{TASK_NAMES[task]}**, {OPTIMIZER_NAMES[a]} against "
                     f"{OPTIMIZER_NAMES[b]}: " + "; ".join(parts) + ".")
    return "\n".join(lines + [f"\n*Note: {note}*" for note in notes])


def cost_table(timings: list[dict], runs: list[dict]) -> pd.DataFrame:
    """SAM's seconds per step over Adam's (timed together on the same batches), and the mean wall
    time of a whole fine-tune per task and optimizer (runs that may have shared the CPU), each
    task's of one environment."""
    runs, notes = one_environment_per(runs, _task, _task_block("fine-tunes"))
    ratio = {t["task"]: t["sam_over_adam"] for t in timings}
    rows = [{"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
             "steps": rs[0]["steps"],
             "minutes per fine-tune": pm_sig([r["wall_seconds"] / 60 for r in rs]),
             "SAM / Adam s per step (timed together)": f"{ratio[task]:.2f}"
             if task in ratio and optimizer == "sam" else "-"}
            for (task, optimizer), rs in by_task_and_optimizer(runs).items()]
    return with_notes(pd.DataFrame(rows).set_index(["task", "optimizer"]), notes)


def _paired_rows(values: dict[tuple[str, str, int], float], base: str,
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


def _paired_table(rows: list[dict], notes: list[str]) -> pd.DataFrame:
    columns = ["task", "comparison", "paired seeds", "difference (points)", "95% CI", "verdict"]
    return with_notes(pd.DataFrame(rows, columns=columns).set_index(["task", "comparison"]),
                      notes)


def optimizer_differences(runs: list[dict], base: str = "adam") -> pd.DataFrame:
    """Per task and optimizer: its best dev score minus ``base``'s on the same seed (the same
    head initialisation and data order), with the verdict for the paper's claim that it beats
    ``base`` (:func:`_paired_rows`); each task's runs of one environment."""
    runs, notes = one_environment_per(runs, _task, _task_block("fine-tunes"))
    values = {(r["task"], r["optimizer"], r["seed"]): r["best_score"] for r in runs}
    return _paired_table(_paired_rows(values, base), notes)


def int8_differences(quant: list[dict], base: str = "adam") -> pd.DataFrame:
    """Per task and optimizer: ``base``'s dynamic int8 drop minus its own on the same seed, with
    the verdict for the paper's claim that flat models lose less (:func:`_paired_rows`); each
    task's models of one environment."""
    quant, notes = one_environment_per(quant, _task, _task_block("quantized models"))
    values = {(r["task"], r["optimizer"], r["seed"]): r["scores"]["fp32"] - r["scores"]["int8"]
              for r in quant}
    return _paired_table(_paired_rows(values, base, base_first=True), notes)


def int8_table(quant: list[dict]) -> pd.DataFrame:
    """Dev score in fp32 and after dynamic int8 (per tensor and per channel), and the drop in
    points, mean ± std over seeds, beside the paper's BERT-base drop where it reports one; each
    task's models of one environment."""
    quant, notes = one_environment_per(quant, _task, _task_block("quantized models"))
    rows = []
    for (task, optimizer), rs in by_task_and_optimizer(quant).items():
        scores = [r["scores"] for r in rs]
        paper = INT8_DROP.get(task)
        column = {"adam": 0, "sam": 1}.get(optimizer)
        rows.append({"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
                     "seeds": len(scores),
                     "fp32": pm([s["fp32"] for s in scores]),
                     "int8": pm([s["int8"] for s in scores]),
                     "drop": pm([s["fp32"] - s["int8"] for s in scores]),
                     "drop, int8 per channel": pm([s["fp32"] - s["int8 per channel"]
                                                   for s in scores]),
                     "paper drop (BERT-base)": f"{paper[column]:.2f}"
                     if paper and column is not None else "-"})
    return with_notes(pd.DataFrame(rows).set_index(["task", "optimizer"]), notes)


def speed_table(speed: list[dict]) -> pd.DataFrame:
    """Size on disk, seconds per forward pass and the int8 speed-up, per batch size."""
    rows = [{"batch": t["batch_size"], "precision": t["precision"],
             "length": t["seq_len"], "threads": t["threads"],
             "size (MB)": f"{t['size_bytes'] / 1e6:.1f}",
             "ms per batch": f"{1000 * t['mean_s']:.1f} ± {1000 * t['std_s']:.1f}",
             "speed-up": f"{t['speedup']:.2f}x" if "speedup" in t else "-"}
            for r in speed for t in r["timings"]]
    return pd.DataFrame(rows).set_index(["batch", "precision"])


def speed_numbers(speed: list[dict]) -> dict[str, float]:
    """The int8 model's size as a percentage of the fp32 one's (``int8_size_percent``) and its
    speed-up at each batch size (``int8_speedup_b1``...), means over the records, for a chapter's
    prose (myst-nb glue, :func:`glue_numbers`)."""
    timings = [t for r in speed for t in r["timings"]]
    size = lambda precision: statistics.fmean(t["size_bytes"] for t in timings
                                              if t["precision"] == precision)
    numbers = {"int8_size_percent": 100 * size("int8") / size("fp32")} if timings else {}
    for b in sorted({t["batch_size"] for t in timings if "speedup" in t}):
        numbers[f"int8_speedup_b{b}"] = statistics.fmean(
            t["speedup"] for t in timings if t["batch_size"] == b and "speedup" in t)
    return numbers


def theory_table(theory: list[dict]) -> pd.DataFrame:
    """Predicted and measured loss increase after rounding the weights to k bits, mean ± std over
    seeds, per optimizer, grid (per tensor or per channel) and bit width; and on how many seeds
    the prediction came out negative (a noisy Hessian-diagonal estimate). The table pools every
    task: its records are of one environment."""
    theory, note = one_environment(theory, "the rounding theory")
    groups = defaultdict(list)
    for r in theory:
        for row in r["increase"]:
            grid = "per channel" if row["per_channel"] else "per tensor"
            groups[(grid, row["bits"], OPTIMIZER_NAMES[r["optimizer"]])].append(row)
    table = pd.DataFrame.from_dict(
        {key: {"predicted": pm_sig([r["predicted"] for r in rows]),
               "measured": pm_sig([r["measured"] for r in rows]),
               "negative predictions": sum(r["predicted"] < 0 for r in rows)}
         for key, rows in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1], kv[0][2]))},
        orient="index")
    table.index.names = ["grid", "bits", "optimizer"]
    return with_notes(table, [note] if note else [])


def _ticket_scores(tickets: list[dict]) -> dict[tuple, list[float]]:
    """The tickets' dev scores over seeds, by (task, sparsity, mask, optimizer)."""
    groups = defaultdict(list)
    for r in tickets:
        groups[(r["task"], round(r["sparsity"], 2), r["mask"], r["optimizer"])].append(
            recorded_score(r))
    return groups


def _one_environment_per_block(tickets: list[dict]) -> tuple[list[dict], list[str]]:
    """The tickets of each (task, sparsity) block of the mask x optimizer table, whose rows and
    columns are compared both ways, of one environment (:func:`one_environment_per`)."""
    return one_environment_per(
        tickets, lambda r: (r["task"], round(r["sparsity"], 2)),
        lambda key: f"{TASK_NAMES[key[0]]} at {100 * key[1]:.0f}% sparsity")


def mask_table(tickets: list[dict]) -> pd.DataFrame:
    """The paper's Table 2 layout: one row per (task, sparsity, mask), the dev score of Adam and
    of SAM fine-tuning under that mask, mean ± std over seeds, beside the paper's values. Each
    (task, sparsity) block is of one environment."""
    tickets, notes = _one_environment_per_block(tickets)
    groups = _ticket_scores(tickets)
    rows = defaultdict(dict)
    for (task, sparsity, mask, optimizer), scores in groups.items():
        row = rows[(TASK_NAMES[task], f"{100 * sparsity:.0f}%", f"{mask} mask")]
        row[f"{OPTIMIZER_NAMES[optimizer]} (ours)"] = pm(scores)
        paper = MASK_X_OPTIMIZER.get((task, sparsity), {}).get((mask, optimizer))
        row[f"{OPTIMIZER_NAMES[optimizer]} (paper)"] = (f"{paper[0]:.1f} ± {paper[1]:.1f}"
                                                        if paper else "-")
    table = pd.DataFrame.from_dict(rows, orient="index").fillna("-")
    table.index.names = ["task", "sparsity", "mask"]
    return with_notes(table, notes)


def imp_table(rounds: list[dict], reference: dict[str, float]) -> pd.DataFrame:
    """Per task, IMP with rewinding: the dense model (round 0) and the ticket at the task's
    ``reference`` sparsity, Adam and SAM, beside the paper's tickets (BERT-base); each task's
    rounds of one environment."""
    rewound, notes = one_environment_per([r for r in rounds if r["rewind"]], _task,
                                         _task_block("IMP with rewinding"))
    score = {(r["task"], r["optimizer"], round(r["sparsity"], 2)): recorded_score(r)
             for r in rewound}
    rows = {}
    for task in dict.fromkeys(r["task"] for r in rounds):
        s, row = round(reference[task], 2), {"ticket sparsity": f"{100 * reference[task]:.0f}%"}
        for optimizer in ("adam", "sam"):
            name = OPTIMIZER_NAMES[optimizer]
            dense, ticket = score.get((task, optimizer, 0.0)), score.get((task, optimizer, s))
            row[f"{name} dense"] = pct(dense) if dense is not None else "-"
            row[f"{name} ticket"] = pct(ticket) if ticket is not None else "-"
        for optimizer, value in zip(("Adam", "SAM"), IMP_REWIND.get(task, (None, None))):
            row[f"{optimizer} ticket (paper)"] = f"{value:.1f}" if value is not None else "-"
        rows[TASK_NAMES[task]] = row
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def imp_prose_numbers(rounds: list[dict]) -> dict[str, float]:
    """The IMP curves as numbers for a chapter's prose (myst-nb glue, :func:`glue_numbers`), in
    points, one seed per curve: ``imp_<task>_<optimizer>_<rewind|continue>_<sparsity %>`` for each
    round, and per task and chain kind ``imp_<task>_<kind>_sam_lead_low`` and ``..._high``, the
    smallest and largest SAM - Adam difference over the pruned rounds both optimizers have."""
    numbers = {}
    for r in rounds:
        kind = "rewind" if r["rewind"] else "continue"
        numbers[f"imp_{r['task']}_{r['optimizer']}_{kind}_{100 * r['sparsity']:.0f}"] = \
            100 * recorded_score(r)
    for task, kind in dict.fromkeys((r["task"], "rewind" if r["rewind"] else "continue")
                                    for r in rounds):
        leads = [numbers[f"imp_{task}_sam_{kind}_{s}"] - numbers[f"imp_{task}_adam_{kind}_{s}"]
                 for s in range(1, 100) if f"imp_{task}_sam_{kind}_{s}" in numbers
                 and f"imp_{task}_adam_{kind}_{s}" in numbers]
        if leads:
            numbers[f"imp_{task}_{kind}_sam_lead_low"] = min(leads)
            numbers[f"imp_{task}_{kind}_sam_lead_high"] = max(leads)
    return numbers


def seeded_imp_table(rounds: list[dict], reference: dict[str, float]) -> pd.DataFrame:
    """Per task, IMP over several seeds: Adam's and SAM's dense model (round 0) and ticket at the
    task's ``reference`` sparsity, mean ± std over seeds, and SAM's ticket minus Adam's paired by
    seed with its t interval and verdict, beside the paper's tickets; each task's rounds of one
    environment."""
    from flatcomp.stats import paired_difference, verdict

    rounds, notes = one_environment_per(rounds, _task, _task_block("IMP rounds"))
    rows = {}
    for task in dict.fromkeys(r["task"] for r in rounds):
        s = round(reference[task], 2)
        at = lambda o, sparsity: {r["seed"]: recorded_score(r) for r in rounds
                                  if (r["task"], r["optimizer"]) == (task, o)
                                  and round(r["sparsity"], 2) == sparsity}
        row = {"ticket sparsity": f"{100 * s:.0f}%"}
        for o in ("adam", "sam"):
            for name, sparsity in (("dense", 0.0), ("ticket", s)):
                values = list(at(o, sparsity).values())
                row[f"{OPTIMIZER_NAMES[o]} {name}"] = pm(values) if values else "-"
        adam, sam = at("adam", s), at("sam", s)
        seeds = sorted(set(adam) & set(sam))
        d = paired_difference([sam[k] for k in seeds], [adam[k] for k in seeds]) if seeds \
            else None
        row["SAM − Adam ticket"] = f"{100 * d.mean:+.1f}" if d else "-"
        row["95% CI"] = d.interval() if d else "-"
        row["paired seeds"] = len(seeds)
        row["verdict"] = verdict(d) if d else "-"
        for optimizer, value in zip(("Adam", "SAM"), IMP_REWIND.get(task, (None, None))):
            row[f"{optimizer} ticket (paper)"] = f"{value:.1f}" if value is not None else "-"
        rows[TASK_NAMES[task]] = row
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def mask_effects(tickets: list[dict]) -> pd.DataFrame:
    """The two questions of the paper's Table 2, in points (mean difference ± its standard error
    over seeds, beside the paper's difference of means): does the SAM *mask* beat the Adam mask
    under a fixed optimizer, and does SAM *fine-tuning* beat Adam under a fixed mask? Each
    (task, sparsity) block is of one environment, as in :func:`mask_table`."""
    tickets, notes = _one_environment_per_block(tickets)
    groups = _ticket_scores(tickets)
    comparisons = [(f"SAM mask − Adam mask, {o} fine-tuning", ("sam", o), ("adam", o))
                   for o in ("adam", "sam")]
    comparisons += [(f"SAM − Adam fine-tuning, {m} mask", (m, "sam"), (m, "adam"))
                    for m in ("random", "adam", "sam")]
    rows = {}
    for task, sparsity in dict.fromkeys(key[:2] for key in groups):
        paper = MASK_X_OPTIMIZER.get((task, sparsity), {})
        for label, better, worse in comparisons:
            a, b = groups.get((task, sparsity, *better)), groups.get((task, sparsity, *worse))
            if not a or not b or min(len(a), len(b)) < 2:  # no error bar from one seed
                continue
            (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
            error = (sa ** 2 / len(a) + sb ** 2 / len(b)) ** 0.5
            rows[(TASK_NAMES[task], f"{100 * sparsity:.0f}%", label)] = {
                "ours": f"{100 * (ma - mb):+.1f} ± {100 * error:.1f}",
                "paper": (f"{paper[better][0] - paper[worse][0]:+.1f}"
                          if better in paper and worse in paper else "-")}
    index = pd.MultiIndex.from_tuples(list(rows), names=["task", "sparsity", "comparison (points)"])
    return with_notes(pd.DataFrame(list(rows.values()), index=index, columns=["ours", "paper"]),
                      notes)


# The four differences of the paper's transfer figures, in points: ("ticket", o) is the SAM
# ticket minus the Adam ticket under optimizer o (Figure 8), ("optimizer", m) SAM minus Adam
# fine-tuning on the m-found ticket (Figure 9). Each: (label, (mask, optimizer) - (mask, optimizer)).
TRANSFER_PANELS = {
    ("ticket", "adam"): ("SAM − Adam ticket, Adam fine-tuning", ("sam", "adam"), ("adam", "adam")),
    ("ticket", "sam"): ("SAM − Adam ticket, SAM fine-tuning", ("sam", "sam"), ("adam", "sam")),
    ("optimizer", "adam"): ("SAM − Adam fine-tuning, Adam ticket", ("adam", "sam"),
                            ("adam", "adam")),
    ("optimizer", "sam"): ("SAM − Adam fine-tuning, SAM ticket", ("sam", "sam"), ("sam", "adam")),
}


def transfer_differences(cells: list[dict]) -> dict[tuple[str, str], dict[tuple[str, str], float]]:
    """Per panel of :data:`TRANSFER_PANELS`, the difference in points on each (source, target)
    pair where both runs are stored. ``cells`` are transfer records and, for the diagonal
    (source = target), ticket records; random masks are ignored. The runs of a pair must be of
    one environment (else ``ValueError``, naming them)."""
    found = [r for r in cells if r["mask"] in ("adam", "sam")]
    for (s, t), runs in _by_pair(found).items():
        check_one_environment(runs, f"the transfer {TASK_NAMES[s]} → {TASK_NAMES[t]}")
    score = {(r.get("source", r["task"]), r["task"], r["mask"], r["optimizer"]): recorded_score(r)
             for r in found}
    pairs = dict.fromkeys(key[:2] for key in score)
    return {panel: {(s, t): 100 * (score[(s, t, *better)] - score[(s, t, *worse)])
                    for s, t in pairs if (s, t, *better) in score and (s, t, *worse) in score}
            for panel, (_, better, worse) in TRANSFER_PANELS.items()}


def _by_pair(cells: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Transfer and ticket records by (source, target): a ticket record's source is its task."""
    pairs = defaultdict(list)
    for r in cells:
        pairs[(r.get("source", r["task"]), r["task"])].append(r)
    return pairs


def transfer_table(cells: list[dict]) -> pd.DataFrame:
    """Each measured (source, target) pair's four differences in points beside the paper's (its
    Figures 8 and 9, BERT-base), and their means over the pairs shown. Each pair is of one
    environment; the means are over the pairs of the commonest one (a note names the others)."""
    ours = transfer_differences(cells)
    pairs = list(dict.fromkeys(pair for diffs in ours.values() for pair in diffs))
    averaged, note = one_environment([r for r in cells if r["mask"] in ("adam", "sam")],
                                     "the means over pairs")
    kept = set(_by_pair(averaged))
    groups = {f"{TASK_NAMES[s]} → {TASK_NAMES[t]}": [(s, t)] for s, t in pairs}
    groups["mean"] = [pair for pair in pairs if pair in kept]
    rows = {}
    for label, chosen in groups.items():
        row = {}
        for panel, (name, _, _) in TRANSFER_PANELS.items():
            mine = [ours[panel][p] for p in chosen if p in ours[panel]]
            theirs = [TRANSFER[panel][p] for p in chosen if p in TRANSFER[panel]]
            row[(name, "ours")] = f"{statistics.fmean(mine):+.1f}" if mine else "-"
            row[(name, "paper")] = f"{statistics.fmean(theirs):+.1f}" if theirs else "-"
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return with_notes(table.rename_axis("source → target"), [note] if note else [])


def seeded_transfer_table(cells: list[dict]) -> pd.DataFrame:
    """Ticket transfer over several seeds: per (source, target) pair, the SAM ticket minus the
    Adam ticket under each fine-tuning optimizer (the paper's Figure 8), paired by seed, with its
    95% t interval and verdict (the paper's claim: SAM's ticket transfers better), beside the
    paper's cell. Each pair's runs are of one environment (else ``ValueError``)."""
    from flatcomp.stats import paired_difference, pairs_of, verdict

    found = [r for r in cells if r["mask"] in ("adam", "sam")]
    rows = {}
    for (s, t), runs in _by_pair(found).items():
        check_one_environment(runs, f"the transfer {TASK_NAMES[s]} → {TASK_NAMES[t]}")
        row = {}
        for o in ("adam", "sam"):
            name, better, worse = TRANSFER_PANELS["ticket", o]
            pairs = pairs_of(runs, lambda r: (r["mask"], r["optimizer"]), (better, worse),
                             lambda r: r["seed"])
            d = paired_difference([recorded_score(a) for a, _ in pairs],
                                  [recorded_score(b) for _, b in pairs]) if pairs else None
            row[(name, "ours")] = f"{100 * d.mean:+.1f}" if d else "-"
            row[(name, "95% CI")] = d.interval() if d else "-"
            row[(name, "seeds")] = len(pairs)
            row[(name, "verdict")] = verdict(d) if d else "-"
            paper = TRANSFER["ticket", o].get((s, t))
            row[(name, "paper")] = f"{paper:+.1f}" if paper is not None else "-"
        rows[f"{TASK_NAMES[s]} → {TASK_NAMES[t]}"] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    if rows:
        table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table.rename_axis("source → target")


def ticket_origin_table(records: list[dict]) -> pd.DataFrame:
    """Where the tickets of ticket or transfer records came from: the IMP round that pruned each,
    the device it trained on and its dev score there, beside the score stored for that round (the
    two differ where the ticket was remade on another machine)."""
    rows = {}
    for r in records:
        origin = r.get("ticket")
        if origin:
            stored = origin["stored_round_score"]
            rows[origin["imp_round"]] = {
                "trained on": origin["device"], "dev score": pct(origin["round_score"]),
                "stored record's score": pct(stored) if stored is not None else "-"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("IMP round").sort_index()


def pooler_check_table(checks: list[dict], tickets: list[dict]) -> pd.DataFrame:
    """Each ticket of the pooler check beside the same ticket, seed and optimizer in the mask x
    optimizer table: the pooler weights the ticket keeps, and with that pooler and with a dense
    one the dev score (points) and the last epoch's training loss (a model that predicts one
    class for every row stays near ln 2 = 0.69 on a balanced pair task). A ticket that ran in
    another environment than its check is not shown beside it (a note says where each ran)."""
    found = {(r["task"], r["mask"], r["optimizer"], r["seed"]): r for r in tickets}
    apart = defaultdict(list)  # (check's environment, ticket's) -> the checks not compared

    def score_and_loss(r: dict | None) -> list[str]:
        if r is None:
            return ["-", "-"]
        return [pct(recorded_score(r)), f"{r['history'][-1]['train_loss']:.2f}"]

    rows = []
    for r in checks:
        ticket = found.get((r["task"], r["mask"], r["optimizer"], r["seed"]))
        if ticket is not None and None not in (environment(r), environment(ticket)) \
                and environment(r) != environment(ticket):
            apart[(environment(r), environment(ticket))].append(r)
            ticket = None
        rows.append([TASK_NAMES[r["task"]], OPTIMIZER_NAMES[r["mask"]],
                     OPTIMIZER_NAMES[r["optimizer"]], r["seed"],
                     f"{r['pooler_kept']:,} of {r['pooler_size']:,}",
                     *score_and_loss(ticket), *score_and_loss(r),
                     f"{100 * (recorded_score(r) - recorded_score(ticket)):+.1f}"
                     if ticket else "-"])
    columns = ["task", "mask", "fine-tuning", "seed", "pooler weights kept", "ticket",
               "ticket train loss", "dense pooler", "dense pooler train loss", "difference"]
    notes = [f"{_units_of(rs)} ran in another environment than their tickets (the appendix "
             "says where each ran): the ticket columns and the difference are left empty."
             for rs in apart.values()]
    return with_notes(pd.DataFrame(rows, columns=columns).set_index(columns[:4]), notes)


def overhead_table(timings: list[dict]) -> pd.DataFrame:
    """Seconds per step without and with pruning masks (every interleaved repeat), and the
    overhead of the fastest masked repeat over the fastest dense one."""
    rows = [{"task": TASK_NAMES[r["task"]], "optimizer": OPTIMIZER_NAMES[r["optimizer"]],
             "sparsity": f"{100 * r['sparsity']:.0f}%", "steps timed": r["steps_timed"],
             "dense s/step": ", ".join(f"{t:.3f}" for t in r["seconds_per_step"]["dense"]),
             "masked s/step": ", ".join(f"{t:.3f}" for t in r["seconds_per_step"]["masked"]),
             "overhead": f"{100 * r['overhead']:+.1f}%"} for r in timings]
    return pd.DataFrame(rows).set_index(["task", "optimizer"])


def sharpness_correlation(records: list[dict]) -> pd.DataFrame:
    """Per task: Spearman's rank correlation between the sharpness of the tickets' subnetworks and
    their dev scores, over all tickets and over the found (Adam and SAM) ones only. Negative:
    flatter tickets score higher. Each task's tickets are of one environment."""
    records, notes = one_environment_per(records, _task, _task_block("ticket sharpness"))
    rows = {}
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        found = [r for r in mine if r["mask"] != "random"]
        row = {}
        for label, group in (("all tickets", mine), ("Adam and SAM masks", found)):
            row[f"{label}: models"] = len(group)
            row[f"{label}: Spearman"] = _sharpness_spearman(group)
        rows[TASK_NAMES[task]] = row
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def imp_sharpness_table(records: list[dict]) -> pd.DataFrame:
    """Per task, IMP's rounds with rewinding: at how many sparsities the SAM chain's subnetwork is
    the flatter of the two, at how many the flatter one scores higher, and Spearman's rank
    correlation between sharpness and dev score over every round of both chains (negative:
    flatter scores higher; sparsity moves both, so this one mixes its effect in), and each
    chain's median loss on the flatness rows (a model that has not fitted them can be flat).
    Each task's rounds are of one environment."""
    records, notes = one_environment_per(records, _task, _task_block("IMP round sharpness"))
    rows = {}
    for task in dict.fromkeys(r["task"] for r in records):
        mine = [r for r in records if r["task"] == task]
        pairs = [(a, s) for a in mine for s in mine if a["optimizer"] == "adam"
                 and s["optimizer"] == "sam" and a["round"] == s["round"]]
        flatter_sam = sum(s["sharpness"] < a["sharpness"] for a, s in pairs)
        decided = [(a, s) for a, s in pairs if recorded_score(s) != recorded_score(a)]
        flatter_wins = sum((s["sharpness"] < a["sharpness"]) == (recorded_score(s) > recorded_score(a))
                           for a, s in decided)
        losses = {o: [r["loss"] for r in mine if r["optimizer"] == o] for o in ("adam", "sam")}
        rows[TASK_NAMES[task]] = {
            "sparsities": len(pairs), "SAM's subnetwork flatter": f"{flatter_sam} of {len(pairs)}",
            "the flatter one scores higher": f"{flatter_wins} of {len(decided)}",
            "rounds": len(mine), "Spearman, all rounds": _sharpness_spearman(mine),
            "median training loss, Adam / SAM": " / ".join(
                f"{statistics.median(v):.2f}" if v else "-" for v in losses.values())}
    return with_notes(pd.DataFrame.from_dict(rows, orient="index").rename_axis("task"), notes)


def _sharpness_spearman(records: list[dict]) -> str:
    """Spearman's rank correlation between sharpness and dev score over ``records`` ("-" for
    fewer than three)."""
    from scipy.stats import spearmanr

    if len(records) < 3:
        return "-"
    rho = spearmanr([r["sharpness"] for r in records], [recorded_score(r) for r in records])
    return f"{rho.statistic:+.2f}"


def overlap_table(analyses: list[dict]) -> pd.DataFrame:
    """Per task, how much the Adam and SAM tickets agree: the fraction of prunable weights on
    which the two masks agree, and the Jaccard overlap of what they keep, each beside two
    independent random masks of the same densities."""
    rows = {TASK_NAMES[a["task"]]: {
        "sparsity": f"{100 * a['sparsity']:.0f}%",
        "agreement": f"{100 * a['overlap']['agreement']:.1f}%",
        "agreement by chance": f"{100 * a['overlap']['chance_agreement']:.1f}%",
        "Jaccard of kept weights": f"{a['overlap']['jaccard']:.3f}",
        "Jaccard by chance": f"{a['overlap']['chance_jaccard']:.3f}"} for a in analyses}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task")


def coverage_table(profile: Profile, experiments: tuple[str, ...]) -> pd.DataFrame:
    """Per experiment: how many of the profile's units are stored, and which tasks are complete."""
    from flatcomp.lab.experiments import planned_units, unit_id
    from flatcomp.lab.results import ResultsStore

    store, rows = ResultsStore(profile), {}
    for name in experiments:
        units = planned_units(profile, name)
        have = [store.path(name, unit_id(u)).exists() for u in units]
        tasks = dict.fromkeys(u["task"] for u in units)
        complete = [TASK_NAMES[t] for t in tasks
                    if all(h for u, h in zip(units, have) if u["task"] == t)]
        rows[name] = {"stored": sum(have), "planned": len(units),
                      "complete for": ", ".join(complete) or "-"}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("experiment")


def layer_pruned(analyses: list[dict], layer: str, size: int) -> pd.DataFrame:
    """Per task, how much of one prunable matrix (``size`` weights) each ticket prunes, and how
    many of its weights it keeps."""
    rows = {}
    for a in analyses:
        row = {"ticket sparsity": f"{100 * a['sparsity']:.0f}%"}
        for optimizer in ("adam", "sam"):
            pruned = a["layers"][optimizer][layer]
            row[f"{OPTIMIZER_NAMES[optimizer]} ticket: pruned"] = f"{100 * pruned:.2f}%"
            row[f"{OPTIMIZER_NAMES[optimizer]} ticket: kept"] = round((1 - pruned) * size)
        rows[TASK_NAMES[a["task"]]] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("task")


# ---------------------------------------------------------------- efficiency and scale

def bench_table(bench: list[dict]) -> pd.DataFrame:
    """Seconds per training step of every optimizer, timed on the same batches, against Adam's,
    and with 50% masks against without (Adam and SAM)."""
    rows = []
    for b in bench:
        for o, seconds in b["seconds_per_step"].items():
            masked = b["masked_over_dense"].get(o)
            rows.append({"task": TASK_NAMES[b["task"]], "optimizer": OPTIMIZER_NAMES[o],
                         "s / step": f"{seconds:.3f}", "/ Adam": f"{b['over_adam'][o]:.2f}",
                         "masked / dense": "-" if masked is None else f"{masked:.2f}"})
    return pd.DataFrame(rows).set_index(["task", "optimizer"])


def inference_table(bench: list[dict]) -> pd.DataFrame:
    """int8 against fp32 latency at batch 1 and 32 (full-length rows, the CPU)."""
    rows = [{"task": TASK_NAMES[b["task"]], "batch": int(size), "int8 / fp32 latency":
             f"{ratio:.2f}"} for b in bench for size, ratio in b["int8_over_fp32"].items()]
    return pd.DataFrame(rows).set_index(["task", "batch"])


def variants_table(runs: list[dict], bench: list[dict]) -> pd.DataFrame:
    """Per task and optimizer, mean ± std over seeds: dev score, int8 drop, the score with 4-bit
    weights and after one-shot pruning to 50 and 70%, sharpness; and the step time against
    Adam's from the bench. One environment per task."""
    runs, notes = one_environment_per(runs, _task, _task_block("the variants"))
    over_adam = {o: r for b in bench for o, r in b["over_adam"].items()}
    groups = defaultdict(list)
    for r in runs:
        groups[r["task"], r["optimizer"]].append(r)
    rows = []
    for (task, optimizer), rs in groups.items():
        rows.append({"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
                     "seeds": len(rs),
                     "step / Adam": f"{over_adam[optimizer]:.2f}" if optimizer in over_adam
                     else "-",
                     "dev": pm([r["fp32"] for r in rs]),
                     "int8 drop": pm([r["int8_drop"] for r in rs]),
                     "4 bit": pm([r["bits"]["4"] for r in rs]),
                     "pruned 50%": pm([r["one_shot"]["0.5"] for r in rs]),
                     "pruned 70%": pm([r["one_shot"]["0.7"] for r in rs]),
                     "sharpness": pm_sig([r["sharpness"] for r in rs])})
    columns = ["task", "optimizer", "seeds", "step / Adam", "dev", "int8 drop", "4 bit",
               "pruned 50%", "pruned 70%", "sharpness"]
    table = pd.DataFrame(rows, columns=columns).set_index(["task", "optimizer"])
    return with_notes(table, notes)


def variant_differences(runs: list[dict], base: str) -> pd.DataFrame:
    """Each variant minus ``base`` (Adam or SAM) on the same task and seed, in points: dev score,
    int8 drop, 4-bit score, score after one-shot pruning to 70%; mean over the paired seeds."""
    runs, notes = one_environment_per(runs, _task, _task_block("the variants"))
    by = {(r["task"], r["optimizer"], r["seed"]): r for r in runs}
    measures = {"dev": lambda r: r["fp32"], "int8 drop": lambda r: r["int8_drop"],
                "4 bit": lambda r: r["bits"]["4"], "pruned 70%": lambda r: r["one_shot"]["0.7"]}
    rows = []
    for task, optimizer in dict.fromkeys((r["task"], r["optimizer"]) for r in runs):
        pairs = [(by[task, optimizer, s], by[task, base, s]) for (t, o, s) in by
                 if t == task and o == optimizer and (task, base, s) in by]
        if optimizer == base or not pairs:
            continue
        row = {"task": TASK_NAMES[task], "optimizer": OPTIMIZER_NAMES[optimizer],
               "paired seeds": len(pairs)}
        for name, value in measures.items():
            row[name] = f"{100 * statistics.fmean(value(a) - value(b) for a, b in pairs):+.1f}"
        rows.append(row)
    columns = ["task", "optimizer", "paired seeds", *measures]
    table = pd.DataFrame(rows, columns=columns).set_index(["task", "optimizer"])
    return with_notes(table, notes)


def plan_cost_table(profile: Profile, seconds_per_step: float) -> pd.DataFrame:
    """What every unit of a profile's plan costs in training steps (the experiments' cost
    models, each model counted once: :func:`~flatcomp.lab.experiments.core.work_steps`), and in
    GPU-hours at ``seconds_per_step``."""
    from flatcomp.lab.experiments import CHAPTERS, experiment_profile
    from flatcomp.lab.experiments.core import work_steps

    rows = []
    for chapter in CHAPTERS:
        for exp in chapter.EXPERIMENTS:
            at = experiment_profile(profile, exp.name)
            units = exp.units(at)
            steps = sum(work_steps(exp, at, u) for u in units)
            rows.append({"chapter": exp.chapter, "experiment": exp.name, "units": len(units),
                         "training steps": f"{steps:,.0f}",
                         "GPU-hours": f"{steps * seconds_per_step / 3600:,.1f}"})
    return pd.DataFrame(rows).set_index(["chapter", "experiment"])


def waiting_markdown(profile: Profile, chapter: str | None = None,
                     experiments: Sequence[str] = ()) -> str:
    """What of a chapter's experiments (or of ``experiments``) is not stored yet, as one Markdown
    table: a row per experiment with missing units, how many are stored, how many of the missing
    ones the profile's plan computes (:attr:`~flatcomp.lab.config.Profile.plan_scope`; the others
    are left to a larger machine) and the command that computes all of them (empty when all is
    stored). The chapter lists it once, in its cut section, instead of in its sections."""
    from flatcomp.lab.experiments import EXPERIMENTS, experiment_profile, planned_units, unit_id
    from flatcomp.lab.results import ResultsStore

    rows = []
    for name, experiment in EXPERIMENTS.items():
        if experiment.chapter != chapter and name not in experiments:
            continue
        planned = planned_units(profile, name)
        have = set(ResultsStore(experiment_profile(profile, name)).units(name))
        missing = [u for u in planned if unit_id(u) not in have]
        if missing:
            rows.append(f"| `{name}` | {experiment.description} | "
                        f"{len(planned) - len(missing)} of {len(planned)} | "
                        f"{_in_plan(profile, name, missing)} | "
                        f"`python -m flatcomp plan --profile {profile.name} --experiment {name}` |")
    if not rows:
        return ""
    return "\n".join(["| not stored yet | what it is | units stored | in the plan | computed by |",
                      "|---|---|---|---|---|", *rows])


def _in_plan(profile: Profile, experiment: str, missing: list[dict]) -> str:
    """How many of an experiment's missing units the profile's plan computes."""
    planned = sum(profile.in_plan(experiment, u) for u in missing)
    if planned == len(missing):
        return "all"
    if planned == 0:
        return "no: left for `paper`"
    return f"{planned} of the {len(missing)}"


def variants_verdict(runs: list[dict], bench: list[dict], cards: list[dict],
                     score_gap: float = 0.005, cost_goal: float = 1.3) -> str:
    """Which variants meet the goal, per task with both arms stored: a step at most
    ``cost_goal`` times Adam's, and within ``score_gap`` of SAM's dev score, int8 drop and score
    after one-shot pruning to 70% (each the mean over the seeds stored). A variant whose every
    seed scores the majority class is said to have learned nothing (``cards``: the data cards)."""
    if not bench:
        return "The bench is not stored yet, so no variant's cost is known."
    over_adam = {o: r for b in bench for o, r in b["over_adam"].items()}
    majority = majority_class(cards)
    runs, _ = one_environment_per(runs, _task, _task_block("the variants"))
    mean = defaultdict(list)
    for r in runs:
        mean[r["task"], r["optimizer"]].append(r)
    measures = {"dev score": (lambda r: r["fp32"], 1), "int8 drop": (lambda r: r["int8_drop"], -1),
                "70% one-shot score": (lambda r: r["one_shot"]["0.7"], 1)}
    lines = []
    for task in dict.fromkeys(r["task"] for r in runs):
        if (task, "sam") not in mean:
            lines.append(f"* {TASK_NAMES[task]}: SAM's model is not stored yet.")
            continue
        for optimizer in (o for (t, o) in mean if t == task and o not in ("adam", "sam")):
            short = [name for name, (value, sign) in measures.items()
                     if sign * (statistics.fmean(map(value, mean[task, optimizer])) -
                                statistics.fmean(map(value, mean[task, "sam"]))) < -score_gap]
            cost = over_adam.get(optimizer, float("nan"))
            cheap = cost <= cost_goal
            verdict = ("meets the goal" if cheap and not short else
                       "is not cheap enough" if not cheap and not short else
                       f"falls short of SAM in {', '.join(short)}")
            if all(abs(r["fp32"] - majority.get(task, -1)) < 1e-9 for r in mean[task, optimizer]):
                verdict += " (it predicts the majority class: it did not learn the task)"
            lines.append(f"* {TASK_NAMES[task]}, {OPTIMIZER_NAMES[optimizer]} "
                         f"({len(mean[task, optimizer])} seed(s), step {cost:.2f}x Adam's): "
                         f"{verdict}.")
    return "\n".join(lines) or "No variant is stored yet."


def bench_findings(bench: list[dict]) -> str:
    """The bench's ratios as sentences, for a chapter's findings."""
    if not bench:
        return "* The bench is not stored yet (`python -m flatcomp bench`)."
    b = bench[0]
    over, masked, int8 = b["over_adam"], b["masked_over_dense"], b["int8_over_fp32"]
    variants = ", ".join(f"{OPTIMIZER_NAMES[o]} {over[o]:.2f}x" for o in over
                         if o not in ("adam", "sam"))
    return (f"* A SAM step took {over['sam']:.2f}x an Adam step on this machine (its two passes "
            f"alone would make it 2x); the variants: {variants}.\n"
            f"* A step under 50% masks took {masked['adam']:.2f}x a dense one with Adam and "
            f"{masked['sam']:.2f}x with SAM.\n"
            f"* int8 inference took {int8['1']:.2f}x fp32's time at batch 1 and "
            f"{int8['32']:.2f}x at batch 32.")


# ---------------------------------------------------------------- how the results were made

def provenance_table(profile: Profile) -> pd.DataFrame:
    """Per experiment and environment (device, precision, starting weights): how many records,
    from how many commits, with how many hours of wall time, over which dates."""
    from pathlib import Path

    from flatcomp.lab.results import ResultsStore, environment as record_environment, read_record

    root = Path(ResultsStore(profile).root) / profile.name
    groups = defaultdict(list)
    for path in sorted(root.glob("*/*.json")):
        record = read_record(path)
        prov = record["provenance"]
        env = record_environment(prov, record["result"])
        groups[path.parent.name, env["device"], env["precision"], env["weights"]].append(prov)
    rows = [{"experiment": experiment, "device": device, "precision": precision,
             "weights": weights, "records": len(provs),
             "commits": len({p.get("git_commit") for p in provs}),
             "wall hours": f"{sum(p.get('wall_seconds') or 0 for p in provs) / 3600:.2f}",
             "dates": f"{min(p['date'][:10] for p in provs)} to {max(p['date'][:10] for p in provs)}"}
            for (experiment, device, precision, weights), provs in groups.items()]
    columns = ["experiment", "device", "precision", "weights", "records", "commits",
               "wall hours", "dates"]
    return pd.DataFrame(rows, columns=columns).set_index(["experiment", "device"])


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
