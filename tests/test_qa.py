"""SQuAD's span extraction: windows and their labels, offsets back to the text, the best-span
search, the scores, and a fine-tune of the span head through the one training loop."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import torch

from flatcomp.lab.data import SquadExample, batches, load_squad
from flatcomp.lab.qa_answers import (MAX_ANSWER_TOKENS, Span, best_span, predicted_answers,
                                     squad_scores, span_text)
from flatcomp.lab.qa_features import CLS_INDEX, QAFeatures, encode_squad, squad_features


def example(context: str, answer: str, question: str = "what?", qid: str = "q",
            golds: tuple[str, ...] = ()) -> SquadExample:
    """A question whose first gold answer is the first occurrence of ``answer`` in ``context``."""
    start = context.index(answer)
    answers = [answer, *golds]
    return SquadExample(qid, "title", context, question, answers,
                        [start] + [context.find(g) for g in golds])


def window_text(features: QAFeatures, window: int, start: int, end: int) -> str:
    context = features.examples[features.example_index[window]].context
    offsets = features.offsets[window]
    return context[offsets[start][0]:offsets[end][1]]


def context_span(features: QAFeatures, window: int) -> tuple[int, int]:
    """The characters of the context that a window holds."""
    spans = [s for s in features.offsets[window] if s is not None]
    return spans[0][0], spans[-1][1]


# ---------------------------------------------------------------- windows and labels

def test_a_window_that_cuts_the_answer_labels_cls_and_the_next_holds_it(tokenizer):
    # 100 one-token numbers; "18 19 20 21" lies across the first window's end
    context = " ".join(str(i) for i in range(100))
    features = encode_squad([example(context, "18 19 20 21")], tokenizer, max_length=25,
                            doc_stride=5)
    answer_start = context.index("18 19 20 21")
    answer_end = answer_start + len("18 19 20 21")
    assert len(features) > 3 and set(features.example_index) == {0}
    first_begin, first_end = context_span(features, 0)
    assert first_begin <= answer_start < first_end < answer_end  # the answer is cut
    assert (features.start_positions[0], features.end_positions[0]) == (CLS_INDEX, CLS_INDEX)
    labelled = [w for w in range(len(features)) if features.start_positions[w] != CLS_INDEX]
    assert labelled  # the overlap puts the whole answer into a later window
    for w in range(len(features)):
        begin, end = context_span(features, w)
        inside = begin <= answer_start and answer_end <= end
        assert (w in labelled) == inside
    for w in labelled:
        assert window_text(features, w, features.start_positions[w],
                           features.end_positions[w]) == "18 19 20 21"


def test_windows_overlap_by_the_stride_and_the_question_is_left_stripped(tokenizer):
    context = " ".join(str(i) for i in range(100))
    features = encode_squad([example(context, "50", question="   which number?")], tokenizer,
                            max_length=25, doc_stride=5)
    question = tokenizer("which number?", add_special_tokens=False)["input_ids"]
    for ids in features.input_ids:
        assert len(ids) <= 25
        assert list(ids[1:1 + len(question)]) == question  # no token for the spaces
    context_ids = [[t for t, o in zip(ids, offsets) if o is not None]
                   for ids, offsets in zip(features.input_ids, features.offsets)]
    for left, right in zip(context_ids, context_ids[1:]):
        assert left[-5:] == right[:5]


@pytest.mark.parametrize("context, answer", [
    ("The Eiffel Tower stands in Paris, the capital of France.", "Paris"),
    ("São Paulo is the largest city of Brazil, ahead of Rio.", "São Paulo"),
    ("In 1903 Marie Skłodowska-Curie shared the Nobel Prize in Physics.", "Skłodowska-Curie"),
    ("北京是中国的首都,也是一座古老的城市。", "中国"),
    ("東京は日本の首都です。", "日本の首都です"),
])
def test_offsets_map_the_labelled_span_back_to_the_exact_answer(tokenizer, context, answer):
    features = encode_squad([example(context, answer)], tokenizer, max_length=64, doc_stride=16)
    assert len(features) == 1
    start, end = features.start_positions[0], features.end_positions[0]
    assert start != CLS_INDEX and start <= end
    assert window_text(features, 0, start, end) == answer


def test_tokens_outside_the_context_have_no_offsets(tokenizer):
    features = encode_squad([example("Paris is in France.", "France", question="where?")],
                            tokenizer, max_length=64, doc_stride=16)
    tokens = tokenizer.convert_ids_to_tokens(features.input_ids[0])
    offsets = features.offsets[0]
    assert offsets[0] is None and tokens[0] == "[CLS]"
    sep = [i for i, t in enumerate(tokens) if t == "[SEP]"]
    assert all(offsets[i] is None for i in range(sep[0] + 1))  # [CLS] question [SEP]
    assert offsets[sep[-1]] is None
    assert all(o is not None for o in offsets[sep[0] + 1:sep[-1]])


def test_encoding_refuses_what_it_cannot_do(tokenizer):
    item = example("Paris is in France.", "France")
    with pytest.raises(ValueError, match="doc_stride"):
        encode_squad([item], tokenizer, max_length=64, doc_stride=32)
    with pytest.raises(ValueError, match="no SQuAD examples"):
        encode_squad([], tokenizer, max_length=64, doc_stride=16)

    class Slow:
        is_fast = False

    with pytest.raises(ValueError, match="fast tokenizer"):
        encode_squad([item], Slow(), max_length=64, doc_stride=16)


def test_a_batch_pads_windows_and_carries_the_labels(tokenizer):
    context = " ".join(str(i) for i in range(100))
    features = encode_squad([example(context, "18 19 20 21"), example("Paris is nice.", "Paris")],
                            tokenizer, max_length=25, doc_stride=5)
    batch = features.collate(list(range(len(features))))
    assert batch["input_ids"].shape == (len(features), 25)
    short = len(features) - 1  # the second question's only window
    assert batch["attention_mask"][short].sum() == len(features.input_ids[short]) < 25
    assert batch["start_positions"].tolist() == list(features.start_positions)
    assert sum(len(b["input_ids"]) for b in batches(features, 3, shuffle=True)) == len(features)


# ---------------------------------------------------------------- the best span

def logits(values: dict[int, float], length: int) -> torch.Tensor:
    row = torch.zeros(length)
    for i, v in values.items():
        row[i] = v
    return row


def test_the_best_valid_span_wins_across_windows_and_invalid_ones_never():
    # window 0: [CLS] q q [SEP] c c c c [SEP]; window 1 the same layout
    offsets = [None, None, None, None, (0, 4), (5, 9), (10, 14), (15, 19), None]
    starts = [logits({0: 50, 1: 40, 4: 1, 6: 9}, 9),   # best start [CLS], then the question
              logits({5: 6}, 9)]
    ends = [logits({0: 50, 2: 40, 5: 8, 8: 30}, 9),      # end 5 < start 6; [SEP] at 8
            logits({6: 5, 7: 1}, 9)]
    span = best_span(starts, ends, [offsets, offsets])
    # valid pairs: (4, 5) 1 + 8 = 9, (4, 6/7) 1, (6, 6/7) 9 in window 0; (5, 6) 6 + 5 = 11
    assert span == Span(window=1, start=5, end=6, score=11.0)


def test_padding_beyond_a_window_is_never_chosen():
    offsets = [None, (0, 3), (4, 7), None]
    starts = [torch.tensor([0.0, 1.0, 0.0, 0.0, 99.0, 99.0])]  # two padded positions
    ends = [torch.tensor([0.0, 0.0, 1.0, 0.0, 99.0, 99.0])]
    assert best_span(starts, ends, [offsets]) == Span(0, 1, 2, 2.0)


def test_spans_longer_than_the_limit_are_dropped():
    n = MAX_ANSWER_TOKENS + 3
    offsets = [None] + [(2 * i, 2 * i + 1) for i in range(n - 2)] + [None]
    longest = logits({1: 10}, n), logits({1 + MAX_ANSWER_TOKENS: 10, 2: 1}, n)
    span = best_span([longest[0]], [longest[1]], [offsets])
    assert (span.start, span.end) == (1, 2)  # 31 tokens would score 20
    fits = logits({2: 10}, n), logits({1 + MAX_ANSWER_TOKENS: 10}, n)
    span = best_span([fits[0]], [fits[1]], [offsets])
    assert span.end - span.start + 1 == MAX_ANSWER_TOKENS


def test_no_valid_span_gives_none_and_an_empty_answer():
    offsets = [None, (0, 5), None]
    assert best_span([logits({}, 3)], [logits({}, 3)], [[None, None, None]]) is None
    assert span_text("hello", offsets, None) == ""


@pytest.mark.parametrize("seed", range(5))
def test_the_search_agrees_with_brute_force_on_random_windows(seed):
    """With at most 20 tokens per window the top-20 search sees every pair: it must find the
    best valid pair that an exhaustive search finds, and that pair must be valid."""
    generator = torch.Generator().manual_seed(seed)
    windows = []
    for _ in range(3):
        n = int(torch.randint(4, 21, (1,), generator=generator))
        offsets = [None if torch.rand(1, generator=generator) < 0.3 else (i, i + 1)
                   for i in range(n)]
        windows.append((torch.randn(n, generator=generator), torch.randn(n, generator=generator),
                        offsets))
    starts, ends, offsets = zip(*windows)
    span = best_span(starts, ends, offsets, max_answer_tokens=4)
    valid = [(float(s[i] + e[j]), w, i, j) for w, (s, e, o) in enumerate(windows)
             for i, j in itertools.product(range(len(o)), repeat=2)
             if o[i] is not None and o[j] is not None and i <= j < i + 4]
    if not valid:
        assert span is None
        return
    score, w, i, j = max(valid)
    assert (span.window, span.start, span.end) == (w, i, j)
    assert span.score == pytest.approx(score)


def test_mismatched_logits_are_an_error():
    with pytest.raises(ValueError, match="one of each per window"):
        best_span([torch.zeros(3)], [], [[None, None, None]])


# ---------------------------------------------------------------- answers and their scores

def pointing_logits(features: QAFeatures, wanted: dict[str, str]) -> tuple[list, list]:
    """Logits that make each question's answer the given text (the first window that holds all
    of it)."""
    starts = [torch.zeros(len(ids)) for ids in features.input_ids]
    ends = [torch.zeros(len(ids)) for ids in features.input_ids]
    done = set()
    for w, offsets in enumerate(features.offsets):
        item = features.examples[features.example_index[w]]
        if item.id in done:
            continue
        text = wanted[item.id]
        first = item.context.index(text)
        last = first + len(text)
        tokens = [i for i, o in enumerate(offsets) if o is not None and first <= o[0] < last]
        if tokens and offsets[tokens[0]][0] == first and offsets[tokens[-1]][1] == last:
            starts[w][tokens[0]], ends[w][tokens[-1]] = 10.0, 10.0
            done.add(item.id)
    return starts, ends


def test_answers_are_scored_by_official_exact_match_and_f1(tokenizer):
    questions = [
        # "the Eiffel Tower." normalises to gold "Eiffel Tower": EM 1, F1 1
        example("He saw the Eiffel Tower. It was tall.", "Eiffel Tower", qid="a"),
        # "big red dog" against "red dog barked" (F1 2/3) and "A big red dog!" (EM 1): the max
        example("A big red dog! The red dog barked loudly.", "red dog barked", qid="b",
                golds=("A big red dog!",)),
        # "a cat" against "The cat sat": 1 common of 1 predicted, 2 gold: F1 = 2/3, EM 0
        example("There was a cat. The cat sat on the mat.", "The cat sat", qid="c"),
    ]
    features = encode_squad(questions, tokenizer, max_length=64, doc_stride=16)
    wanted = {"a": "the Eiffel Tower.", "b": "big red dog", "c": "a cat"}
    starts, ends = pointing_logits(features, wanted)
    assert predicted_answers(features, starts, ends) == wanted
    scores = squad_scores(features, starts, ends)
    assert scores["exact_match"] == pytest.approx((1 + 1 + 0) / 3)
    assert scores["f1"] == pytest.approx((1 + 1 + 2 / 3) / 3)


def test_a_question_with_several_windows_gets_one_answer(tokenizer):
    context = " ".join(str(i) for i in range(100))
    features = encode_squad([example(context, "70 71", qid="n")], tokenizer, max_length=25,
                            doc_stride=5)
    starts, ends = pointing_logits(features, {"n": "70 71"})
    assert predicted_answers(features, starts, ends) == {"n": "70 71"}
    assert squad_scores(features, starts, ends) == {"exact_match": 1.0, "f1": 1.0}


# ---------------------------------------------------------------- the span head, trained

def test_the_smoke_qa_model_shares_the_tiny_encoder_and_seeds_its_head(smoke):
    from flatcomp.lab.models import load_model

    qa, other, glue = (load_model(smoke, "squad", 0), load_model(smoke, "squad", 1),
                       load_model(smoke, "mrpc", 0))
    encoder = glue.bert.state_dict()
    for name, tensor in qa.bert.state_dict().items():
        assert torch.equal(tensor, encoder[name]), name
    assert qa.qa_outputs.out_features == 2
    assert not torch.equal(qa.qa_outputs.weight, other.qa_outputs.weight)
    assert torch.equal(qa.qa_outputs.weight, load_model(smoke, "squad", 0).qa_outputs.weight)


def test_shipped_squad_windows_split_by_article(smoke):
    train, dev, cut = squad_features(smoke)
    assert train.num_questions == 118 and dev.num_questions == 46  # 2 of 4 articles each
    assert not {e.title for e in train.examples} & {e.title for e in dev.examples}
    assert len(train) > train.num_questions  # contexts longer than 128 tokens get windows
    assert train.answers_found() == 1.0 and dev.answers_found() == 1.0
    assert "split by article" in cut


def test_a_qa_fine_tune_on_the_smoke_rows_learns(smoke):
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import evaluate, fine_tune

    train, dev, _ = squad_features(smoke)
    untrained = evaluate(load_model(smoke, "squad", 0), dev, "squad", smoke)["f1"]
    result = fine_tune(load_model(smoke, "squad", 0), train, dev, "squad", smoke, "adam", 0,
                       epochs=3, progress=False)
    losses = [h["train_loss"] for h in result.history]
    assert losses[-1] < 0.75 * losses[0]
    assert result.best_score > untrained + 0.02
    assert result.best_score == max(h["f1"] for h in result.history)
    assert {"exact_match", "f1"} <= set(result.history[0])
    assert result.steps == 3 * -(-len(train) // smoke.squad_batch_size)


def test_sam_and_swa_train_the_span_head_under_masks(smoke):
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import fine_tune
    from flatcomp.pruning import magnitude_masks, prunable_weights

    train, dev, _ = squad_features(smoke)
    for optimizer in ("sam", "swa"):
        model = load_model(smoke, "squad", 0)
        masks = magnitude_masks(prunable_weights(model), 0.5)
        assert not any("qa_outputs" in name for name in masks)
        result = fine_tune(model, train, dev, "squad", smoke, optimizer, 0, masks=masks,
                           epochs=2, progress=False)
        params = dict(result.model.named_parameters())
        for name, mask in masks.items():
            assert torch.all(params[name][~mask] == 0), (optimizer, name)
        assert len(result.history) == 2 and result.best_score >= 0


def test_esam_gets_every_windows_span_loss(smoke):
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import closure_maker

    train, _, _ = squad_features(smoke)
    model = load_model(smoke, "squad", 0).eval()
    batch = train.collate(range(8))
    closure = closure_maker("esam")(model, batch, None, None, torch.device("cpu"), False)
    with torch.no_grad():
        per_window = closure()
        assert per_window.shape == (8,)
        assert per_window.mean() == pytest.approx(float(model(**batch).loss), rel=1e-5)


def test_glue_rows_and_squad_windows_do_not_mix(smoke):
    from flatcomp.lab.experiments.core import encoded_task
    from flatcomp.lab.models import load_model
    from flatcomp.lab.train import fine_tune

    squad_train, _, _ = squad_features(smoke)
    _, glue_dev, _ = encoded_task(smoke, "mrpc")
    with pytest.raises(TypeError, match="both must be"):
        fine_tune(load_model(smoke, "squad", 0), squad_train, glue_dev, "squad", smoke)


# ---------------------------------------------------------------- the real dev set

@pytest.fixture
def real_folder():
    value = os.environ.get("FLATCOMP_DATA")
    if not value:
        pytest.skip("FLATCOMP_DATA not set: the small profile's split needs the real dev set")
    return Path(value)


def test_small_splits_the_real_dev_set_by_article_and_subsamples(real_folder):
    from flatcomp.lab.config import SMALL

    train, dev, cut = load_squad(SMALL, real_folder)
    assert len(train) == 2000 and len(dev) == 2192
    assert len({e.title for e in train}) <= 38 and len({e.title for e in dev}) == 10
    assert not {e.title for e in train} & {e.title for e in dev}
    assert "38 articles (8378 questions) to train, 10 (2192) to evaluate" in cut
    assert "2000 of the 8378 training questions" in cut
