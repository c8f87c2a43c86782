"""Recording a run as crashed: the run, the tasks it left open, and the report to the team.

A run whose process died cannot close its own task runs; left alone, the UI would show a
stage of a crashed run as Running for ever. Both places that find such a run (the run's own
lifeline, ``flows.pipeline._abandon``, and ``lessonflow schedule`` starting again,
``flows.serve.recover_crashed_runs``) record it here, so the two cannot drift apart.
"""

from __future__ import annotations

from flows import notify

UNFINISHED = ("RUNNING", "PENDING", "CANCELLING", "SCHEDULED")


def record(client, flow_run_id, reason: str) -> None:
    """Mark the flow run and each of its unfinished task runs Crashed, then report the run."""
    from prefect.client.schemas.filters import (
        FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterState, TaskRunFilterStateType,
    )
    from prefect.states import Crashed

    client.set_flow_run_state(flow_run_id, Crashed(message=reason), force=True)
    open_tasks = client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(state=TaskRunFilterState(type=TaskRunFilterStateType(any_=list(UNFINISHED)))))
    for task_run in open_tasks:
        client.set_task_run_state(task_run.id, Crashed(message=reason), force=True)
    notify.report_run(client.read_flow_run(flow_run_id), "Crashed", {}, reason)
