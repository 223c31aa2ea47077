import math

import numpy as np
import pytest

from flatcomp.stats import bootstrap_difference, detectable_effect, paired_difference, verdict


def test_the_interval_is_students_t_over_the_paired_differences():
    d = paired_difference([0.82, 0.85, 0.80], [0.80, 0.81, 0.79])
    diffs = [0.02, 0.04, 0.01]
    mean = sum(diffs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 2)
    assert d.mean == pytest.approx(mean)
    assert d.half_width == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)  # t(0.975, 2)
    assert d.pairs == 3 and not d.excludes_zero  # t(0.975, 2) = 4.3: three pairs are few
    assert d.describe() == f"+{100 * mean:.1f} ± {100 * d.half_width:.1f} points (95% CI, 3 pairs)"


def test_pairing_removes_what_the_pairs_share():
    # large spread between pairs, constant difference within them: a tight interval
    d = paired_difference([0.5, 0.7, 0.9], [0.48, 0.69, 0.89])
    assert d.mean == pytest.approx(0.04 / 3) and d.half_width < 0.02


def test_pairs_without_spread_have_no_interval():
    d = paired_difference([0.5, 0.75], [0.25, 0.5])  # both differ by exactly 0.25
    assert d.half_width is None and not d.excludes_zero
    assert d.describe() == "+25.0 points (2 pairs without spread, no interval)"
    assert verdict(d) == "no verdict (2 pairs; the rule needs 3)"
    same = paired_difference([0.5, 0.75, 0.6], [0.25, 0.5, 0.35])
    assert verdict(same) == "inconclusive (the pairs differ by the same amount: no interval)"


def test_consistent_pairs_exclude_zero():
    assert paired_difference([0.82, 0.85, 0.80], [0.80, 0.825, 0.785]).excludes_zero


def test_an_interval_across_zero_does_not_exclude_it():
    d = paired_difference([0.80, 0.78], [0.79, 0.80])
    assert not d.excludes_zero


def test_one_pair_has_no_interval():
    d = paired_difference([0.9], [0.8])
    assert d.half_width is None and not d.excludes_zero
    assert d.describe() == "+10.0 points (1 pair, no interval)"


@pytest.mark.parametrize("a, b", [([], []), ([0.1, 0.2], [0.1])])
def test_unpaired_input_is_refused(a, b):
    with pytest.raises(ValueError, match="equally long"):
        paired_difference(a, b)


def test_the_verdict_rule():
    up = paired_difference([0.82, 0.85, 0.80], [0.80, 0.825, 0.785])
    assert verdict(up) == "reproduced" and verdict(up, paper_sign=-1) == "contradicted"
    wide = paired_difference([0.82, 0.85, 0.80], [0.80, 0.81, 0.79])
    effect = detectable_effect(wide)
    assert effect > wide.half_width  # power 80% needs more than the interval's half-width
    assert verdict(wide) == f"inconclusive (this design detects differences of about " \
        f"{100 * effect:.1f} points or more)"
    assert verdict(paired_difference([0.9], [0.8])) == "no verdict (one pair; the rule needs 3)"
    # two pairs that agree perfectly still give no verdict: a t interval with one degree of
    # freedom, and a bootstrap narrower than the spread of two seeds
    assert verdict(paired_difference([0.9, 0.8], [0.7, 0.61])) == \
        "no verdict (2 pairs; the rule needs 3)"
    with pytest.raises(ValueError, match="paper_sign"):
        verdict(up, paper_sign=0)


def test_the_verdict_says_how_the_papers_size_compares():
    up = paired_difference([0.82, 0.85, 0.80], [0.80, 0.825, 0.785])  # about +2 points
    low, high = up.limits()
    assert verdict(up, paper=0.02) == "reproduced; the paper's size is within our interval"
    assert verdict(up, paper=high + 0.01) == "reproduced; smaller than the paper's"
    assert verdict(up, paper=low / 2) == "reproduced; larger than the paper's"
    wide = paired_difference([0.82, 0.85, 0.80], [0.80, 0.81, 0.79])
    assert verdict(wide, paper=0.5).endswith("or more); smaller than the paper's")
    assert verdict(up) == "reproduced"  # no number from the paper: the sign only


def _mean_pair(values):
    """A pair whose difference is the mean of ``values`` over the rows drawn."""
    values = np.asarray(values, dtype=float)
    return len(values), lambda index: float(values.mean() if index is None else values[index].mean())


def test_the_bootstrap_is_seeded_and_centred_on_the_observed_mean():
    rng = np.random.default_rng(1)
    pairs = [_mean_pair(rng.normal(0.02, 0.3, 400)) for _ in range(3)]
    d = bootstrap_difference(pairs)
    assert d.method == "bootstrap" and d.pairs == 3
    assert d.mean == pytest.approx(np.mean([f(None) for _, f in pairs]))
    low, high = d.limits()
    assert low < d.mean < high
    assert bootstrap_difference(pairs).bounds == d.bounds  # same seed, same interval
    # about the standard error of the mean of 1,200 rows of sd 0.3 (plus the pairs' spread)
    assert 0.005 < d.standard_error < 0.03


def test_the_bootstrap_sees_the_noise_of_the_dev_rows():
    """Three pairs with the same mean: the t interval has no spread to measure, the bootstrap
    still sees that each mean comes from 50 noisy rows."""
    rows = np.r_[np.ones(26), -np.ones(24)] * 0.5  # mean +0.02, sd 0.5
    pairs = [_mean_pair(rows) for _ in range(3)]
    assert paired_difference([0.02] * 3, [0.0] * 3).half_width is None
    d = bootstrap_difference(pairs)
    assert d.limits()[0] < 0 < d.limits()[1] and not d.excludes_zero
    assert verdict(d).startswith("inconclusive (this design detects")
    assert "bootstrap CI" in d.describe()


def test_a_clear_bootstrap_difference_is_reproduced():
    pairs = [_mean_pair(np.full(200, 0.03) + 0.001 * np.arange(200) % 0.01) for _ in range(3)]
    assert verdict(bootstrap_difference(pairs)) == "reproduced"


def test_the_bootstrap_needs_a_pair():
    with pytest.raises(ValueError, match="at least one pair"):
        bootstrap_difference([])
