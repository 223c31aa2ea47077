"""Paired differences with a confidence interval: the book's way of comparing two arms.

Two arms that share everything but one choice (a seed, a task, a target, the same start) form a
pair, and the comparison is the mean of the per-pair differences d_i = a_i - b_i. Its confidence
interval is Student's t interval (Student, 1908)::

    mean(d) +- t_{(1 + c) / 2, n - 1} * sd(d) / sqrt(n)

It needs at least two pairs that do not all differ by the same amount; otherwise (one pair, or
pairs without spread, whose t interval would have zero width) the difference is reported without
an interval.

The verdict rule every chapter uses (:func:`verdict`), for a claim that says which way the
difference goes:

    reproduced     the interval excludes 0 on the paper's side;
    contradicted   the interval excludes 0 on the other side;
    inconclusive   otherwise, with the smallest effect the design could have detected: with 80%
                   power at the 5% level, (t_{0.975, n-1} + t_{0.8, n-1}) * sd(d) / sqrt(n)
                   (a standard power approximation for the paired t test).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over ``pairs`` pairs; ``half_width`` of the ``confidence`` interval (None for
    a single pair, or pairs that all differ by the same amount)."""

    mean: float
    half_width: float | None
    pairs: int
    confidence: float = 0.95
    standard_error: float | None = None

    @property
    def excludes_zero(self) -> bool:
        """The interval lies on one side of zero (False when there is no interval)."""
        return self.half_width is not None and abs(self.mean) > self.half_width

    def interval(self, scale: float = 100.0) -> str:
        """'-1.2 to +0.4' (times ``scale``), or '-' without an interval."""
        if self.half_width is None:
            return "-"
        low, high = self.mean - self.half_width, self.mean + self.half_width
        return f"{scale * low:+.1f} to {scale * high:+.1f}"

    def describe(self, scale: float = 100.0, unit: str = "points") -> str:
        """'+1.2 ± 0.8 points (95% CI, 3 pairs)', or '+1.2 points (1 pair, no interval)'."""
        mean = f"{scale * self.mean:+.1f}"
        if self.half_width is None:
            pairs = "1 pair" if self.pairs == 1 else f"{self.pairs} pairs without spread"
            return f"{mean} {unit} ({pairs}, no interval)"
        return (f"{mean} ± {scale * self.half_width:.1f} {unit} "
                f"({100 * self.confidence:.0f}% CI, {self.pairs} pairs)")


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


def detectable_effect(d: PairedDifference, power: float = 0.8) -> float | None:
    """The smallest true difference the design finds with probability ``power`` at its
    confidence level (None for a single pair)."""
    if d.standard_error is None:
        return None
    df = d.pairs - 1
    return (float(stats.t.ppf((1 + d.confidence) / 2, df)) + float(stats.t.ppf(power, df))) \
        * d.standard_error


def verdict(d: PairedDifference, paper_sign: int = 1, scale: float = 100.0,
            unit: str = "points") -> str:
    """'reproduced', 'contradicted' or 'inconclusive (...)' for a claim that the difference has
    the sign ``paper_sign`` (+1 or -1); see the module docstring."""
    if paper_sign not in (1, -1):
        raise ValueError(f"paper_sign must be +1 or -1, got {paper_sign}")
    if d.excludes_zero:
        return "reproduced" if d.mean * paper_sign > 0 else "contradicted"
    effect = detectable_effect(d)
    if effect is None:
        return ("inconclusive (one pair: no interval)" if d.pairs == 1 else
                "inconclusive (the pairs differ by the same amount: no interval)")
    return (f"inconclusive (this design detects differences of about {scale * effect:.1f} "
            f"{unit} or more)")
