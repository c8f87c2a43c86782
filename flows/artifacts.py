"""What a run leaves in the Prefect UI (Artifacts): the stages it ran, and the results it stands on.

``lessonflow-stages`` (markdown): every stage, what happened to it, how long, its headline
metric. ``lessonflow-results`` (table): every lesson and ensemble, failed ones first (with the
one-line cause), then built ones, its headline metric, the change since the previous run's table
and the verdict against the tutorial; its description counts what this run built, failed and
skipped and gives the path of the report and whether this run rebuilt it. Keyed artifacts keep
their history, so the UI shows each run's table in turn.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import Artifact, create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from flows import dvc_stages
from lessonflow.compare import delta_text, headline, judged, read_metrics

STAGES_KEY = "lessonflow-stages"
RESULTS_KEY = "lessonflow-results"


def stage_summary(project: Path, results: list) -> None:
    """Every stage of the run (``flows.pipeline.StageRun``), as a markdown table."""
    metrics = dvc_stages.headline_metrics(project, [result.stage for result in results])
    rows = ["| stage | result | seconds | headline metric |", "|---|---|---:|---|"]
    for result in results:
        result.metric = metrics[result.stage]
        seconds = f"{result.seconds:.1f}" if result.finished else ""
        note = result.metric or (result.error.strip().splitlines() or [""])[-1][:200]
        rows.append(f"| `{result.stage}` | {result.status} | {seconds} | {note} |")
    counts = {status: sum(r.status == status for r in results) for status in dict.fromkeys(r.status for r in results)}
    summary = ", ".join(f"{count} {status}" for status, count in counts.items()) or "no stages selected"
    create_markdown_artifact(markdown=f"# lessonflow run in `{project}`\n\n{summary}\n\n" + "\n".join(rows),
                             key=STAGES_KEY, description=summary)
    get_run_logger().info("stages: %s", summary)


def results_table(project: Path, results: list) -> list[dict]:
    """Every lesson's and ensemble's headline metric now, against the previous run's table; returns the rows.

    A result whose stage failed in this run (``flows.pipeline.StageRun``) shows that, not the value
    an earlier run left on disk.
    """
    from lessonflow.paths import Layout
    from lessonflow.schema import read_params

    layout = Layout(project)
    params = read_params(layout.params)
    report = layout.reports / "report.html"
    previous = _previous_values()
    outcomes = _outcomes(results)
    rows = []
    for name, entry in params.get("lessons", {}).items():
        metrics = read_metrics(layout.eval_log(name) / "metrics.json")
        result = headline(metrics)
        rows.append(_row(name, result, judged(metrics, entry.get("reference_accuracy")),
                         previous, outcomes.get(name)))
    for name in params.get("ensembles", {}):
        metrics = read_metrics(layout.ensemble_log(name) / "metrics.json")
        rows.append(_row(f"ensemble-{name}", headline(metrics), "", previous, outcomes.get(f"ensemble-{name}")))
    rows.sort(key=lambda row: (row["change"] != "failed", row["value"] == ""))  # failed, built, rest; in params order
    counts = {status: sum(_status(outcomes.get(row["result"])) == status for row in rows)
              for status in ("built", "failed", "skipped")}
    built = sum(row["value"] != "" for row in rows)
    report_rebuilt = any(result.stage == "report" and result.changed for result in results)
    if report.is_file():
        where = f"{report} ({'rebuilt by this run' if report_rebuilt else 'from an earlier run'})"
    else:
        where = "not built yet (stage report)"
    this_run = ", ".join(f"{count} {status}" for status, count in counts.items())
    create_table_artifact(table=rows, key=RESULTS_KEY,
                          description=f"this run: {this_run}; {built} of {len(rows)} results built; report: {where}")
    return rows


def _outcomes(results: list) -> dict[str, list]:
    """The stages of this run by the result they build: ``train@x``/``evaluate@x`` → ``x``, ``ensemble-y`` → itself."""
    by_result: dict[str, list] = {}
    for result in results:
        by_result.setdefault(result.stage.partition("@")[2] or result.stage, []).append(result)
    return by_result


def _status(stages: list | None) -> str:
    """built (a stage of it ran), failed (one failed or was blocked by a failure) or skipped."""
    if any(stage.status in ("failed", "blocked") for stage in stages or []):
        return "failed"
    return "built" if any(stage.changed for stage in stages or []) else "skipped"


def _row(name: str, result: tuple[str, float] | None, judged: str, previous: dict, stages: list | None) -> dict:
    metric, value = result if result else ("", None)
    before = previous.get(name) or {}
    if _status(stages) == "failed":
        failure = next(stage for stage in stages if stage.status in ("failed", "blocked"))
        return {"result": name, "metric": metric, "value": "", "change": "failed",
                "verdict": f"failed: {failure.stage}: {failure.cause}"}
    if value is None:
        change = ""
    elif before.get("metric") != metric or before.get("value") in ("", None):
        change = "new"
    else:
        change = delta_text(metric, value - float(before["value"]))
    return {"result": name, "metric": metric, "value": "" if value is None else round(value, 6),
            "change": change, "verdict": judged}


def _previous_values() -> dict[str, dict]:
    """The last ``lessonflow-results`` table on this Prefect server, by result name (empty on the first run)."""
    latest = Artifact.get(RESULTS_KEY)
    if latest is None or not latest.data:
        return {}
    return {row["result"]: row for row in json.loads(latest.data)}
