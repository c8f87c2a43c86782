"""Telling a team that a run failed or crashed, where they will see it.

The channel is ``orchestration.notify`` in params.yaml, or ``LESSONFLOW_NOTIFY`` (which wins,
so a secret webhook need not be committed): an ``http(s)://`` URL receives Slack-compatible
JSON (``text``, plus the same facts as fields under ``lessonflow`` for other receivers); any
other value names a Prefect notification block (``slack-webhook/team``, ``custom-webhook/ops``)
made in the UI or with ``Block.save``. The message says which deployment and run, which stages
failed with their last log lines, and links the run in the Prefect UI.
"""

from __future__ import annotations

import json
import os
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV = "LESSONFLOW_NOTIFY"
LOG_LINES = 15
TIMEOUT_S = 15


@dataclass
class RunReport:
    """What went wrong in one run, in the words a notification carries."""

    state: str  # Failed or Crashed
    deployment: str
    flow_run: str
    checkout: str
    failed_stages: dict[str, str] = field(default_factory=dict)  # stage -> its last log lines
    reason: str = ""  # when no stage is to blame (a crash, invalid params)
    ui_url: str = ""

    @property
    def subject(self) -> str:
        return f"lessonflow: run {self.flow_run} of {self.deployment} {self.state.lower()}"

    def text(self) -> str:
        lines = [f"*{self.subject}*", f"checkout: {self.checkout}"]
        if self.failed_stages:
            lines.append("failed stages: " + ", ".join(self.failed_stages))
        for stage, tail in self.failed_stages.items():
            lines += [f"--- {stage}, last lines:", tail]
        if self.reason:
            lines.append(self.reason)
        if self.ui_url:
            lines.append(f"<{self.ui_url}|open the run in the Prefect UI>")
        return "\n".join(lines)


def channel(root: Path) -> str | None:
    """The configured channel: ``LESSONFLOW_NOTIFY``, else params.yaml's ``orchestration.notify``."""
    from lessonflow.schema import load_orchestration

    return os.environ.get(ENV) or load_orchestration(root / "params.yaml").notify


def send(target: str, report: RunReport) -> None:
    if target.startswith(("http://", "https://")):
        body = json.dumps({"text": report.text(), "lessonflow": asdict(report)}).encode()
        request = urllib.request.Request(target, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return
    from prefect.blocks.core import Block

    Block.load(target).notify(body=report.text(), subject=report.subject)


def tail(text: str, lines: int = LOG_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def report_run(flow_run, state_name: str, failed_stages: dict[str, str], reason: str = "") -> None:
    """Send ``flow_run``'s report to the checkout's channel; a channel that fails is logged, never raised."""
    from prefect.logging import get_logger
    from prefect.utilities.urls import url_for

    logger = get_logger("lessonflow.notify")
    root = Path(flow_run.parameters.get("root") or ".").resolve()
    target = channel(root)
    if not target:
        return
    report = RunReport(state_name, _deployment_name(flow_run), flow_run.name, str(root),
                       {stage: tail(error) for stage, error in failed_stages.items()}, reason,
                       url_for(flow_run) or "")
    try:
        send(target, report)
        logger.info("reported the %s run to %s", state_name.lower(), target.split("?")[0])
    except Exception as err:  # a broken channel must not hide the run's own failure
        logger.error("could not report the run to %s: %s", target.split("?")[0], err)


def _deployment_name(flow_run) -> str:
    if flow_run.deployment_id is None:
        return "a run by hand (lessonflow flow run)"
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(flow_run.deployment_id)
    return f"lessonflow/{deployment.name}"
