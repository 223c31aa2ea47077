"""Paired differences with a confidence interval: the book's way of comparing two arms.

Two arms that share everything but one choice (a seed, a task, a target, the same start) form a
pair, and the comparison is the mean of the per-pair differences d_i = a_i - b_i. Its confidence
interval is Student's t interval (Student, 1908)::

    mean(d) +- t_{(1 + c) / 2, n - 1} * sd(d) / sqrt(n)

It needs at least two pairs that do not all differ by the same amount; otherwise (one pair, or
pairs without spread, whose t interval would have zero width) the difference is reported without
an interval.

Where each pair was scored on the same dev rows and its records keep the prediction for every
row, :func:`bootstrap_difference` also resamples the rows: a two-level (hierarchical) bootstrap
(Davison & Hinkley, 1997, section 3.8) that draws the pairs with replacement, then within each
drawn pair the dev rows with replacement, the same rows for both arms, and recomputes the mean
difference; the interval is the percentile interval of those resamples. It sees the noise of a
finite dev set that the t interval over a few seeds can miss.

The verdict rule every chapter uses (:func:`verdict`), for a claim that says which way the
difference goes:

    no verdict     fewer than :data:`MIN_PAIRS` pairs (a t interval over two pairs has one degree
                   of freedom, and a bootstrap over two pairs is narrower than their spread);
    reproduced     the interval excludes 0 on the paper's side;
    contradicted   the interval excludes 0 on the other side;
    inconclusive   otherwise, with the smallest effect the design could have detected: with 80%
                   power at the 5% level, (t_{0.975, n-1} + t_{0.8, n-1}) * sd(d) / sqrt(n)
                   (a standard power approximation for the paired t test).

Beside the sign, the size: where the paper gives a number, the verdict says whether it lies
within our interval, or whether our interval lies wholly below it ("smaller than the paper's")
or above it ("larger than the paper's").
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Callable, Hashable

import numpy as np
from scipy import stats


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over ``pairs`` pairs; ``half_width`` of the ``confidence`` interval (None for
    a single pair, or pairs that all differ by the same amount)."""

    mean: float
    half_width: float | None
    pairs: int
    confidence: float = 0.95
    standard_error: float | None = None
    bounds: tuple[float, float] | None = None  # a bootstrap's percentile interval (asymmetric)

    @property
    def method(self) -> str:
        """'bootstrap' (over pairs and dev rows) or 't' (over pairs)."""
        return "bootstrap" if self.bounds is not None else "t"

    def limits(self) -> tuple[float, float] | None:
        """(low, high) of the interval, or None without one."""
        if self.bounds is not None:
            return self.bounds
        if self.half_width is None:
            return None
        return self.mean - self.half_width, self.mean + self.half_width

    @property
    def excludes_zero(self) -> bool:
        """The interval lies on one side of zero (False when there is no interval)."""
        limits = self.limits()
        return limits is not None and (limits[0] > 0 or limits[1] < 0)

    def interval(self, scale: float = 100.0) -> str:
        """'-1.2 to +0.4' (times ``scale``), or '-' without an interval."""
        limits = self.limits()
        if limits is None:
            return "-"
        return f"{scale * limits[0]:+.1f} to {scale * limits[1]:+.1f}"

    def describe(self, scale: float = 100.0, unit: str = "points") -> str:
        """'+1.2 ± 0.8 points (95% CI, 3 pairs)', '+1.2 points (95% bootstrap CI -0.1 to +2.6,
        3 pairs)', or '+1.2 points (1 pair, no interval)'."""
        mean = f"{scale * self.mean:+.1f}"
        if self.bounds is not None:
            return (f"{mean} {unit} ({100 * self.confidence:.0f}% bootstrap CI "
                    f"{self.interval(scale)}, {self.pairs} pairs)")
        if self.half_width is None:
            pairs = "1 pair" if self.pairs == 1 else f"{self.pairs} pairs without spread"
            return f"{mean} {unit} ({pairs}, no interval)"
        return (f"{mean} ± {scale * self.half_width:.1f} {unit} "
                f"({100 * self.confidence:.0f}% CI, {self.pairs} pairs)")


def pairs_of(records: list[dict], arm: Callable[[dict], str], arms: tuple[str, str],
             key: Callable[[dict], Hashable]) -> list[tuple[dict, dict]]:
    """(record of ``arms[0]``, record of ``arms[1]``) for each ``key`` (a task and a seed, and
    what else the comparison holds fixed) that has both, in key order; other arms are ignored."""
    by = {(key(r), arm(r)): r for r in records if arm(r) in arms}
    first, second = arms
    keys = list(dict.fromkeys(k for k, _ in by))
    try:
        keys.sort()
    except TypeError:  # keys of mixed types: a fixed order all the same
        keys.sort(key=repr)
    return [(by[k, first], by[k, second]) for k in keys if (k, first) in by and (k, second) in by]


def paired_difference(a: list[float], b: list[float],
                      confidence: float = 0.95) -> PairedDifference:
    """The mean of a_i - b_i and its t interval; ``a`` and ``b`` are paired by position."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired_difference needs two equally long, non-empty lists of paired "
                         f"values; got {len(a)} and {len(b)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    d = [x - y for x, y in zip(a, b)]
    if len(d) == 1 or statistics.stdev(d) == 0:
        return PairedDifference(statistics.fmean(d), None, len(d), confidence)
    t = float(stats.t.ppf((1 + confidence) / 2, len(d) - 1))
    se = statistics.stdev(d) / math.sqrt(len(d))
    return PairedDifference(statistics.fmean(d), t * se, len(d), confidence, se)


RowDifference = Callable[[np.ndarray | None], float]


def bootstrap_difference(pairs: list[tuple[int, RowDifference]], resamples: int = 1000,
                         confidence: float = 0.95, seed: int = 0) -> PairedDifference:
    """The mean over ``pairs`` of each pair's difference, with the two-level bootstrap interval
    of the module docstring. A pair is ``(rows, difference)``: ``difference(None)`` is its value
    on all its dev rows, ``difference(index)`` on the rows ``index`` (an array of row numbers
    drawn from ``range(rows)``, the same for both arms). Seeded: the same pairs give the same
    interval."""
    if not pairs:
        raise ValueError("bootstrap_difference needs at least one pair")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    observed = statistics.fmean(difference(None) for _, difference in pairs)
    means = []
    for _ in range(resamples):
        drawn = rng.integers(0, len(pairs), len(pairs))
        means.append(statistics.fmean(pairs[i][1](rng.integers(0, pairs[i][0], pairs[i][0]))
                                      for i in drawn))
    low, high = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return PairedDifference(observed, None, len(pairs), confidence,
                            float(np.std(means, ddof=1)), (float(low), float(high)))


def detectable_effect(d: PairedDifference, power: float = 0.8) -> float | None:
    """The smallest true difference the design finds with probability ``power`` at its
    confidence level (None for a single pair; for a bootstrap, the normal approximation with
    its standard error)."""
    if d.standard_error is None:
        return None
    if d.method == "bootstrap":
        return (float(stats.norm.ppf((1 + d.confidence) / 2)) + float(stats.norm.ppf(power))) \
            * d.standard_error
    df = d.pairs - 1
    return (float(stats.t.ppf((1 + d.confidence) / 2, df)) + float(stats.t.ppf(power, df))) \
        * d.standard_error


MIN_PAIRS = 3  # the fewest pairs a verdict rests on


def verdict(d: PairedDifference, paper_sign: int = 1, scale: float = 100.0,
            unit: str = "points", paper: float | None = None) -> str:
    """'no verdict (...)', 'reproduced', 'contradicted' or 'inconclusive (...)' for a claim that
    the difference has the sign ``paper_sign`` (+1 or -1), and, given the paper's own difference
    ``paper`` (in the same units as ``d``), how its size compares (:func:`size_against`); see the
    module docstring."""
    if paper_sign not in (1, -1):
        raise ValueError(f"paper_sign must be +1 or -1, got {paper_sign}")
    if d.pairs < MIN_PAIRS:
        pairs = "one pair" if d.pairs == 1 else f"{d.pairs} pairs"
        return f"no verdict ({pairs}; the rule needs {MIN_PAIRS})"
    size = size_against(d, paper)
    if d.excludes_zero:
        return ("reproduced" if d.mean * paper_sign > 0 else "contradicted") + size
    effect = detectable_effect(d)
    if effect is None:
        return "inconclusive (the pairs differ by the same amount: no interval)" + size
    return (f"inconclusive (this design detects differences of about {scale * effect:.1f} "
            f"{unit} or more)" + size)


def size_against(d: PairedDifference, paper: float | None) -> str:
    """'; the paper's size is within our interval', '; smaller than the paper's' (our interval
    lies below the paper's number), '; larger than the paper's', or '' (no number or no
    interval)."""
    limits = d.limits()
    if paper is None or limits is None:
        return ""
    low, high = limits
    if high < paper:
        return "; smaller than the paper's"
    if low > paper:
        return "; larger than the paper's"
    return "; the paper's size is within our interval"
