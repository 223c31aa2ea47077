"""The SQuAD chapter's worked example, tables, figure and verdict: stored ``squad_*`` records in,
DataFrames, a Figure and sentences out.

Records (:mod:`flatcomp.lab.experiments.squad`) are fine-tunes (``squad_finetune``, ``squad_more``),
their quantization (``squad_quant``, ``squad_more_quant``: F1 in fp32 and int8 on the CPU, and the
F1 of every question), IMP rounds (``squad_imp``) and the sparsest ticket in int8
(``squad_compound``). An Adam and a SAM record of the same seed are a *pair*: the same span head
initialisation and order of the training windows. With one seed, two models can still be compared
question by question on the one dev set (:func:`question_difference`): that interval covers the
sampling of the dev questions, not the spread between fine-tuning seeds. Scores are F1 in
percent (SQuAD v1.1's official F1, the maximum over a question's gold answers).
"""

from __future__ import annotations

from typing import Callable

import matplotlib.pyplot as plt
import pandas as pd

from flatcomp.lab.config import Profile, get_profile
from flatcomp.lab.data import SquadExample, load_squad
from flatcomp.lab.paper import FULL_BERT_BASE, IMP_REWIND, INT8_DROP, TICKET_SPARSITY
from flatcomp.lab.qa_answers import Span, span_text
from flatcomp.lab.qa_features import CLS_INDEX, QAFeatures, encode_squad
from flatcomp.lab.reporting import OPTIMIZER_NAMES, one_environment, pct, with_notes
from flatcomp.stats import PairedDifference, paired_difference, pairs_of, verdict as verdict_of

HEADLINE = ("adam", "sam")
COLORS = {"adam": "tab:blue", "sam": "tab:orange"}


# ---------------------------------------------------------------- the worked example

def example_windows(profile: Profile) -> tuple[SquadExample, QAFeatures]:
    """The shipped SQuAD question (``flatcomp/lab/smoke_data``) whose context takes the most windows
    at the profile's window length and stride, encoded alone with the profile's tokenizer; of
    those, the first whose answer is not in the first window."""
    from flatcomp.lab.models import load_tokenizer

    train, dev, _ = load_squad(get_profile("smoke"))
    tokenizer = load_tokenizer(profile)
    features = encode_squad(train + dev, tokenizer, profile.squad_max_length,
                            profile.squad_doc_stride)
    windows = features.windows_of()
    most = max(len(w) for w in windows.values())
    longest = [i for i, w in windows.items() if len(w) == most]
    later = [i for i in longest if features.start_positions[windows[i][0]] == CLS_INDEX]
    example = features.examples[(later or longest)[0]]
    return example, encode_squad([example], tokenizer, profile.squad_max_length,
                                 profile.squad_doc_stride)


def windows_table(example: SquadExample, features: QAFeatures) -> pd.DataFrame:
    """One row per window of ``example``: its tokens, the characters of the context it covers,
    the label (token positions of the answer, or CLS), and the text the label reads back."""
    rows = []
    for w in features.windows_of()[0]:
        offsets = features.offsets[w]
        inside = [o for o in offsets if o is not None]
        start, end = features.start_positions[w], features.end_positions[w]
        label = "CLS (answer not inside)" if start == end == CLS_INDEX else f"tokens {start}-{end}"
        text = "" if start == end == CLS_INDEX else \
            span_text(example.context, offsets, Span(w, start, end, 0.0))
        rows.append({"window": w + 1, "tokens": len(features.input_ids[w]),
                     "context characters": f"{inside[0][0]}-{inside[-1][1]}",
                     "label": label, "label read back": text})
    return pd.DataFrame(rows).set_index("window")


# ---------------------------------------------------------------- pairs

def _by_optimizer_seed(records: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["optimizer"], r["seed"]): r for r in records}


def seed_pairs(records: list[dict], first: str = "sam", second: str = "adam"
               ) -> list[tuple[dict, dict]]:
    """(``first`` record, ``second`` record) of every seed that has both, in seed order."""
    return pairs_of(records, lambda r: r["optimizer"], (first, second), lambda r: r["seed"])


def question_difference(a: dict, b: dict, score: Callable[[dict], list[float]]) -> PairedDifference:
    """mean over the dev questions of score(a)_i - score(b)_i, ``score`` giving a record's
    per-question F1 list, with Student's t interval over the questions (both records must have
    scored the same questions: the same data cut)."""
    if a.get("data_cut") != b.get("data_cut"):
        raise ValueError(f"{a['optimizer']} seed {a['seed']} and {b['optimizer']} seed "
                         f"{b['seed']} were scored on different data cuts; run both at one "
                         "profile")
    return paired_difference(score(a), score(b))


def _f1(variant: str) -> Callable[[dict], list[float]]:
    return lambda r: r["f1_per_question"][variant]


def _drop(r: dict) -> list[float]:
    return [x - y for x, y in zip(r["f1_per_question"]["fp32"], r["f1_per_question"]["int8"])]


def dense_difference(quant: list[dict]) -> tuple[PairedDifference, PairedDifference] | None:
    """SAM - Adam F1 in fp32: over seeds (the pairs of :func:`seed_pairs`), and over the
    questions of the first pair; None without a pair."""
    pairs = seed_pairs(quant)
    if not pairs:
        return None
    seeds = paired_difference([s["scores"]["fp32"] for s, _ in pairs],
                              [a["scores"]["fp32"] for _, a in pairs])
    return seeds, question_difference(*pairs[0], _f1("fp32"))


def int8_difference(quant: list[dict]) -> tuple[PairedDifference, PairedDifference] | None:
    """Adam's int8 F1 drop minus SAM's (the paper's side positive): over seeds, and over the
    questions of the first seed's pair (per question, fp32 F1 minus int8 F1); None without a
    pair."""
    pairs = seed_pairs(quant, "adam", "sam")
    if not pairs:
        return None
    seeds = paired_difference([a["int8_drop"] for a, _ in pairs],
                              [s["int8_drop"] for _, s in pairs])
    return seeds, question_difference(*pairs[0], _drop)


# ---------------------------------------------------------------- tables

def _in_order(records: list[dict]) -> list[dict]:
    """By optimizer (Adam, SAM, SWA, ...), then seed."""
    return sorted(records, key=lambda r: (list(OPTIMIZER_NAMES).index(r["optimizer"]), r["seed"]))


def results_table(finetunes: list[dict], quant: list[dict]) -> pd.DataFrame:
    """Per optimizer and seed: the best epoch's F1 and exact match (during training), then F1 in
    fp32 and dynamic int8 on the CPU and the drop, beside the paper's (BERT-base) numbers."""
    finetunes, notes = one_environment(finetunes, "SQuAD fine-tunes")
    scored = _by_optimizer_seed(quant)
    rows = []
    for r in _in_order(finetunes):
        best = next(h for h in r["history"] if h["epoch"] == r["best_epoch"])
        q = scored.get((r["optimizer"], r["seed"]))
        drop = INT8_DROP["squad"][HEADLINE.index(r["optimizer"])] \
            if r["optimizer"] in HEADLINE else None
        rows.append({
            "optimizer": OPTIMIZER_NAMES[r["optimizer"]], "seed": r["seed"],
            "best epoch": f"{r['best_epoch']} of {r['epochs']}",
            "EM": pct(best["exact_match"]), "F1": pct(best["f1"]),
            "F1 fp32 (CPU)": pct(q["scores"]["fp32"]) if q else "-",
            "F1 int8": pct(q["scores"]["int8"]) if q else "-",
            "int8 drop": pct(q["int8_drop"]) if q else "-",
            "BERT-base F1 (Chen et al.)": f"{FULL_BERT_BASE['squad']:.1f}",
            "paper int8 drop": f"{drop:.2f}" if drop is not None else "-"})
    table = pd.DataFrame(rows).set_index(["optimizer", "seed"]) if rows else pd.DataFrame()
    return with_notes(table, [notes] if notes else [])


def imp_rows(rounds: list[dict]) -> pd.DataFrame:
    """IMP with rewinding: F1 per round (sparsity) for Adam and SAM, the first seed, and SAM -
    Adam; the paper's at its 40% ticket."""
    rounds, notes = one_environment(rounds, "SQuAD IMP")
    seed = min((r["seed"] for r in rounds), default=None)
    by = {(r["optimizer"], r["round"]): r for r in rounds if r["seed"] == seed}
    table = []
    for k in sorted({k for _, k in by}):
        adam, sam = by.get(("adam", k)), by.get(("sam", k))
        sparsity = (adam or sam)["sparsity"]
        row = {"sparsity (%)": pct(sparsity), "Adam": pct(adam["best_score"]) if adam else "-",
               "SAM": pct(sam["best_score"]) if sam else "-",
               "SAM − Adam": f"{100 * (sam['best_score'] - adam['best_score']):+.1f}"
               if adam and sam else "-", "paper Adam → SAM": "-"}
        if round(sparsity, 2) == TICKET_SPARSITY["squad"]:
            row["paper Adam → SAM"] = "{:.1f} → {:.1f}".format(*IMP_REWIND["squad"])
        table.append(row)
    frame = pd.DataFrame(table).set_index("sparsity (%)") if table else pd.DataFrame()
    return with_notes(frame, [notes] if notes else [])


def imp_curve(rounds: list[dict]) -> plt.Figure:
    """F1 against sparsity through IMP with rewinding, Adam and SAM (first seed), with the
    paper's BERT-base points at 40% for reference."""
    rounds, _ = one_environment(rounds, "SQuAD IMP")
    seed = min(r["seed"] for r in rounds)
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for o in HEADLINE:
        mine = sorted((r for r in rounds if r["optimizer"] == o and r["seed"] == seed),
                      key=lambda r: r["round"])
        if mine:
            ax.plot([100 * r["sparsity"] for r in mine], [100 * r["best_score"] for r in mine],
                    "o-", color=COLORS[o], label=f"{OPTIMIZER_NAMES[o]} (ours, seed {seed})")
    for o, value in zip(HEADLINE, IMP_REWIND["squad"]):
        ax.plot([100 * TICKET_SPARSITY["squad"]], [value], "*", ms=12, color=COLORS[o],
                label=f"{OPTIMIZER_NAMES[o]} (paper, BERT-base)")
    ax.set_xlabel("sparsity of the encoder's prunable weights (%)")
    ax.set_ylabel("dev F1 (%)")
    ax.set_title("SQuAD: IMP with rewinding")
    ax.legend(fontsize=9, loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def int8_changes_table(quant: list[dict]) -> pd.DataFrame:
    """Per optimizer and seed: how many dev questions dynamic int8 scores lower, higher or the
    same (F1), and the mean F1 lost by those it lowers: whether the drop is many small losses or
    a few answers lost whole."""
    rows = []
    for r in _in_order(quant):
        changes = [i - f for f, i in zip(r["f1_per_question"]["fp32"],
                                         r["f1_per_question"]["int8"])]
        lower = [-c for c in changes if c < 0]
        rows.append({"optimizer": OPTIMIZER_NAMES[r["optimizer"]], "seed": r["seed"],
                     "questions": len(changes), "lower in int8": len(lower),
                     "higher": sum(c > 0 for c in changes), "same": changes.count(0.0),
                     "mean F1 lost where lower": pct(sum(lower) / len(lower)) if lower else "-",
                     "int8 drop": pct(r["int8_drop"])})
    return pd.DataFrame(rows).set_index(["optimizer", "seed"]) if rows else pd.DataFrame()


def with_fp32(bits: list[dict], quant: list[dict]) -> list[dict]:
    """The k-bit records (``squad_bits``) with their model's fp32 F1 from ``squad_quant`` added
    to their scores, for :func:`flatcomp.lab.quantization_report.bit_sweep`; a model without one
    is left out."""
    fp32 = {(q["optimizer"], q["seed"]): q["scores"]["fp32"] for q in quant}
    return [{**b, "scores": {**b["scores"], "fp32": fp32[b["optimizer"], b["seed"]]}}
            for b in bits if (b["optimizer"], b["seed"]) in fp32]


# ---------------------------------------------------------------- the verdict

def _judged(name: str, seeds: PairedDifference, questions: PairedDifference) -> str:
    if seeds.pairs > 1:
        return f"{name} over {seeds.pairs} seeds: {seeds.describe()}: **{verdict_of(seeds)}**"
    return (f"{name}: {seeds.describe()}; over the {questions.pairs:,} dev questions of that "
            f"pair {questions.describe()}: **{verdict_of(questions)}** for this pair of models "
            f"(the interval covers the dev questions, not the fine-tuning seed)")


def int8_verdict(quant: list[dict]) -> str:
    """The int8 drop, Adam's minus SAM's (the paper: positive), and the full models' SAM - Adam
    difference, each by the book's verdict rule, beside the paper's."""
    adam_drop, sam_drop = INT8_DROP["squad"]
    lines = [f"The paper (BERT-base): int8 costs Adam {adam_drop:.2f} F1 and SAM {sam_drop:.2f} "
             f"(difference {adam_drop - sam_drop:+.2f})."]
    quant, _ = one_environment(quant, "SQuAD int8")
    int8 = int8_difference(quant)
    lines.append(_judged("Ours, Adam's int8 drop minus SAM's", *int8) + "." if int8 else
                 "The int8 drop is not measured yet (no Adam/SAM pair of squad_quant).")
    dense = dense_difference(quant)
    if dense:
        lines.append(_judged("The full models in fp32, SAM − Adam", *dense) + ".")
    return " ".join(lines)


def imp_verdict(rounds: list[dict], compound: list[dict], sparsity: float) -> str:
    """IMP's ticket at ``sparsity`` (the profile's last round), SAM - Adam (the paper: positive
    at 40%), by the book's verdict rule, and the tickets' int8 drop."""
    at = [r for r in rounds if round(r["sparsity"], 2) == round(sparsity, 2)]
    pairs = seed_pairs(one_environment(at, "SQuAD IMP")[0])
    paper = "{:.1f} → {:.1f}".format(*IMP_REWIND["squad"])
    if not pairs:
        return (f"IMP at {100 * sparsity:.0f}% (the paper, at 40%: Adam → SAM {paper} F1) is not "
                "measured yet: no Adam/SAM pair of its last squad_imp round.")
    d = paired_difference([s["best_score"] for s, _ in pairs], [a["best_score"] for _, a in pairs])
    line = (f"IMP at {100 * sparsity:.0f}%, SAM − Adam: {d.describe()}: **{verdict_of(d)}** (the "
            f"paper, at 40%: {paper} F1).")
    if compound:
        drops = ", ".join(f"{OPTIMIZER_NAMES[r['optimizer']]} {100 * r['int8_drop']:.1f}"
                          for r in sorted(compound, key=lambda r: r["optimizer"]))
        line += f" These tickets lose in int8: {drops} F1."
    return line


def prose_numbers(finetunes: list[dict], quant: list[dict]) -> dict[str, float]:
    """The numbers the chapter's prose quotes (glued with myst-nb), in points: per optimizer of
    the first seed ``<o>_f1``, ``<o>_em`` (best epoch), ``<o>_fp32``, ``<o>_int8``, ``<o>_drop``
    and ``<o>_pc_drop`` (int8 per channel); and the paired differences over the first pair's
    questions, ``int8_diff`` (Adam's drop minus SAM's) and ``dense_diff`` (SAM - Adam in fp32),
    with ``_low`` and ``_high`` (the 95% interval)."""
    numbers: dict[str, float] = {}
    first = min((r["seed"] for r in quant), default=None)
    for r in finetunes:
        if r["seed"] == first:
            best = next(h for h in r["history"] if h["epoch"] == r["best_epoch"])
            numbers[f"{r['optimizer']}_f1"] = 100 * best["f1"]
            numbers[f"{r['optimizer']}_em"] = 100 * best["exact_match"]
    for r in quant:
        if r["seed"] == first:
            numbers[f"{r['optimizer']}_fp32"] = 100 * r["scores"]["fp32"]
            numbers[f"{r['optimizer']}_int8"] = 100 * r["scores"]["int8"]
            numbers[f"{r['optimizer']}_drop"] = 100 * r["int8_drop"]
            if "int8 per channel" in r["scores"]:
                numbers[f"{r['optimizer']}_pc_drop"] = \
                    100 * (r["scores"]["fp32"] - r["scores"]["int8 per channel"])
    for name, measured in (("int8_diff", int8_difference(quant)),
                           ("dense_diff", dense_difference(quant))):
        if measured and measured[1].half_width is not None:
            d = measured[1]
            numbers.update({name: 100 * d.mean, f"{name}_low": 100 * (d.mean - d.half_width),
                            f"{name}_high": 100 * (d.mean + d.half_width)})
    return numbers
