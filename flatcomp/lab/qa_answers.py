"""From span logits to answer texts, and their SQuAD v1.1 exact match and F1.

BERT's span head (Devlin et al., NAACL 2019, Section 4.2) gives every token i of a window a
start logit s_i and an end logit e_i; the span i..j scores s_i + e_j. For each question the
answer is the best-scoring valid span over all its windows, searched as Devlin et al.'s
``run_squad.py`` does:

* in each window, the ``n_best`` = 20 tokens with the largest start logits and the 20 with the
  largest end logits (padding excluded) are paired;
* a pair is dropped when either token lies outside the context (question, [CLS], [SEP]), when
  j < i, or when the span is longer than ``max_answer_tokens`` = 30 tokens;
* the answer is the context text from the first character of token i to the last of token j,
  through the offsets of :mod:`flatcomp.lab.qa_features`; "" if no pair is valid.

The scores are exact match and token F1, each the maximum over the gold answers, averaged over
the questions (Rajpurkar et al., EMNLP 2016; :func:`flatcomp.metrics.squad_metrics`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from flatcomp.lab.qa_features import Offset, QAFeatures
from flatcomp.metrics import squad_metrics, squad_question_scores

N_BEST = 20
MAX_ANSWER_TOKENS = 30


@dataclass(frozen=True)
class Span:
    """A candidate answer: window, first and last token, score s_i + e_j."""

    window: int
    start: int
    end: int
    score: float


def best_span(start_logits: Sequence[torch.Tensor], end_logits: Sequence[torch.Tensor],
              offsets: Sequence[Sequence[Offset]], n_best: int = N_BEST,
              max_answer_tokens: int = MAX_ANSWER_TOKENS) -> Span | None:
    """The valid span with the largest s_i + e_j over the windows of one question (see the
    module docstring), or None if no window has one. ``start_logits[w]`` and ``end_logits[w]``
    may run past window w's tokens (padding): only its first ``len(offsets[w])`` count."""
    if not len(start_logits) == len(end_logits) == len(offsets):
        raise ValueError(f"{len(start_logits)} start, {len(end_logits)} end logit rows and "
                         f"{len(offsets)} offset rows: one of each per window")
    if n_best < 1 or max_answer_tokens < 1:
        raise ValueError(f"n_best ({n_best}) and max_answer_tokens ({max_answer_tokens}) must "
                         "be at least 1")
    best = None
    for window, (starts, ends, spans) in enumerate(zip(start_logits, end_logits, offsets)):
        n = len(spans)
        starts, ends = starts[:n].float(), ends[:n].float()
        start_values, end_values = starts.tolist(), ends.tolist()
        for i in starts.topk(min(n_best, n)).indices.tolist():
            for j in ends.topk(min(n_best, n)).indices.tolist():
                if spans[i] is None or spans[j] is None or j < i or j - i + 1 > max_answer_tokens:
                    continue
                score = start_values[i] + end_values[j]
                if best is None or score > best.score:
                    best = Span(window, i, j, score)
    return best


def span_text(context: str, offsets: Sequence[Offset], span: Span | None) -> str:
    """The context's characters from token ``span.start``'s first to ``span.end``'s last."""
    if span is None:
        return ""
    return context[offsets[span.start][0]:offsets[span.end][1]]


def predicted_answers(features: QAFeatures, start_logits: Sequence[torch.Tensor],
                      end_logits: Sequence[torch.Tensor]) -> dict[str, str]:
    """Question id -> answer text, from the logits of every window of ``features``."""
    if not len(start_logits) == len(end_logits) == len(features):
        raise ValueError(f"{len(start_logits)} start and {len(end_logits)} end logit rows for "
                         f"{len(features)} windows")
    answers = {}
    for example, windows in features.windows_of().items():
        spans = [features.offsets[w] for w in windows]
        span = best_span([start_logits[w] for w in windows], [end_logits[w] for w in windows],
                         spans)
        context = features.examples[example].context
        answers[features.examples[example].id] = "" if span is None else \
            span_text(context, spans[span.window], span)
    return answers


def squad_scores(features: QAFeatures, start_logits: Sequence[torch.Tensor],
                 end_logits: Sequence[torch.Tensor]) -> dict[str, float]:
    """Exact match and F1 (fractions) of the predicted answers against every gold answer."""
    references = {e.id: e.answers for e in features.examples}
    return squad_metrics(predicted_answers(features, start_logits, end_logits), references)


def question_f1(features: QAFeatures, start_logits: Sequence[torch.Tensor],
                end_logits: Sequence[torch.Tensor]) -> list[float]:
    """The F1 of every question of ``features`` (in the order of its examples): the values that
    :func:`squad_scores` averages, for comparisons paired over questions."""
    references = {e.id: e.answers for e in features.examples}
    predictions = predicted_answers(features, start_logits, end_logits)
    return [f1 for _, f1 in squad_question_scores(predictions, references)]
