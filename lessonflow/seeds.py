"""A result over several seeds: each seed's value, their mean and spread, an interval, and whether two runs differ.

One seed's result cannot say whether a change of a point is the recipe or the seed, so a lesson
may train several and its metrics keep the spread beside each seed's value. The interval is
Student's t interval of the mean (few seeds, unknown variance); two runs' per-seed values are
compared with Welch's t-test (unequal variances, as a param edit may change the spread too).
A leaf module besides SciPy, imported only where the numbers are computed.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

WELCH_ALPHA = 0.05  # a change whose Welch p-value is below this is beyond the seed spread
KEY = "over_seeds"  # the block of a train or eval log that holds them
BESIDE = "beside"  # within it: the spread of the metrics a kind weighs against the headline, by name


def spread(metric: str, values: dict[int, float], confidence: float | None) -> dict[str, Any]:
    """``metric`` per seed, with mean, sample standard deviation, min, max and, asked for, the t interval."""
    numbers = list(values.values())
    mean = statistics.fmean(numbers)
    std = statistics.stdev(numbers) if len(numbers) > 1 else 0.0
    found: dict[str, Any] = {"metric": metric, "seeds": len(numbers),
                             "per_seed": {str(seed): round(value, 6) for seed, value in values.items()},
                             "mean": round(mean, 6), "std": round(std, 6),
                             "min": round(min(numbers), 6), "max": round(max(numbers), 6)}
    if confidence is not None and len(numbers) > 1:
        from scipy import stats

        half = stats.t.ppf((1 + confidence) / 2, len(numbers) - 1) * std / math.sqrt(len(numbers))
        found["interval"] = {"confidence": confidence, "method": "student-t",
                             "low": round(mean - half, 6), "high": round(mean + half, 6)}
    return found


def welch(old: list[float], new: list[float]) -> tuple[bool, float] | None:
    """Whether ``new`` differs from ``old`` beyond the seed spread, and Welch's p-value; None with one seed either side."""
    if len(old) < 2 or len(new) < 2:
        return None
    if statistics.stdev(old) == 0 and statistics.stdev(new) == 0:  # no spread at all: any difference is real
        same = statistics.fmean(old) == statistics.fmean(new)
        return (not same, 1.0 if same else 0.0)
    from scipy import stats

    p_value = float(stats.ttest_ind(old, new, equal_var=False).pvalue)
    return p_value < WELCH_ALPHA, p_value


def significance(old: list[float], new: list[float]) -> str:
    """The change between two runs' per-seed values in words, for ``lessonflow compare``."""
    tested = welch(old, new)
    if tested is None:
        return "one seed: spread unknown" if old and new else ""
    beyond, p_value = tested
    return f"{'beyond' if beyond else 'within'} the seed spread (Welch p={p_value:.2g})"


def described(block: dict[str, Any], shown=lambda value: f"{value:.4g}") -> str:
    """Mean ± standard deviation over the seeds, their range, and the interval when there is one, in words."""
    text = (f"mean {shown(block['mean'])} ± {shown(block['std'])} (standard deviation over {block['seeds']} seeds; "
            f"range {shown(block['min'])} to {shown(block['max'])}")
    interval = block.get("interval")
    if interval:
        text += f"; {interval['confidence']:.0%} t interval of the mean {shown(interval['low'])} to {shown(interval['high'])}"
    return text + ")"
