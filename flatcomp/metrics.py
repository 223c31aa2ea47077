"""Evaluation metrics for GLUE and SQuAD v1.1, as the paper reports them.

GLUE (Wang et al., 2019, "GLUE: A Multi-Task Benchmark and Analysis Platform for NLU")
reports Matthews correlation for CoLA, accuracy and F1 for MRPC/QQP, Pearson and Spearman
correlation for STS-B and accuracy elsewhere. SQuAD v1.1 (Rajpurkar et al., 2016) reports
exact match and token-level F1 after the answer normalisation of its official script
`evaluate-v1.1.py`, re-implemented here. All values are fractions (not percentages) and
plain Python floats. Predictions and labels may be lists, numpy arrays or torch tensors.
"""

import math
import re
import string
from collections import Counter
from typing import Any, Callable

import numpy as np

GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "cola": ("mcc",),
    "sst2": ("accuracy",), "mnli": ("accuracy",), "mnli_mm": ("accuracy",),
    "qnli": ("accuracy",), "rte": ("accuracy",), "wnli": ("accuracy",),
    "mrpc": ("accuracy", "f1"), "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearman"),
}
# the single number used to pick the best epoch and to compare with the paper
MAIN_METRIC: dict[str, str] = {task: "accuracy" for task in GLUE_METRICS}
MAIN_METRIC.update({"cola": "mcc", "stsb": "pearson", "squad": "f1"})
_PUNCTUATION = set(string.punctuation)


def _pair(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert both inputs to flat numpy arrays and check they are non-empty and equally long."""
    def to_numpy(x: Any) -> np.ndarray:
        if hasattr(x, "detach"):  # torch tensor, without importing torch
            x = x.detach().cpu().numpy()
        return np.asarray(x).reshape(-1)
    p, y = to_numpy(predictions), to_numpy(labels)
    if p.size == 0 or y.size == 0:
        raise ValueError(f"empty input: {p.size} predictions, {y.size} labels")
    if p.size != y.size:
        raise ValueError(f"length mismatch: {p.size} predictions vs {y.size} labels")
    return p, y


def accuracy(predictions: Any, labels: Any) -> float:
    """Fraction of exact matches, mean(pred_i == label_i)."""
    p, y = _pair(predictions, labels)
    return float(np.mean(p == y))


def _binary(predictions: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pair`, for two classes: every value must be 0 or 1."""
    p, y = _pair(predictions, labels)
    for name, values in (("predictions", p), ("labels", y)):
        if not np.isin(values, (0, 1)).all():
            raise ValueError(f"{name} must be binary (0 or 1) for F1 and Matthews correlation; "
                             f"got {sorted(set(np.unique(values).tolist()) - {0, 1})[:5]}")
    return p, y


def f1(predictions: Any, labels: Any) -> float:
    """Binary F1 of the positive class 1: 2PR/(P+R) = 2tp/(2tp+fp+fn); 0 if tp+fp+fn = 0.

    As GLUE reports for MRPC and QQP (Wang et al., 2019). Equal, bit for bit, to
    ``sklearn.metrics.f1_score(labels, predictions, zero_division=0)`` (a test checks it).
    """
    p, y = _binary(predictions, labels)
    tp, fp, fn = int(np.sum((p == 1) & (y == 1))), int(np.sum((p == 1) & (y == 0))), \
        int(np.sum((p == 0) & (y == 1)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def matthews_corrcoef(predictions: Any, labels: Any) -> float:
    """Matthews (1975) correlation, (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)), 0 when
    a marginal is empty.

    GLUE's CoLA metric. Equal, bit for bit, to ``sklearn.metrics.matthews_corrcoef`` on two
    classes (a test checks it).
    """
    return _mcc_np(*_binary(predictions, labels))


def pearson(predictions: Any, labels: Any) -> float:
    """Pearson r = cov(x, y) / (std(x) std(y)); GLUE's STS-B metric, via scipy.stats.pearsonr.

    nan (with a scipy warning) if either input is constant.
    """
    from scipy import stats  # here, not at import: a process that scores no STS-B saves ~1 s

    p, y = _pair(predictions, labels)
    return float(stats.pearsonr(p.astype(float), y.astype(float))[0])


def spearman(predictions: Any, labels: Any) -> float:
    """Spearman rho = Pearson r of the ranks (ties averaged); GLUE's STS-B, via scipy.stats.spearmanr."""
    from scipy import stats

    p, y = _pair(predictions, labels)
    return float(stats.spearmanr(p.astype(float), y.astype(float))[0])


_METRIC_FNS = {"accuracy": accuracy, "f1": f1, "mcc": matthews_corrcoef,
               "pearson": pearson, "spearman": spearman}


def resample_score(task: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """The task's main GLUE metric (:data:`MAIN_METRIC`) on numpy arrays of predictions and
    labels, written out in numpy for the thousands of calls of a bootstrap: accuracy, Matthews
    correlation of the two classes (CoLA) or Pearson's r (STS-B). A correlation that is not
    defined (a constant input) counts as 0, as :func:`recorded_score` does."""
    name = MAIN_METRIC.get(task)
    if task not in GLUE_METRICS or name not in ("accuracy", "mcc", "pearson"):
        raise ValueError(f"no resample score for task {task!r}: choose a GLUE task, one of "
                         f"{', '.join(sorted(GLUE_METRICS))}")
    return {"accuracy": _accuracy_np, "mcc": _mcc_np, "pearson": _pearson_np}[name]


def _accuracy_np(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(p == y))


def _mcc_np(p: np.ndarray, y: np.ndarray) -> float:
    tp, tn = float(np.sum((p == 1) & (y == 1))), float(np.sum((p == 0) & (y == 0)))
    fp, fn = float(np.sum((p == 1) & (y == 0))), float(np.sum((p == 0) & (y == 1)))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return (tp * tn - fp * fn) / denominator if denominator else 0.0


def _pearson_np(p: np.ndarray, y: np.ndarray) -> float:
    p, y = p - p.mean(), y - y.mean()
    denominator = math.sqrt(float(np.dot(p, p)) * float(np.dot(y, y)))
    return float(np.dot(p, y)) / denominator if denominator else 0.0


def glue_metrics(task: str, predictions: Any, labels: Any) -> dict[str, float]:
    """The metrics GLUE reports for `task` (Wang et al., 2019, Table 1), e.g. {"mcc": ...} for cola."""
    if task not in GLUE_METRICS:
        raise ValueError(f"unknown GLUE task {task!r}; known tasks: {sorted(GLUE_METRICS)}")
    return {name: _METRIC_FNS[name](predictions, labels) for name in GLUE_METRICS[task]}


def main_score(task: str, metrics: dict[str, float]) -> float:
    """metrics[MAIN_METRIC[task]]: mcc for cola, pearson for stsb, f1 for squad, else accuracy."""
    if task not in MAIN_METRIC:
        raise ValueError(f"unknown task {task!r}; known tasks: {sorted(MAIN_METRIC)}")
    name = MAIN_METRIC[task]
    if name not in metrics:
        raise ValueError(f"metrics for {task!r} lack {name!r}; got {sorted(metrics)}")
    return float(metrics[name])


def recorded_score(record: dict) -> float:
    """A stored fine-tune's best dev score. A model whose predictions were constant in every
    epoch has no defined correlation (STS-B's Pearson, CoLA's MCC), stored as -inf: it counts as
    0, no correlation, so that it can be averaged with the others."""
    score = record["best_score"]
    return score if np.isfinite(score) else 0.0


# ----------------------------------------------------------------------------- SQuAD v1.1

def normalize_answer(s: str) -> str:
    """SQuAD v1.1 normalisation (Rajpurkar et al., 2016, evaluate-v1.1.py): lower-case,
    drop string.punctuation, drop the whole words a/an/the, collapse white space."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_exact_match(prediction: str, ground_truths: list[str]) -> float:
    """max over truths g of [normalize(prediction) == normalize(g)], 1.0 or 0.0 (SQuAD v1.1)."""
    pred = normalize_answer(prediction)
    return float(max(pred == normalize_answer(g) for g in ground_truths)) if ground_truths else 0.0


def _token_f1(prediction: str, truth: str) -> float:
    """Token F1 = 2PR/(P+R), P = common/|pred tokens|, R = common/|truth tokens|; 0 if no common."""
    pred, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, ground_truths: list[str]) -> float:
    """max over truths of the token-level F1 on normalised tokens (SQuAD v1.1 official script)."""
    return max((_token_f1(prediction, g) for g in ground_truths), default=0.0)


def squad_metrics(predictions: dict[str, str], references: dict[str, list[str]]) -> dict[str, float]:
    """Mean exact match and F1 (fractions) over the question ids of `references`
    (Rajpurkar et al., 2016); a question with no prediction scores 0 on both."""
    per_question = squad_question_scores(predictions, references)
    n = len(per_question)
    return {"exact_match": sum(em for em, _ in per_question) / n,
            "f1": sum(f1 for _, f1 in per_question) / n}


def squad_question_scores(predictions: dict[str, str], references: dict[str, list[str]]
                          ) -> list[tuple[float, float]]:
    """(exact match, F1) of every question of `references`, in its order, each the maximum over
    the question's gold answers; a question with no prediction scores (0, 0). Their means are
    :func:`squad_metrics`; paired over questions they compare two models on one dev set."""
    if not references:
        raise ValueError("empty input: no references")
    return [(squad_exact_match(predictions[qid], truths), squad_f1(predictions[qid], truths))
            if qid in predictions else (0.0, 0.0) for qid, truths in references.items()]
