"""What a run leaves in the Prefect UI (Artifacts): the stages it ran, and the results it stands on.

``lessonflow-stages`` (markdown): every stage, what happened to it, how long, its headline
metric. ``lessonflow-results`` (table): every lesson and ensemble, built ones first, its headline
metric, the change since the previous run's table and the verdict against the tutorial; its
description gives the path of the report and whether this run rebuilt it. Keyed artifacts keep
their history, so the UI shows each run's table in turn.
"""

from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import Artifact, create_markdown_artifact, create_table_artifact
from prefect.logging import get_run_logger

from flows import dvc_stages
from lessonflow.compare import delta_text, headline, read_metrics, verdict

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


def results_table(project: Path, report_rebuilt: bool) -> list[dict]:
    """Every lesson's and ensemble's headline metric now, against the previous run's table; returns the rows."""
    from lessonflow.paths import Layout
    from lessonflow.schema import read_params

    layout = Layout(project)
    params = read_params(layout.params)
    report = layout.reports / "report.html"
    previous = _previous_values()
    rows = []
    for name, entry in params.get("lessons", {}).items():
        metrics = read_metrics(layout.eval_log(name) / "metrics.json")
        result = headline(metrics)
        rows.append(_row(name, result, verdict(result, entry.get("reference_accuracy"), metrics.get("data_source")),
                         previous))
    for name in params.get("ensembles", {}):
        metrics = read_metrics(layout.ensemble_log(name) / "metrics.json")
        rows.append(_row(f"ensemble-{name}", headline(metrics), "", previous))
    rows.sort(key=lambda row: row["value"] == "")  # built first, each group in params.yaml's order
    built = sum(row["value"] != "" for row in rows)
    if report.is_file():
        where = f"{report} ({'rebuilt by this run' if report_rebuilt else 'from an earlier run'})"
    else:
        where = "not built yet (stage report)"
    create_table_artifact(table=rows, key=RESULTS_KEY, description=f"{built} of {len(rows)} results built; report: {where}")
    return rows


def _row(name: str, result: tuple[str, float] | None, judged: str, previous: dict) -> dict:
    metric, value = result if result else ("", None)
    before = previous.get(name) or {}
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
