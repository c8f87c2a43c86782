"""Each lesson's headline metric over the last commits and recorded runs.

Used by ``lessonflow history`` and by the report's trends section. A revision is a commit of
the current branch or a saved DVC experiment (every flow or scheduled run that changed a
result saves one: ``flows/dvc_stages.save_experiment``). The metrics files are tracked by git
(``cache: false``), so any clone reads them with no build and no pull. A change of data source
(embedded sample → real data) starts a new line instead of being read as a change.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tabulate import tabulate

from lessonflow.compare import delta_text, headline, result_id
from lessonflow.seeds import KEY as SEEDS_KEY

EXPERIMENT_REFS = "refs/exps"


@dataclass(frozen=True)
class Revision:
    sha: str
    label: str  # the short sha and subject of a commit, or an experiment's name
    date: datetime


@dataclass(frozen=True)
class Point:
    revision: Revision
    metric: str
    value: float
    data_source: str | None
    spread: tuple[float, float] | None = None  # the seeds' lowest and highest value, when it trained several


def _git(root: Path, *args: str) -> list[list[str]]:
    out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout
    return [line.split("\0") for line in out.splitlines() if line]


def revisions(root: Path, last: int) -> list[Revision]:
    """The last ``last`` commits and saved experiments together, oldest first (a commit before a run of its second)."""
    commits = [Revision(sha, f"{sha[:7]} {subject}", datetime.fromisoformat(date))
               for sha, date, subject in _git(root, "log", f"-n{last}", "--format=%H%x00%cI%x00%s")][::-1]
    experiments = [Revision(sha, ref.rsplit("/", 1)[-1], datetime.fromisoformat(date))
                   for sha, date, ref in _git(root, "for-each-ref", EXPERIMENT_REFS,
                                              "--format=%(objectname)%00%(committerdate:iso-strict)%00%(refname)")
                   if _is_saved_experiment(ref)]
    return sorted(commits + experiments, key=lambda revision: revision.date)[-last:]


def _is_saved_experiment(ref: str) -> bool:
    """``refs/exps/<sha[:2]>/<sha[2:]>/<name>``; DVC keeps its own working refs (``refs/exps/exec/…``) there too."""
    parts = ref.split("/")
    return len(parts) == 5 and len(parts[2]) == 2


def history(root: Path, last: int = 10, lesson: str | None = None) -> dict[str, list[Point]]:
    """Headline metric of every lesson (or just ``lesson``) at each revision that has one, oldest first."""
    from dvc.repo import Repo  # heavy import, needed only here

    found = revisions(root, last)
    if not found:
        return {}
    with Repo(str(root)) as repo:
        shown = repo.metrics.show(revs=[revision.sha for revision in found], hide_workspace=True)
    points: dict[str, list[Point]] = {}
    for revision in found:
        for path, content in shown.get(revision.sha, {}).get("data", {}).items():
            lesson_id, metrics = result_id(path), content.get("data")
            if not lesson_id or not isinstance(metrics, dict) or lesson not in (None, lesson_id):
                continue
            if best := headline(metrics):
                seeds = metrics.get(SEEDS_KEY) or {}
                spread = (seeds["min"], seeds["max"]) if seeds.get("metric") == best[0] else None
                points.setdefault(lesson_id, []).append(Point(revision, *best, metrics.get("data_source"), spread))
    return dict(sorted(points.items()))


def _change(previous: Point | None, point: Point) -> str:
    if previous is None:
        return ""
    if previous.data_source != point.data_source:
        return f"data source changed: {previous.data_source} → {point.data_source}"
    return delta_text(point.metric, point.value - previous.value)


HEADERS = ["lesson", "revision", "date", "data", "metric", "value", "change"]


def rows(points: dict[str, list[Point]]) -> list[list[str]]:
    return [[lesson, point.revision.label[:48], point.revision.date.strftime("%Y-%m-%d %H:%M"), point.data_source or "",
             point.metric, f"{point.value:.4f}", _change(series[index - 1] if index else None, point)]
            for lesson, series in points.items() for index, point in enumerate(series)]


def table(points: dict[str, list[Point]]) -> str:
    if not points:
        return "No lesson metrics in the revisions looked at (commit a build's dvc.lock and results/ first).\n"
    return tabulate(rows(points), headers=HEADERS, tablefmt="simple", disable_numparse=True) + "\n"
