"""Tests of flatcomp.metrics against values worked out by hand in the comments."""

import math

import numpy as np
import pytest

from flatcomp import metrics as M

# A fixed binary example used by several tests (labels first, then predictions):
#   i:      0  1  2  3  4  5  6
#   label:  1  1  1  1  0  0  0
#   pred:   1  1  1  0  0  0  1
# tp = 3 (i=0,1,2), fn = 1 (i=3), tn = 2 (i=4,5), fp = 1 (i=6)
LABELS = [1, 1, 1, 1, 0, 0, 0]
PREDS = [1, 1, 1, 0, 0, 0, 1]


def test_accuracy_by_hand():
    # correct: tp + tn = 5 out of 7
    assert M.accuracy(PREDS, LABELS) == pytest.approx(5 / 7)
    assert M.accuracy([2, 0, 1], [2, 1, 1]) == pytest.approx(2 / 3)  # multi-class (MNLI)


def test_f1_by_hand():
    # P = tp/(tp+fp) = 3/4, R = tp/(tp+fn) = 3/4, F1 = 2PR/(P+R) = 3/4 = 2*3/(2*3+1+1)
    assert M.f1(PREDS, LABELS) == pytest.approx(3 / 4)


def test_f1_is_of_the_positive_class():
    # labels [1,0,0], preds [1,1,0]: tp=1, fp=1, fn=0 -> P=1/2, R=1 -> F1 = 2/3
    assert M.f1([1, 1, 0], [1, 0, 0]) == pytest.approx(2 / 3)
    # labels [1,1,1,0], preds [1,0,0,0]: tp=1, fp=0, fn=2 -> P=1, R=1/3 -> F1 = 2*(1/3)/(4/3) = 1/2
    assert M.f1([1, 0, 0, 0], [1, 1, 1, 0]) == pytest.approx(1 / 2)
    # all-negative predictions: accuracy 3/4, but tp = 0 so F1 of class 1 is 0 (class 0 ignored)
    assert M.accuracy([0, 0, 0, 0], [0, 0, 0, 1]) == pytest.approx(3 / 4)
    assert M.f1([0, 0, 0, 0], [0, 0, 0, 1]) == 0.0
    # no positive predicted and none true: tp+fp+fn = 0, F1 defined as 0
    assert M.f1([0, 0], [0, 0]) == 0.0


def test_mcc_by_hand():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (3*2 - 1*1) / sqrt(4*4*3*3) = 5/12
    assert M.matthews_corrcoef(PREDS, LABELS) == pytest.approx(5 / 12)


def test_perfect_and_inverted_predictions():
    labels = [0, 1, 1, 0, 1]
    inverted = [1 - y for y in labels]
    assert M.accuracy(labels, labels) == 1.0
    assert M.accuracy(inverted, labels) == 0.0
    assert M.f1(labels, labels) == 1.0
    assert M.f1(inverted, labels) == 0.0  # tp = 0
    assert M.matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert M.matthews_corrcoef(inverted, labels) == pytest.approx(-1.0)  # tp=tn=0: -fp*fn/(fp*fn)


def test_pearson_of_linear_relation_is_one():
    x = [0.0, 1.0, 2.0, 3.5, 5.0]
    assert M.pearson([2 * v + 1 for v in x], x) == pytest.approx(1.0)
    assert M.pearson([-3 * v for v in x], x) == pytest.approx(-1.0)


def test_pearson_by_hand():
    # x = [1,2,3], y = [1,3,2]: means 2, 2; deviations [-1,0,1], [-1,1,0]
    # cov sum = 1 + 0 + 0 = 1; sum sq = 2 and 2 -> r = 1/sqrt(2*2) = 1/2
    assert M.pearson([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    # ranks equal the values here, so Spearman is also 1/2
    assert M.spearman([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)


def test_spearman_of_monotone_nonlinear_relation():
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [math.exp(v) for v in x]  # strictly increasing, not linear
    assert M.spearman(y, x) == pytest.approx(1.0)
    assert M.pearson(y, x) < 0.99


def test_returns_python_floats():
    for fn in (M.accuracy, M.f1, M.matthews_corrcoef, M.pearson, M.spearman):
        assert type(fn(PREDS, LABELS)) is float
    for value in M.glue_metrics("mrpc", PREDS, LABELS).values():
        assert type(value) is float


def test_accepts_numpy_and_torch():
    assert M.matthews_corrcoef(np.array(PREDS), np.array(LABELS)) == pytest.approx(5 / 12)
    torch = pytest.importorskip("torch")
    p = torch.tensor(PREDS, dtype=torch.float32, requires_grad=True)  # needs .detach()
    assert M.accuracy(p, torch.tensor(LABELS)) == pytest.approx(5 / 7)
    assert M.pearson(torch.tensor([[1.0], [2.0], [3.0]]), [1, 3, 2]) == pytest.approx(0.5)


def test_glue_metrics_keys_per_task():
    expected = {
        "cola": {"mcc"}, "sst2": {"accuracy"}, "mnli": {"accuracy"}, "mnli_mm": {"accuracy"},
        "qnli": {"accuracy"}, "rte": {"accuracy"}, "wnli": {"accuracy"},
        "mrpc": {"accuracy", "f1"}, "qqp": {"accuracy", "f1"}, "stsb": {"pearson", "spearman"},
    }
    for task, keys in expected.items():
        assert set(M.glue_metrics(task, PREDS, LABELS)) == keys, task
    got = M.glue_metrics("mrpc", PREDS, LABELS)
    assert got == pytest.approx({"accuracy": 5 / 7, "f1": 3 / 4})
    assert M.glue_metrics("cola", PREDS, LABELS)["mcc"] == pytest.approx(5 / 12)


def test_main_score_and_main_metric():
    assert M.MAIN_METRIC["cola"] == "mcc"
    assert M.MAIN_METRIC["stsb"] == "pearson"
    assert M.MAIN_METRIC["squad"] == "f1"
    for task in ("sst2", "mnli", "mnli_mm", "qnli", "rte", "wnli", "mrpc", "qqp"):
        assert M.MAIN_METRIC[task] == "accuracy"
    assert M.main_score("cola", {"mcc": 0.5}) == 0.5
    assert M.main_score("stsb", {"pearson": 0.9, "spearman": 0.8}) == 0.9
    assert M.main_score("mrpc", {"accuracy": 0.85, "f1": 0.89}) == 0.85
    assert M.main_score("squad", {"exact_match": 0.8, "f1": 0.88}) == 0.88
    with pytest.raises(ValueError, match="pearson"):
        M.main_score("stsb", {"spearman": 0.8})


def test_unknown_task_lists_known_tasks():
    with pytest.raises(ValueError, match="known tasks.*cola"):
        M.glue_metrics("imdb", PREDS, LABELS)
    with pytest.raises(ValueError, match="known tasks.*squad"):
        M.main_score("imdb", {"accuracy": 1.0})


def test_length_mismatch_and_empty_inputs():
    with pytest.raises(ValueError, match="length mismatch"):
        M.accuracy([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="length mismatch"):
        M.glue_metrics("cola", [1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        M.f1([], [])
    with pytest.raises(ValueError, match="empty"):
        M.squad_metrics({}, {})


# ----------------------------------------------------------------------------- SQuAD v1.1

def test_normalize_answer():
    assert M.normalize_answer("The Cat!") == "cat"
    assert M.normalize_answer("an apple, a day") == "apple day"
    assert M.normalize_answer("  Theory   of\tthe\nday. ") == "theory of day"  # 'the' only as a word
    assert M.normalize_answer("A.") == ""


def test_exact_match_takes_max_over_ground_truths():
    assert M.squad_exact_match("the Eiffel Tower", ["Eiffel Tower."]) == 1.0
    assert M.squad_exact_match("Paris", ["London", "paris!", "France"]) == 1.0
    assert M.squad_exact_match("Paris, France", ["Paris", "France"]) == 0.0


def test_f1_partial_overlap_by_hand():
    # normalised: [big, red, dog] vs [red, dog, barked]; common 2 -> P = 2/3, R = 2/3, F1 = 2/3
    assert M.squad_f1("the big red dog", ["red dog barked"]) == pytest.approx(2 / 3)
    # repeated tokens count with multiplicity: [dog, dog] vs [dog]: common 1,
    # P = 1/2, R = 1 -> F1 = 2*(1/2)/(3/2) = 2/3
    assert M.squad_f1("dog dog", ["dog"]) == pytest.approx(2 / 3)
    # no common tokens -> 0, also when both normalise to nothing (official v1.1 script)
    assert M.squad_f1("cat", ["dog"]) == 0.0
    assert M.squad_f1("the", ["a"]) == 0.0


def test_f1_takes_max_over_ground_truths():
    # vs "red dog barked": 2/3 (above); vs "big red dog": 1.0 -> max is 1.0
    assert M.squad_f1("the big red dog", ["red dog barked", "big red dog"]) == pytest.approx(1.0)
    # vs "dog": P = 1/3, R = 1 -> 1/2;  vs "red dog barked": 2/3 -> max 2/3
    assert M.squad_f1("big red dog", ["dog", "red dog barked"]) == pytest.approx(2 / 3)


def test_squad_metrics_averages_and_missing_predictions():
    references = {
        "q1": ["Eiffel Tower"],         # exact: EM 1, F1 1
        "q2": ["red dog barked"],       # "the big red dog": EM 0, F1 2/3
        "q3": ["Paris"],                # missing prediction: EM 0, F1 0
    }
    predictions = {"q1": "the Eiffel tower", "q2": "the big red dog", "extra": "ignored"}
    got = M.squad_metrics(predictions, references)
    assert set(got) == {"exact_match", "f1"}
    assert got["exact_match"] == pytest.approx(1 / 3)            # (1 + 0 + 0) / 3
    assert got["f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)       # = 5/9
    assert all(type(v) is float for v in got.values())


def test_recorded_score_counts_an_undefined_correlation_as_zero():
    from flatcomp.metrics import recorded_score

    assert recorded_score({"best_score": 0.83}) == 0.83
    assert recorded_score({"best_score": float("-inf")}) == 0.0


@pytest.mark.parametrize("task", ["cola", "rte", "stsb", "mrpc", "mnli"])
def test_the_resample_score_is_the_main_metric(task):
    rng = np.random.default_rng(0)
    if task == "stsb":
        y = rng.normal(size=300)
        p = y + rng.normal(size=300)
    else:
        y = rng.integers(0, 2, 300)
        p = np.where(rng.random(300) < 0.7, y, 1 - y)
    assert M.resample_score(task)(p, y) == pytest.approx(M.main_score(task,
                                                                      M.glue_metrics(task, p, y)))


def test_the_resample_score_of_constant_predictions_is_zero_correlation():
    y = np.array([0, 1, 1, 0])
    assert M.resample_score("cola")(np.zeros(4), y) == 0.0
    assert M.resample_score("stsb")(np.ones(4), y.astype(float)) == 0.0
    with pytest.raises(ValueError, match="GLUE task"):
        M.resample_score("squad")


def test_f1_and_mcc_equal_sklearns_bit_for_bit():
    """Written out in numpy (sklearn's import costs every worker process seconds), the two
    binary metrics give sklearn's floats exactly, including the empty-marginal cases."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 600))
        y = (rng.random(n) < rng.random()).astype(int)
        p = np.where(rng.random(n) < rng.random(), y, 1 - y)
        for pred in (p, np.zeros(n, int), np.ones(n, int)):
            assert M.f1(pred, y) == skm.f1_score(y, pred, zero_division=0)
            if len(set(y) | set(pred)) == 2:  # sklearn warns on one class; both give 0 there
                assert M.matthews_corrcoef(pred, y) == skm.matthews_corrcoef(y, pred)
            else:
                assert M.matthews_corrcoef(pred, y) == 0.0


def test_f1_and_mcc_refuse_labels_that_are_not_binary():
    with pytest.raises(ValueError, match=r"labels must be binary.*\[2\]"):
        M.f1([0, 1, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="predictions must be binary"):
        M.matthews_corrcoef([0.5, 1, 0], [0, 1, 0])
