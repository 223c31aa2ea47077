"""Paired differences with a confidence interval: the book's way of comparing two arms.

Two arms that share everything but one choice (a seed, a task, a target, the same start) form a
pair, and the comparison is the mean of the per-pair differences d_i = a_i - b_i. Its confidence
interval is Student's t interval (Student, 1908)::

    mean(d) +- t_{(1 + c) / 2, n - 1} * sd(d) / sqrt(n)

It needs at least two pairs; with one the difference is reported without an interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from scipy import stats


@dataclass(frozen=True)
class PairedDifference:
    """mean(a - b) over ``pairs`` pairs; ``half_width`` of the ``confidence`` interval (None for
    a single pair)."""

    mean: float
    half_width: float | None
    pairs: int
    confidence: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        """The interval lies on one side of zero (False when there is no interval)."""
        return self.half_width is not None and abs(self.mean) > self.half_width

    def describe(self, scale: float = 100.0, unit: str = "points") -> str:
        """'+1.2 ± 0.8 points (95% CI, 3 pairs)', or '+1.2 points (1 pair, no interval)'."""
        mean = f"{scale * self.mean:+.1f}"
        if self.half_width is None:
            return f"{mean} {unit} (1 pair, no interval)"
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
    if len(d) == 1:
        return PairedDifference(d[0], None, 1, confidence)
    t = float(stats.t.ppf((1 + confidence) / 2, len(d) - 1))
    return PairedDifference(statistics.fmean(d), t * statistics.stdev(d) / math.sqrt(len(d)),
                            len(d), confidence)
