"""Every lesson's headline metric at two revisions, from ``dvc metrics diff``, and its verdict against the tutorial.

Used by ``lessonflow compare``, by the report's "since the last commit" section and by the
flow's results table (light to import: no plotting, no torch).
A lesson's headline is the first of ``HEADLINE_METRICS`` its ``metrics.json`` has, so new
lesson kinds need no change here; a change of data source is flagged, never mixed silently.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from tabulate import tabulate

from lessonflow.seeds import KEY as SEEDS_KEY
from lessonflow.seeds import significance

# In order of preference. Accuracy for classifiers, then the error of regressions and
# reconstructions, a translation's BLEU, the NumPy RNN's next-letter accuracy, then a training
# loss for lessons that report nothing held out. The dotted keys
# are a training summary's (DVCLive nests them by split), read flattened by the flow's stage table:
# there the held-out split is the one to show.
HEADLINE_METRICS = ("test_accuracy", "accuracy", "val.accuracy", "test_mse", "test_rmse", "mse", "rmse",
                    "test_bleu", "next_char_accuracy", "test_loss", "best_val_loss", "val.loss", "final_loss", "loss")
# Bookkeeping numbers that are never a lesson's result (nor is any timing, ``*_seconds``).
NOT_RESULTS = {"epochs", "seed", "step", "reference_accuracy", "val_samples", "test_samples", "train_samples",
               "test_days", "best_epoch", "iterations", "grid_points",
               "model.file_bytes", "model.parameters", "model.outputs"}  # a train log's model facts, flattened
WORKSPACE = "workspace"
# Our accuracy within half a percentage point of the tutorial's "matches" it: the spread that
# re-running a tutorial with another seed typically gives on MNIST-sized test sets.
TOLERANCE = 0.005
STAND_IN_DATA = {"embedded": "sample data", "synthetic": "synthetic data"}  # data_source -> what the verdict adds
LEGEND = "new / removed: no metrics at the other revision (not built there, or not in the local DVC cache)"


def read_metrics(path: Path) -> dict[str, Any]:
    """A ``metrics.json``, or nothing for a lesson or ensemble not built yet."""
    return json.loads(path.read_text()) if path.is_file() else {}


def headline(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The metric a lesson is judged by: a preferred one, else its first numeric result (sorted by name)."""
    numeric = {key: value for key, value in metrics.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool)
               and key not in NOT_RESULTS and not key.endswith("_seconds") and not key.startswith(f"{SEEDS_KEY}.")}
    for key in HEADLINE_METRICS:
        if key in numeric:
            return key, float(numeric[key])
    fallback = min(numeric, default=None)
    return None if fallback is None else (fallback, float(numeric[fallback]))


def verdict(result: tuple[str, float] | None, reference_accuracy: float | None, data_source: str | None,
            over_seeds: dict[str, Any] | None = None) -> str:
    """beats / matches / falls short of the tutorial's accuracy, within ``TOLERANCE``, as far as the seeds tell.

    Several seeds: the interval of their mean decides, and one straddling a tolerance bound is
    *inconclusive*. One seed: its gap is shown, and the verdict says it rests on one seed. Only an
    accuracy is compared with an accuracy; a result on stand-in data (the embedded sample, CIFAR's
    synthetic shapes) says so, since the tutorial measured on the real dataset.
    """
    if result is None:
        return "not built"
    if reference_accuracy is None:
        return "no reference result"
    metric, value = result
    if metric != "test_accuracy":
        return f"not comparable ({metric} vs a reference accuracy)"
    interval = (over_seeds or {}).get("interval")
    if interval:
        low, high = interval["low"] - reference_accuracy, interval["high"] - reference_accuracy
        word = "beats" if low > TOLERANCE else "falls short" if high < -TOLERANCE else \
            "matches" if -TOLERANCE <= low and high <= TOLERANCE else "inconclusive"
        text = (f"{word} (mean {(over_seeds['mean'] - reference_accuracy) * 100:+.1f} pts, "
                f"{interval['confidence']:.0%} interval {low * 100:+.1f} to {high * 100:+.1f}, {over_seeds['seeds']} seeds)")
    else:
        gap = value - reference_accuracy
        word = "matches" if abs(gap) <= TOLERANCE else "beats" if gap > 0 else "falls short"
        text = f"one seed: {word} ({gap * 100:+.1f} pts)"
    return f"{text}, on {STAND_IN_DATA[data_source]}" if data_source in STAND_IN_DATA else text


def judged(metrics: dict[str, Any], reference_accuracy: float | None) -> str:
    """The verdict of an eval log's metrics: what the report, ``lessonflow compare`` and the flow's table show."""
    return verdict(headline(metrics), reference_accuracy, metrics.get("data_source"),
                   metrics.get(SEEDS_KEY))


def higher_is_better(metric: str) -> bool:
    return "accuracy" in metric or "bleu" in metric


def result_id(path: str) -> str | None:
    """``results/<id>/eval/metrics.json`` → lesson id; ``results/ensemble-<name>/metrics.json`` → that id."""
    parts = PurePosixPath(path).parts
    if len(parts) == 4 and parts[0] == "results" and parts[2:] == ("eval", "metrics.json"):
        return parts[1]
    if len(parts) == 3 and parts[0] == "results" and parts[1].startswith("ensemble-") and parts[2] == "metrics.json":
        return parts[1]
    return None


@dataclass(frozen=True)
class Change:
    lesson: str
    metric: str
    old: float | None
    new: float | None
    note: str = ""
    spread: str = ""  # whether the change is beyond the seed spread (``seeds.significance``)
    verdict: str = ""  # against the tutorial, at the newer revision

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old


@dataclass(frozen=True)
class Comparison:
    rev_a: str
    rev_b: str
    changes: list[Change]
    problems: list[str]  # revisions or files DVC could not read, e.g. a commit built before any metrics existed


def compare(rev_a: str = "HEAD", rev_b: str = WORKSPACE, root: Path | None = None) -> Comparison:
    """Headline metrics of every lesson and ensemble at ``rev_a`` and ``rev_b`` (a git revision or the workspace).

    ``root`` defaults to the DVC project around the current directory.
    """
    from dvc.repo import Repo  # heavy import, needed only here

    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    with Repo(str(root) if root else None) as repo:
        if repo.scm.no_commits:
            return Comparison(rev_a, rev_b, [], ["the repository has no commits yet"])
        result = repo.metrics.diff(a_rev=rev_a, b_rev=rev_b, all=True)
    changes = [change for path, metrics in sorted(result.get("diff", {}).items())
               if (lesson := result_id(path)) and (change := _headline_change(lesson, metrics))]
    problems = [f"{rev}: {_describe_error(error)}" for rev, error in result.get("errors", {}).items()
                if not isinstance(error, dict) or any(not _missing(err) for err in error.values())]
    return Comparison(rev_a, rev_b, changes, problems)


def _missing(error: Any) -> bool:
    """A metrics file absent at a revision: its rows already say "new" or "removed"."""
    return "No storage files available" in str(error)


def _headline_change(lesson: str, metrics: dict[str, dict[str, Any]]) -> Change | None:
    newest = {key: values["new"] if values.get("new") is not None else values.get("old")
              for key, values in metrics.items()}
    chosen = headline(newest)
    if chosen is None:
        return None
    values = metrics[chosen[0]]
    source = metrics.get("data_source", {})
    note = ""
    if source.get("old") is not None and source.get("new") is not None and source["old"] != source["new"]:
        note = f"data source changed: {source['old']} → {source['new']}"
    old, new = (_seed_values(metrics, side, values.get(side)) for side in ("old", "new"))
    over_seeds = unflattened({key: value for key, value in newest.items() if key.startswith(f"{SEEDS_KEY}.")})
    return Change(lesson, chosen[0], values.get("old"), values.get("new"), note,
                  "" if note else significance(old, new),
                  "" if lesson.startswith("ensemble-")
                  else judged({**newest, SEEDS_KEY: over_seeds.get(SEEDS_KEY)}, newest.get("reference_accuracy")))


def _seed_values(metrics: dict[str, dict[str, Any]], side: str, headline_value: float | None) -> list[float]:
    """One revision's per-seed values of the headline, from flattened metrics; its one value when it kept no spread."""
    prefix = f"{SEEDS_KEY}.per_seed."
    found = [values[side] for key, values in metrics.items() if key.startswith(prefix) and values.get(side) is not None]
    return [float(value) for value in found] or ([] if headline_value is None else [float(headline_value)])


def unflattened(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` → ``{"a": {"b": 1}}``: DVC's metrics diff flattens the nested blocks of a metrics file."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        target = nested
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return nested


def _describe_error(error: Any) -> str:
    if isinstance(error, dict):
        return "; ".join(f"{path}: {err}" for path, err in sorted(error.items()) if not _missing(err))
    return str(error)


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _delta(change: Change) -> str:
    if change.old is None:
        return "new"
    if change.new is None:
        return "removed"
    return delta_text(change.metric, change.delta)


def delta_text(metric: str, delta: float) -> str:
    """``=``, or the signed change and whether it is for the better."""
    if abs(delta) < 5e-7:
        return "="
    better = (delta > 0) == higher_is_better(metric)
    return f"{delta:+.4f} ({'better' if better else 'worse'})"


def headers(comparison: Comparison) -> list[str]:
    return ["lesson", "metric", comparison.rev_a, comparison.rev_b, "change", "seed spread",
            f"verdict at {comparison.rev_b}", "note"]


def rows(comparison: Comparison) -> list[list[str]]:
    return [[c.lesson, c.metric, _number(c.old), _number(c.new), _delta(c), c.spread, c.verdict, c.note]
            for c in comparison.changes]


def table(comparison: Comparison, markdown: bool = False) -> str:
    """The comparison as a plain-text table for a terminal, or GitHub Markdown for a pull request."""
    if not comparison.changes:
        text = "No lesson metrics at either revision."
    else:
        text = tabulate(rows(comparison), headers=headers(comparison), tablefmt="github" if markdown else "simple",
                        disable_numparse=True)
    notes = [f"{'- ' if markdown else '! '}{problem}" for problem in comparison.problems]
    if any(c.old is None or c.new is None for c in comparison.changes):
        notes.append(f"{'- ' if markdown else '  '}{LEGEND}")
    return "\n".join([text, *(["", *notes] if notes else [])]) + "\n"
