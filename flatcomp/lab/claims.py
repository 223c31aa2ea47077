"""The claims page: each of the paper's claims, the paper's number beside ours, in one table.

Every claim is a paired difference (:func:`flatcomp.stats.paired_difference`, Student's t
interval over the pairs; for the full model and int8, where the records keep the prediction for
every dev row, the two-level bootstrap over the pairs and their dev rows,
:func:`flatcomp.stats.bootstrap_difference`; the column "CI over" says which), oriented so that
the paper's side is positive, and judged by the
book's rule (:func:`flatcomp.stats.verdict`): *reproduced*, *contradicted* or *inconclusive*.
Two records are a pair when they share the task and the seed (and whatever else the claim holds
fixed: the sparsity, the fine-tuning optimizer, the source of a ticket) and differ only in the
arm compared; the same seed means the same starting weights and the same order of the data.
Each row is a comparison, and a comparison never mixes environments: its records are those of
the commonest device, precision and starting weights
(:func:`flatcomp.lab.reporting.one_environment`), and the row says how many others were left out
(the note under the table names them).

A row is one task, or all tasks pooled (only where more than one task has pairs: the pairs of
every task together, one pair per task and seed). A claim with no stored pair says *not yet
measured* and gives the plan command that computes it (or says that the profile's plan lacks
it). Scores are differences in points (a dev score in percent, MCC and Pearson times 100).
"""

from __future__ import annotations

import functools
import html
import re
import statistics
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np
import pandas as pd

from flatcomp.lab import cofi_report, squad_report
from flatcomp.lab.config import ENVIRONMENT, Profile
from flatcomp.lab.paper import COFI_95, IMP_REWIND, INT8_DROP, MASK_X_OPTIMIZER, TRANSFER
from flatcomp.lab.reporting import TASK_NAMES, NotedTable, environment, one_environment
from flatcomp.metrics import recorded_score, resample_score
from flatcomp.stats import (MIN_PAIRS, PairedDifference, bootstrap_difference,
                            paired_difference, pairs_of, verdict)

# The paper's Table 1 gives no per-task numbers in our records of it, only this count (PAPER.md).
FULL_MODEL_PAPER = "SAM ahead on 5 of 8 tasks"

# The chapter of each claim: the label shown, and the page it links to.
CHAPTERS = {"3 SAM fine-tuning": "03_sam_finetuning", "4 lottery tickets": "04_lottery_tickets",
            "5 CoFi": "05_cofi", "6 quantization": "06_quantization", "7 SQuAD": "07_squad",
            "9 flatness and compressibility": "09_flatness_and_compressibility"}

COLUMNS = ["claim", "task", "paper", "ours", "95% CI", "CI over", "pairs", "verdict", "chapter",
           "note"]


Difference = Callable[[list[dict]], PairedDifference | None]


@dataclass(frozen=True)
class Stored:
    """The stored records of a profile: ``load(experiment)`` gives an experiment's results, and
    ``planned(experiment)``, if given, how many units the profile's plan has."""

    profile: Profile
    load: Callable[[str], list[dict]]
    planned: Callable[[str], int] | None = None

    def how_to_measure(self, experiment: str) -> str:
        """The plan command that computes an experiment's missing units, or, when every planned
        unit is stored, that the missing arm is not in the profile's plan."""
        if self.planned is not None and self.planned(experiment) <= len(self.load(experiment)):
            return f"not in the {self.profile.name} plan (all its {experiment} units are stored)"
        return (f"run `python -m flatcomp plan --profile {self.profile.name} --experiment "
                f"{experiment}`")


def stored_records(profile: Profile) -> Stored:
    """What ``results/<profile>/`` holds, nothing computed (``load_or_run(missing="skip")``),
    each experiment read once."""
    from flatcomp.lab.experiments import load_or_run, planned_units

    @functools.cache
    def load(experiment: str) -> list[dict]:
        return load_or_run(profile, experiment, progress=False, missing="skip")
    return Stored(profile, load, lambda experiment: len(planned_units(profile, experiment)))


# ---------------------------------------------------------------- pairs and rows

def matched(key: Callable[[dict], Hashable]) -> Callable[[dict], Hashable]:
    """``key`` and the record's environment (:func:`flatcomp.lab.reporting.environment`): two
    records pair only if they ran in the same one. Pairs of different environments may sit side
    by side in one comparison; the two arms of a pair never differ in device, precision,
    starting weights or batching."""
    return lambda r: (key(r), environment(r))


def paired(score: Callable[[dict], float], arm: Callable[[dict], str], arms: tuple[str, str],
           key: Callable[[dict], Hashable]) -> Difference:
    """The difference score(arms[0]) - score(arms[1]) over the pairs of :func:`pairs_of`, each
    pair of one environment (:func:`matched`), with Student's t interval (None without a pair)."""
    def difference(records: list[dict]) -> PairedDifference | None:
        pairs = pairs_of(records, arm, arms, matched(key))
        if not pairs:
            return None
        return paired_difference([score(a) for a, _ in pairs], [score(b) for _, b in pairs])
    return difference


def bootstrapped(t_difference: Difference, rows: Callable[[dict, dict], tuple | None],
                 arm: Callable[[dict], str], arms: tuple[str, str],
                 key: Callable[[dict], Hashable]) -> Difference:
    """``t_difference``, unless there are :data:`~flatcomp.stats.MIN_PAIRS` pairs or more and
    ``rows(a, b)`` gives every pair's (number of dev rows, difference on a resample of them):
    then the two-level bootstrap over the pairs and their dev rows
    (:func:`flatcomp.stats.bootstrap_difference`)."""
    def difference(records: list[dict]) -> PairedDifference | None:
        pairs = [rows(a, b) for a, b in pairs_of(records, arm, arms, matched(key))]
        if len(pairs) >= MIN_PAIRS and all(p is not None for p in pairs):
            return bootstrap_difference(pairs)
        return t_difference(records)
    return difference


def chain_means(score: Callable[[dict], float], arm: Callable[[dict], str],
                arms: tuple[str, str], key: Callable[[dict], Hashable]) -> Difference:
    """The difference over independent masks: the records of each ``key`` (which names the IMP
    chain that found the mask, not the fine-tuning seed) and arm averaged, then paired, each pair
    of one environment, with Student's t interval. Fine-tunes of one mask under several seeds
    are one pair: their spread is not the mask's."""
    def difference(records: list[dict]) -> PairedDifference | None:
        groups: dict[tuple, list[float]] = {}
        for r in records:
            if arm(r) in arms:
                groups.setdefault((matched(key)(r), arm(r)), []).append(score(r))
        first, second = arms
        keys = [k for k, a in groups if a == first and (k, second) in groups]
        if not keys:
            return None
        mean = lambda k, a: statistics.fmean(groups[k, a])  # noqa: E731
        return paired_difference([mean(k, first) for k in keys], [mean(k, second) for k in keys])
    return difference


def unmatched(records: list[dict], arm: Callable[[dict], str], arms: tuple[str, str],
              key: Callable[[dict], Hashable]) -> list[dict]:
    """The records of ``arms`` whose partner (the same ``key``, the other arm) exists only in
    another environment: left out of the comparison."""
    ours = [r for r in records if arm(r) in arms]
    other = {arms[0]: arms[1], arms[1]: arms[0]}
    in_environment = {(matched(key)(r), arm(r)) for r in ours}
    anywhere = {(key(r), arm(r)) for r in ours}
    return [r for r in ours if (key(r), other[arm(r)]) in anywhere
            and (matched(key)(r), other[arm(r)]) not in in_environment]


CI_OVER = {"t": "seeds (t)", "bootstrap": "seeds and dev rows (bootstrap)"}
CHAINS = "IMP chains (t)"  # the masks' own pairs: one per chain, its fine-tunes averaged


def _same_rows(a: dict, b: dict) -> np.ndarray | None:
    """The dev labels two records share, if both keep their predictions on the same rows."""
    if "dev_predictions" not in a or "dev_predictions" not in b or \
            a.get("dev_labels") is None or a.get("dev_labels") != b.get("dev_labels"):
        return None
    return np.asarray(a["dev_labels"])


def dense_rows(a: dict, b: dict) -> tuple[int, Callable] | None:
    """C1's pair on resampled dev rows: the score of ``a``'s predictions minus ``b``'s."""
    labels = _same_rows(a, b)
    if labels is None:
        return None
    score = resample_score(a["task"])
    pa, pb = np.asarray(a["dev_predictions"]), np.asarray(b["dev_predictions"])
    everything = np.arange(len(labels))

    def difference(index: np.ndarray | None) -> float:
        i = everything if index is None else index
        return score(pa[i], labels[i]) - score(pb[i], labels[i])
    return len(labels), difference


def int8_rows(a: dict, b: dict) -> tuple[int, Callable] | None:
    """C6's pair on resampled dev rows: ``a``'s int8 drop minus ``b``'s."""
    labels = _same_rows(a, b)
    if labels is None:
        return None
    score = resample_score(a["task"])
    p = {(r, k): np.asarray(rec["dev_predictions"][k]) for r, rec in (("a", a), ("b", b))
         for k in ("fp32", "int8")}
    everything = np.arange(len(labels))

    def difference(index: np.ndarray | None) -> float:
        i, y = (everything, labels) if index is None else (index, labels[index])
        drop = {r: score(p[r, "fp32"][i], y) - score(p[r, "int8"][i], y) for r in "ab"}
        return drop["a"] - drop["b"]
    return len(labels), difference


@dataclass(frozen=True)
class Comparison:
    """A claim as a paired difference, the paper's side positive; ``experiment`` computes it."""

    claim: str
    chapter: str
    experiment: str
    difference: Difference
    # (arm, arms, key) where pairs are matched per environment (:func:`matched`); None: the
    # comparison keeps the records of one environment
    # (:func:`flatcomp.lab.reporting.one_environment`)
    pairing: tuple | None = None
    over: str | None = None  # what the pairs are, where not seeds (the "CI over" column)


def not_measured(claim: str, task: str, chapter: str, paper: str, why: str) -> dict:
    """A row for a claim without a stored pair."""
    return {"claim": claim, "task": task, "paper": paper, "ours": "-", "95% CI": "-",
            "CI over": "-", "pairs": 0, "verdict": "not yet measured", "chapter": chapter,
            "note": why}


def compared(records: list[dict], c: Comparison, task: str, paper: str,
             stored: Stored) -> tuple[dict, list[dict], str | None]:
    """The row of one comparison over ``records``, those of the commonest environment only
    (:func:`flatcomp.lab.reporting.one_environment`); the records left out, and the note naming
    them."""
    if c.pairing is None:
        kept, note = one_environment(records, f"{c.claim}, {task}")
        left_out = [r for r in records if not any(r is k for k in kept)]
    else:
        kept, left_out = records, unmatched(records, *c.pairing)
        note = (f"{c.claim}, {task}: left out, as their partner ran in another environment: "
                f"{_names(left_out)} (the appendix says where each ran).") if left_out else None
    said = f"{len(left_out)} runs from another environment left out" if left_out else ""
    d = c.difference(kept)
    if d is None:
        why = "; ".join(filter(None, [stored.how_to_measure(c.experiment), said]))
        return not_measured(c.claim, task, c.chapter, paper, why), left_out, note
    return {"claim": c.claim, "task": task, "paper": paper, "ours": f"{100 * d.mean:+.1f}",
            "95% CI": d.interval(), "CI over": c.over or CI_OVER[d.method], "pairs": d.pairs,
            "verdict": verdict(d, paper_sign=1, paper=paper_number(paper)),
            "chapter": c.chapter, "note": said}, left_out, note


def _names(records: list[dict], most: int = 8) -> str:
    names = [r.get(ENVIRONMENT, {}).get("unit") or "?" for r in records]
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def paper_number(paper: str) -> float | None:
    """The paper's difference in the units of a :class:`PairedDifference` (points / 100) from a
    row's "paper" cell ("+5.0", "+1.2 (mean of 3)"), or None where it gives no number."""
    found = re.match(r"\s*([+-]?\d+(?:\.\d+)?)", paper)
    return float(found.group(1)) / 100 if found else None


def _task(r: dict) -> str:
    return r["task"]


def per_task(records: list[dict], c: Comparison, paper: Callable[[list[str]], str],
             stored: Stored, group: Callable[[dict], str] = _task,
             name: Callable[[str], str] = TASK_NAMES.get,
             kind: str = "tasks") -> tuple[list[dict], list[str]]:
    """One row per task (or other ``group``) that has records, then those with pairs pooled where
    more than one has them (each pair of one environment; a comparison that keeps one environment
    pools the groups of the commonest); ``paper(groups)`` is the paper's number over those
    groups. Without any record, one row: not yet measured. Also the notes naming the records
    left out (each record named once)."""
    rows, notes, named, measured = [], [], set(), []

    def add(row: dict, left_out: list[dict], note: str | None) -> None:
        rows.append(row)
        if note and not {id(r) for r in left_out} <= named:
            notes.append(note)
            named.update(id(r) for r in left_out)

    for g in dict.fromkeys(map(group, records)):
        add(*compared([r for r in records if group(r) == g], c, name(g), paper([g]), stored))
        measured += [g] if rows[-1]["pairs"] else []
    pool = [r for r in records if group(r) in measured]
    if c.pairing is not None:  # pairs of any environment pool, each pair of one
        used = measured
    else:
        kept, _ = one_environment(pool, f"{c.claim}, pooled") if len(measured) > 1 else ([], None)
        used = list(dict.fromkeys(group(r) for r in kept))  # the pool's one environment
    if len(used) > 1:
        add(*compared(pool, c, f"pooled ({len(used)} {kind})", paper(used), stored))
    if not rows:
        rows.append(not_measured(c.claim, "all", c.chapter, paper([]),
                                 stored.how_to_measure(c.experiment)))
    return rows, notes


def paper_mean(values: dict[str, float]) -> Callable[[list[str]], str]:
    """The paper's difference for one task, or its mean over several, or over all it reports
    (for no task: a claim not measured here yet)."""
    def over(tasks: list[str]) -> str:
        known = [values[t] for t in tasks if t in values] if tasks else list(values.values())
        if not known:
            return "not reported"
        mean = f"{statistics.fmean(known):+.1f}"
        return mean if len(known) == 1 == len(tasks) else f"{mean} (mean of {len(known)})"
    return over


def _task_seed(r: dict) -> tuple:
    return r["task"], r["seed"]


def _optimizer(r: dict) -> str:
    return r["optimizer"]


def _mask(r: dict) -> str:
    return r["mask"]


# ---------------------------------------------------------------- the claims

def full_model(stored: Stored) -> tuple[list[dict], list[str]]:
    """C1: SAM's dense dev score (best epoch) minus Adam's, paired by task and seed."""
    return _full_model_rows(stored, "C1 full model: SAM − Adam", "finetune")


def full_model_tuned(stored: Stored) -> tuple[list[dict], list[str]]:
    """C1 as the decisive protocol runs it (:mod:`flatcomp.lab.experiments.tuned`): each optimizer
    at its own tuned learning rate and the protocol's budget, paired by task and seed; no rows
    where the profile has no such protocol."""
    from flatcomp.lab.experiments.tuned import protocol

    if protocol(stored.profile) is None:
        return [], []
    return _full_model_rows(stored, "C1 full model, tuned rates: SAM − Adam", "tuned")


def _full_model_rows(stored: Stored, label: str,
                     experiment: str) -> tuple[list[dict], list[str]]:
    arms = ("sam", "adam")
    c = Comparison(label, "3 SAM fine-tuning", experiment,
                   bootstrapped(paired(recorded_score, _optimizer, arms, _task_seed),
                                dense_rows, _optimizer, arms, _task_seed),
                   (_optimizer, arms, _task_seed))
    return per_task(stored.load(experiment), c, lambda tasks: FULL_MODEL_PAPER, stored)


# The lottery claims' labels: with the pooler in the prunable set (the paper's protocol), or
# kept dense (the pooler-free lottery, :data:`flatcomp.lab.experiments.lottery.IMP_PRESETS`).
_POOLER_DENSE = {"imp": "", "tickets": "", "transfer": "", "imp_encoder": ", pooler dense",
                 "tickets_encoder": ", pooler dense", "transfer_encoder": ", pooler dense"}


def imp_tickets(stored: Stored, experiment: str = "imp") -> tuple[list[dict], list[str]]:
    """C2: IMP with rewinding, the SAM chain's ticket minus the Adam chain's at the task's
    reference sparsity (:func:`~flatcomp.lab.experiments.ticket_sparsity`), paired by task and seed
    (SQuAD is C7's). ``experiment``: ``imp`` (the pooler in the prunable set, as the paper) or
    ``imp_encoder`` (the pooler kept dense: :func:`pooler_dense`)."""
    from flatcomp.lab.experiments import ticket_sparsity

    lottery = stored.profile.for_lottery()
    at = [r for r in stored.load(experiment) if r["rewind"]
          and round(r["sparsity"], 2) == round(ticket_sparsity(lottery, r["task"]), 2)]
    c = Comparison(f"C2 IMP ticket{_POOLER_DENSE[experiment]}: SAM − Adam", "4 lottery tickets",
                   experiment, paired(recorded_score, _optimizer, ("sam", "adam"), _task_seed),
                   (_optimizer, ("sam", "adam"), _task_seed))
    paper = {t: s - a for t, (a, s) in IMP_REWIND.items() if t != "squad"}
    return per_task(at, c, paper_mean(paper), stored)


def masks(stored: Stored, experiment: str = "tickets") -> tuple[list[dict], list[str]]:
    """C3: the mask x optimizer table, the SAM-found mask minus the Adam-found one, paired by
    task, sparsity, fine-tuning optimizer and seed (pairs under both optimizers, per task). The
    paper's number: its Table 2 difference averaged over the two optimizers. ``experiment``:
    ``tickets``, or ``tickets_encoder`` for the pooler-free tickets."""
    chain = _chain(stored, experiment)
    key = lambda r: (r["task"], round(r["sparsity"], 2), r["optimizer"], chain(r))  # noqa: E731
    c = Comparison(f"C3 mask{_POOLER_DENSE[experiment]}: SAM − Adam mask", "4 lottery tickets",
                   experiment, chain_means(recorded_score, _mask, ("sam", "adam"), key),
                   (_mask, ("sam", "adam"), key), CHAINS)
    paper = {task: statistics.fmean(cell["sam", o][0] - cell["adam", o][0] for o in ("adam", "sam"))
             for (task, _), cell in MASK_X_OPTIMIZER.items()}
    return per_task(stored.load(experiment), c, paper_mean(paper), stored)


def transfer(stored: Stored, experiment: str = "transfer") -> tuple[list[dict], list[str]]:
    """C4: tickets found on one task and fine-tuned on another, the SAM ticket minus the Adam
    ticket, paired by source, target, fine-tuning optimizer and seed; one row per source task,
    as the paper's row averages. The paper's number is the mean of its Figure 8 cells for the
    same sources, targets and optimizers (its printed row averages span all eight targets).
    ``experiment``: ``transfer``, or ``transfer_encoder`` for the pooler-free tickets."""
    records = stored.load(experiment)
    chain = _chain(stored, experiment)
    key = lambda r: (r["source"], r["task"], r["optimizer"], chain(r))  # noqa: E731
    c = Comparison(f"C4 transfer{_POOLER_DENSE[experiment]}: SAM − Adam ticket",
                   "4 lottery tickets", experiment,
                   chain_means(recorded_score, _mask, ("sam", "adam"), key),
                   (_mask, ("sam", "adam"), key), CHAINS)

    def paper(sources: list[str]) -> str:
        cells = {(r["source"], r["task"], r["optimizer"]) for r in records
                 if r["source"] in sources} if sources else \
            {(s, t, o) for o in ("adam", "sam") for s, t in TRANSFER["ticket", o] if s != t}
        values = [TRANSFER["ticket", o][s, t] for s, t, o in sorted(cells)
                  if (s, t) in TRANSFER["ticket", o]]
        return f"{statistics.fmean(values):+.1f}" if values else "not reported"
    return per_task(records, c, paper, stored, group=lambda r: r["source"],
                    name=lambda source: f"from {TASK_NAMES[source]}", kind="sources")


def _chain(stored: Stored, experiment: str) -> Callable[[dict], int]:
    """The IMP chain whose mask a ticket record fine-tuned
    (:func:`~flatcomp.lab.experiments.lottery.chain_seed`): the first seed's for the paper's
    protocol, the record's own seed for the pooler-free tickets."""
    from flatcomp.lab.experiments.lottery import TICKET_SOURCES, chain_seed

    lottery = stored.profile.for_lottery()
    imp = TICKET_SOURCES.get(experiment, "imp")
    return lambda r: chain_seed(lottery, imp, r["seed"])


def pooler_dense(claim: Callable[..., tuple[list[dict], list[str]]], experiment: str
                 ) -> Callable[[Stored], tuple[list[dict], list[str]]]:
    """A lottery claim (:func:`imp_tickets`, :func:`masks`, :func:`transfer`) over the pooler-free
    lottery's ``experiment``; no rows where the profile's plan has no pooler-free lottery (paper:
    BERT-base's pooler was trained). It runs when this module is imported: the experiments are
    imported when the claim is computed, not before."""
    def over_pooler_free(stored: Stored) -> tuple[list[dict], list[str]]:
        from flatcomp.lab.experiments.lottery import encoder_tasks

        if not encoder_tasks(stored.profile.for_lottery()):
            return [], []
        return claim(stored, experiment)
    over_pooler_free.__name__ = f"{claim.__name__}_pooler_dense"
    return over_pooler_free


imp_tickets_pooler_dense = pooler_dense(imp_tickets, "imp_encoder")
masks_pooler_dense = pooler_dense(masks, "tickets_encoder")
transfer_pooler_dense = pooler_dense(transfer, "transfer_encoder")


def cofi(stored: Stored, target: float = 0.95) -> tuple[list[dict], list[str]]:
    """C5: CoFi at 95% sparsity, the student distilled from the SAM teacher minus the one from
    the Adam teacher, paired by task and seed (the same student initialisation, batches and gate
    noise: :func:`flatcomp.lab.cofi_report.student_difference`)."""
    records = [r for r in stored.load("cofi") + stored.load("cofi_more")
               if r["target_sparsity"] == target]

    def difference(rs: list[dict]) -> PairedDifference | None:
        return cofi_report.student_difference(rs, target) if cofi_report.pairs(rs) else None
    c = Comparison(f"C5 CoFi {100 * target:.0f}%: SAM − Adam teacher", "5 CoFi", "cofi",
                   difference)
    return per_task(records, c, paper_mean({t: s - a for t, (a, s) in COFI_95.items()}), stored)


def int8(stored: Stored) -> tuple[list[dict], list[str]]:
    """C6: the score lost to dynamic int8 (per tensor), Adam's drop minus SAM's, paired by task
    and seed (the fine-tuned models of C1; SQuAD is C7's)."""
    return _int8_drop_rows(stored, "C6 int8 drop: Adam − SAM", "quantization",
                      stored.load("quantization"))


def int8_tuned(stored: Stored) -> tuple[list[dict], list[str]]:
    """C6 over the models of :func:`full_model_tuned`: each record's own int8 drop (its
    ``compression`` fields), Adam's minus SAM's, paired by task and seed."""
    from flatcomp.lab.experiments.tuned import protocol

    if protocol(stored.profile) is None:
        return [], []
    return _int8_drop_rows(stored, "C6 int8 drop, tuned rates: Adam − SAM", "tuned",
                      [{**r, **r["compression"]} for r in stored.load("tuned")])


def _int8_drop_rows(stored: Stored, label: str, experiment: str,
               records: list[dict]) -> tuple[list[dict], list[str]]:
    arms = ("adam", "sam")
    c = Comparison(label, "6 quantization", experiment,
                   bootstrapped(paired(lambda r: r["scores"]["fp32"] - r["scores"]["int8"],
                                       _optimizer, arms, _task_seed),
                                int8_rows, _optimizer, arms, _task_seed),
                   (_optimizer, arms, _task_seed))
    paper = {t: a - s for t, (a, s) in INT8_DROP.items() if t != "squad"}
    return per_task(records, c, paper_mean(paper), stored)


def squad_int8(stored: Stored) -> tuple[list[dict], list[str]]:
    """C7: the F1 lost to dynamic int8 on SQuAD, Adam's drop minus SAM's, paired by seed; the
    note gives the first pair's difference over the dev questions
    (:func:`flatcomp.lab.squad_report.int8_difference`)."""
    records = stored.load("squad_quant") + stored.load("squad_more_quant")
    c = Comparison("C7 SQuAD int8 drop: Adam − SAM", "7 SQuAD", "squad_quant",
                   paired(lambda r: r["int8_drop"], _optimizer, ("adam", "sam"), _task_seed),
                   (_optimizer, ("adam", "sam"), _task_seed))
    a, s = INT8_DROP["squad"]
    rows, notes = per_task(records, c, lambda tasks: f"{a - s:+.1f}", stored)
    kept, _ = one_environment(records, "C7 SQuAD int8")
    measured = squad_report.int8_difference(kept)
    if measured and rows[0]["pairs"]:
        questions = measured[1]
        said = (f"over the {questions.pairs:,} dev questions of seed "
                f"{squad_report.seed_pairs(kept)[0][0]['seed']}: {100 * questions.mean:+.1f} "
                f"({questions.interval()})")
        rows[0]["note"] = "; ".join(filter(None, [said, rows[0]["note"]]))
    return rows, notes


def squad_imp(stored: Stored) -> tuple[list[dict], list[str]]:
    """C7: IMP with rewinding on SQuAD at the last round's sparsity (the paper: 40%), the SAM
    ticket's F1 minus the Adam ticket's, paired by seed."""
    settings = stored.profile.squad_settings()
    last = round(settings["imp_rounds"] * settings["imp_rate"], 2)
    at = [r for r in stored.load("squad_imp") if round(r["sparsity"], 2) == last]
    c = Comparison(f"C7 SQuAD IMP {100 * last:.0f}%: SAM − Adam", "7 SQuAD", "squad_imp",
                   paired(recorded_score, _optimizer, ("sam", "adam"), _task_seed),
                   (_optimizer, ("sam", "adam"), _task_seed))
    a, s = IMP_REWIND["squad"]
    return per_task(at, c, lambda tasks: f"{s - a:+.1f}", stored)


def flatness_predicts(stored: Stored) -> tuple[list[dict], list[str]]:
    """C8, ours (the paper did not test it): across every model that records its flatness and
    its damage (``tuned`` and ``rho_sweep``), flatter models lose less to int8: Kendall's tau of
    sharpness and int8 drop, with its bootstrap interval over models
    (:mod:`flatcomp.lab.compressibility_report`)."""
    from flatcomp.lab.compressibility_report import MIN_MODELS, kendall_with_interval, model_points

    name = "C8 (ours) flatter models lose less: tau(sharpness, int8 drop)"
    records = stored.load("tuned") + stored.load("rho_sweep")
    if len(records) < MIN_MODELS:
        why = stored.how_to_measure("rho_sweep" if stored.load("tuned") else "tuned")
        return [not_measured(name, "all models", "9 flatness and compressibility",
                             "not tested", why)], []
    points = model_points(records)
    tau = kendall_with_interval(points["sharpness"].to_numpy(float),
                                points["int8"].to_numpy(float))
    return [{"claim": name, "task": "all models", "paper": "not tested",
             "ours": f"{tau.mean:+.2f}", "95% CI": tau.interval(scale=1),
             "CI over": "models (bootstrap)", "pairs": tau.pairs,
             "verdict": verdict(tau, scale=1, unit="(tau)"),
             "chapter": "9 flatness and compressibility", "note": ""}], []


CLAIMS = (full_model, full_model_tuned, imp_tickets, imp_tickets_pooler_dense, masks,
          masks_pooler_dense, transfer, transfer_pooler_dense, cofi, int8, int8_tuned, squad_int8,
          squad_imp, flatness_predicts)


# ---------------------------------------------------------------- the table

class ClaimsTable(NotedTable):
    """The claims, with each chapter a link in HTML and the full notes under the table."""

    @property
    def _constructor(self):
        return ClaimsTable

    def _repr_html_(self) -> str:
        formatters = {c: lambda v: html.escape(str(v)) for c in self.columns}
        formatters["chapter"], formatters["note"] = chapter_link, with_code
        out = self.to_html(escape=False, formatters=formatters)
        return out + (f"<p><em>Note: {with_code(self.note)}</em></p>" if self.note else "")

    def __repr__(self) -> str:
        with pd.option_context("display.max_columns", None, "display.width", 100):
            return super().__repr__()  # NotedTable's: every cell whole


def chapter_link(label: str) -> str:
    """A chapter's label as a link to its page (the label alone if it has none yet)."""
    page = CHAPTERS.get(label)
    return html.escape(label) if page is None else f'<a href="{page}.html">{html.escape(label)}</a>'


def with_code(text: str) -> str:
    """``text`` escaped for HTML, its `backticked` commands as code."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def claims_table(profile: Profile, stored: Stored | None = None,
                 only: tuple[Callable[[Stored], tuple[list[dict], list[str]]], ...] = CLAIMS
                 ) -> pd.DataFrame:
    """The rows of every claim (:data:`CLAIMS`, or those in ``only``) that have a stored pair,
    from ``stored`` (default: what the profile's results hold), indexed by claim and task; under
    it, the notes of the records left out, and one line per claim that still waits for a pair,
    with what computes it."""
    stored = stored or stored_records(profile)
    rows, notes, waiting = [], [], {}
    for claim in only:
        mine, note = claim(stored)
        rows += [row for row in mine if row["pairs"]]
        for row in mine:
            if not row["pairs"] and row["claim"] not in {r["claim"] for r in rows}:
                waiting.setdefault(row["claim"], row["note"])
        notes += note
    table = ClaimsTable(pd.DataFrame(rows, columns=COLUMNS).set_index(["claim", "task"]))
    waits = [f"{claim}: {why}" for claim, why in waiting.items()]
    table.note = " ".join(notes + (["Waiting for a stored pair: " + "; ".join(waits) + "."]
                                   if waits else [])) or None
    return table


def prose_numbers(table: pd.DataFrame, prefix: str) -> dict[str, float]:
    """The measured rows of a :func:`claims_table` as numbers for a chapter's prose (myst-nb
    glue, :func:`flatcomp.lab.reporting.glue_numbers`): per task, named by ``prefix`` and the task's
    label in lower-case letters and digits (``c1_sst2``, ``c1_pooled3tasks``), the difference in
    points, with ``_pairs`` and, where there is an interval, ``_low`` and ``_high``."""
    numbers = {}
    for (_, task), row in table.iterrows():
        if not row["pairs"]:
            continue
        name = f"{prefix}_{re.sub('[^a-z0-9]', '', task.lower())}"
        numbers[name], numbers[f"{name}_pairs"] = float(row["ours"]), float(row["pairs"])
        if row["95% CI"] != "-":
            numbers[f"{name}_low"], numbers[f"{name}_high"] = \
                (float(x) for x in row["95% CI"].split(" to "))
    return numbers
