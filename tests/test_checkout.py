"""The checkout lock every flow run takes (flows/checkout.py), with real processes and a real SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

HOLD = """
import sys, time
from pathlib import Path
from flows.checkout import hold
with hold(Path(sys.argv[1]), "nightly-20261203T030000Z", print):
    print("holding", flush=True)
    time.sleep(600)
"""


def holding_process(root: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "holding"
    return process


def test_a_second_run_waits_for_the_holder_says_for_whom_and_a_killed_holder_frees_the_checkout(tmp_path):
    from flows.checkout import hold, holder

    assert holder(tmp_path) is None
    process = holding_process(tmp_path)
    assert holder(tmp_path).startswith(f"nightly-20261203T030000Z (pid {process.pid}, since ")
    said, entered = [], threading.Event()

    def second_run() -> None:
        with hold(tmp_path, "flow-run-20261203T031500Z", said.append):
            entered.set()

    waiter = threading.Thread(target=second_run)
    waiter.start()
    time.sleep(2)
    assert not entered.is_set(), "the second run did not wait for the first"
    assert said and f"nightly-20261203T030000Z (pid {process.pid}" in said[0] and "waiting" in said[0], said

    process.send_signal(signal.SIGKILL)  # nothing in the holder gets to clean up
    process.wait()
    waiter.join(timeout=10)
    assert entered.is_set(), "the lock of a killed run was not released"
    assert holder(tmp_path) is None


@pytest.mark.long
def test_recovery_marks_only_this_checkouts_runs_crashed_and_closes_their_tasks(tmp_path, webhook):
    """Two checkouts serve deployments named alike on one server: each recovers only its own runs."""
    from prefect.client.orchestration import get_client
    from prefect.states import Running
    from prefect.testing.utilities import prefect_test_harness

    from flows.pipeline import pipeline, run_stage
    from flows.serve import recover_crashed_runs

    mine, theirs = (tmp_path / name for name in ("mine", "theirs"))
    with prefect_test_harness(server_startup_timeout=240), get_client(sync_client=True) as client:
        deployment = client.create_deployment(flow_id=client.create_flow(pipeline), name="scheduled")
        runs, tasks = {}, {}
        for checkout in (mine, theirs):
            checkout.mkdir()
            (checkout / "params.yaml").write_text(yaml.safe_dump({"orchestration": {"notify": webhook.url}}))
            run = client.create_flow_run_from_deployment(deployment, parameters={"root": str(checkout)})
            client.set_flow_run_state(run.id, Running(), force=True)
            task = client.create_task_run(run_stage, run.id, dynamic_key="0", name="train@mnist-cnn-book")
            client.set_task_run_state(task.id, Running(), force=True)
            runs[checkout], tasks[checkout] = run.id, task.id

        recover_crashed_runs(mine, "scheduled")  # no process holds `mine`: its run was left by a killed schedule

        assert client.read_flow_run(runs[mine]).state.name == "Crashed"
        assert client.read_task_run(tasks[mine]).state.name == "Crashed", "a task of the crashed run is left Running"
        assert client.read_flow_run(runs[theirs]).state.name == "Running", "another checkout's live run was crashed"
        assert client.read_task_run(tasks[theirs]).state.name == "Running"
        (report,) = webhook.wait_for(1)
        assert report["lessonflow"]["state"] == "Crashed" and report["lessonflow"]["checkout"] == str(mine)
