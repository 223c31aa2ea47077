"""SQuAD v1.1 questions as BERT windows: token ids, answer-span labels, offsets into the context.

BERT reads a question and a context as one sequence, ``[CLS] question [SEP] context [SEP]``
(Devlin et al., NAACL 2019, Section 4.2). A context longer than the window is cut into windows
of at most ``max_length`` tokens whose context parts overlap by ``doc_stride`` tokens (the fast
tokenizer's ``stride``, as in Hugging Face's ``run_qa.py``; the original ``run_squad.py`` instead
*steps* by ``doc_stride``), with ``truncation="only_second"``: the question is never cut, and is
left-stripped first (a leading space would only shorten the context part).

Every window carries

* the label, start and end token of the first gold answer (Rajpurkar et al., EMNLP 2016: an
  answer is a span of the context), or both at index 0, ``[CLS]``, when the answer does not lie
  wholly inside the window (Devlin et al.'s convention for such windows);
* for each token its ``(start, end)`` characters in the context, or None outside the context
  (question, specials), so that a predicted span maps back to the exact context text
  (:mod:`flatcomp.lab.qa_answers`);
* the index of its question, to gather all windows of a question at evaluation.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import torch

from flatcomp.lab.config import Profile, data_dir
from flatcomp.lab.data import SquadExample, load_squad, pad_rows

CLS_INDEX = 0  # the [CLS] token: the label of a window that lacks the answer
Offset = tuple[int, int] | None


@dataclass(frozen=True)
class QAFeatures:
    """The windows of some SQuAD questions, unpadded (batches pad to their longest window)."""

    input_ids: tuple[tuple[int, ...], ...]
    token_type_ids: tuple[tuple[int, ...], ...]
    start_positions: tuple[int, ...]
    end_positions: tuple[int, ...]
    offsets: tuple[tuple[Offset, ...], ...]      # per window, per token
    example_index: tuple[int, ...]               # per window: its question in ``examples``
    examples: tuple[SquadExample, ...]

    def __len__(self) -> int:
        """The number of windows (a batch is a set of windows)."""
        return len(self.input_ids)

    @property
    def num_questions(self) -> int:
        return len(self.examples)

    def windows_of(self) -> dict[int, list[int]]:
        """Question index -> the indices of its windows, in order."""
        windows: dict[int, list[int]] = defaultdict(list)
        for window, example in enumerate(self.example_index):
            windows[example].append(window)
        return dict(windows)

    def answers_found(self) -> float:
        """The fraction of questions whose first gold answer lies wholly inside some window (the
        rest cannot be answered exactly from any window)."""
        found = {e for e, s in zip(self.example_index, self.start_positions) if s != CLS_INDEX}
        return len(found) / max(1, self.num_questions)

    def collate(self, indices: Sequence[int], pad_id: int = 0) -> dict[str, torch.Tensor]:
        """The windows at ``indices`` padded to the longest, with their answer labels, as
        ``BertForQuestionAnswering`` takes them."""
        return {**pad_rows(self.input_ids, self.token_type_ids, indices, pad_id),
                "start_positions": torch.tensor([self.start_positions[i] for i in indices]),
                "end_positions": torch.tensor([self.end_positions[i] for i in indices])}


def encode_squad(examples: Sequence[SquadExample], tokenizer, max_length: int,
                 doc_stride: int) -> QAFeatures:
    """Every question's windows (see the module docstring). Needs a fast tokenizer (for the
    offsets); ``doc_stride`` must leave room for new context tokens in each window."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer: SQuAD needs the "
                         "character offsets only a fast (Rust) tokenizer returns")
    if not 0 <= doc_stride < max_length // 2:
        raise ValueError(f"doc_stride {doc_stride} must be in [0, max_length / 2) = "
                         f"[0, {max_length // 2}): consecutive windows would barely advance")
    if not examples:
        raise ValueError("no SQuAD examples to encode")
    enc = tokenizer([e.question.lstrip() for e in examples], [e.context for e in examples],
                    truncation="only_second", max_length=max_length, stride=doc_stride,
                    return_overflowing_tokens=True, return_offsets_mapping=True)
    token_types = enc.get("token_type_ids") or [[0] * len(ids) for ids in enc["input_ids"]]
    starts, ends, offsets = [], [], []
    for window, example_index in enumerate(enc["overflow_to_sample_mapping"]):
        sequence_ids = enc.sequence_ids(window)
        window_offsets = tuple(tuple(span) if part == 1 else None
                               for span, part in zip(enc["offset_mapping"][window], sequence_ids))
        start, end = answer_tokens(examples[example_index], window_offsets)
        starts.append(start)
        ends.append(end)
        offsets.append(window_offsets)
    return QAFeatures(tuple(map(tuple, enc["input_ids"])), tuple(map(tuple, token_types)),
                      tuple(starts), tuple(ends), tuple(offsets),
                      tuple(enc["overflow_to_sample_mapping"]), tuple(examples))


def answer_tokens(example: SquadExample, offsets: Sequence[Offset]) -> tuple[int, int]:
    """The first and last token of the example's first gold answer in a window with these
    context ``offsets`` (None outside the context): the first token whose characters end after
    the answer's start, the last whose characters begin before its end. ``(CLS_INDEX,
    CLS_INDEX)`` unless the answer lies wholly inside the window's context."""
    if not example.answers:
        raise ValueError(f"question {example.id!r} has no gold answer to label")
    first = example.answer_starts[0]
    last = first + len(example.answers[0])  # one past the answer's last character
    context = [(i, span) for i, span in enumerate(offsets) if span is not None]
    if not context or context[0][1][0] > first or context[-1][1][1] < last:
        return CLS_INDEX, CLS_INDEX
    start = next(i for i, (_, end) in context if end > first)
    end = next(i for i, (begin, _) in reversed(context) if begin < last)
    return start, end


def squad_features(profile: Profile) -> tuple[QAFeatures, QAFeatures, str | None]:
    """The profile's SQuAD train and eval questions (:func:`flatcomp.lab.data.load_squad`) as
    windows of ``squad_max_length`` tokens overlapping by ``squad_doc_stride``, and the data cut.
    Tokenised once per process for each set of settings."""
    from flatcomp.lab.models import load_tokenizer

    key = json.dumps([profile.model, profile.shipped_data, str(data_dir()),
                      profile.squad_max_length, profile.squad_doc_stride,
                      profile.squad_settings()], sort_keys=True)
    if key not in _FEATURES:
        train, dev, cut = load_squad(profile)
        tokenizer = load_tokenizer(profile)
        _FEATURES.clear()  # one profile's windows at a time: they can be large
        _FEATURES[key] = tuple(encode_squad(rows, tokenizer, profile.squad_max_length,
                                            profile.squad_doc_stride)
                               for rows in (train, dev)) + (cut,)
    return _FEATURES[key]


_FEATURES: dict[str, tuple[QAFeatures, QAFeatures, str | None]] = {}
