"""Serving the pipeline flow on a schedule, with a local Prefect server when none is configured.

A schedule needs a Prefect server that outlives one run (Prefect's throw-away "ephemeral" server
does not); users without one get a local server started here, stopped when serving stops (or
killed with it, ``flows.lifeline``). A schedule left alone for weeks also needs: one run at a
time (``COLLISIONS``: a run triggered while another runs waits in the queue), runs of a killed
schedule shown as crashed rather than running forever (``recover_crashed_runs``, at start), and
a word when nobody will hear of failures.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from flows import checkout, crashed, lifeline, notify

SERVER_STARTUP_S = 180
# One run at a time; a run triggered (by the schedule or by hand) while another runs waits for it:
# DVC skips what the first run built, so the wait costs little, and a run someone asked for is never dropped.
# The server enforces it, holding the newcomer in state AwaitingConcurrencySlot; no runner limit is set
# besides, since a runner at its limit never asks for the run, which then shows as Late.
COLLISIONS = ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
UNFINISHED = ("RUNNING", "PENDING", "CANCELLING")


def _free_port(preferred: int = 4200) -> int:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(api_url: str, server: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited with {server.returncode} while starting")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=5):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"the Prefect server did not answer at {api_url} within {timeout:.0f} s")


@contextmanager
def prefect_server() -> Iterator[str]:
    """Yield the UI address of the configured Prefect API, or of a local server started for the duration."""
    configured = get_current_settings().api.url
    if configured:
        yield configured.removesuffix("/api")
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    prefect = Path(sys.executable).parent / "prefect"
    # The UI asks its API at PREFECT_UI_API_URL, which otherwise says port 4200 whatever port the server has.
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env={**os.environ, "PREFECT_UI_API_URL": f"{url}/api"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=lifeline.die_with_parent)
    try:
        _wait_healthy(f"{url}/api", server, SERVER_STARTUP_S)
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
            yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def recover_crashed_runs(root: Path, name: str) -> None:
    """Runs of this checkout under deployment ``name`` left running by a killed schedule: recorded as crashed.

    Only this checkout's runs (their ``root`` parameter): another checkout may serve a deployment
    of the same name on the same server, and its runs are alive. A run is only taken for dead when
    no process holds the checkout (``flows.checkout``); its open tasks are closed with it.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType,
    )

    if (busy := checkout.holder(root)) is not None:
        print(f"{root} is held by {busy}: its runs are left as they are", flush=True)
        return
    reason = "its serving process was killed during the run (found when lessonflow schedule started again)"
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(UNFINISHED)))),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])))
        for run in runs:
            if run.parameters.get("root") != str(root):
                continue  # another checkout's run: that checkout's schedule answers for it
            crashed.record(client, run.id, reason)
            print(f"run {run.name} of lessonflow/{name} was left running by a killed schedule: marked crashed", flush=True)


def serve(cron: str, *, name: str, max_parallel: int, root: Path, push: bool = False, record: bool = True) -> None:
    """Run the pipeline on ``cron`` until interrupted; each run re-downloads the live sources."""
    from flows.pipeline import pipeline

    root = root.resolve()
    if not notify.channel(root):
        print("Failed runs are reported nowhere: set orchestration.notify in params.yaml (a webhook URL or a "
              f"Prefect notification block) or {notify.ENV}", flush=True)
    os.environ[lifeline.SERVED_BY_ENV] = str(os.getpid())
    with prefect_server() as ui:
        recover_crashed_runs(root, name)
        print(f"Prefect UI: {ui}  (runs of deployment 'lessonflow/{name}', schedule '{cron}')", flush=True)
        pipeline.serve(name=name, cron=cron, global_limit=COLLISIONS,
                       parameters={"refresh_sources": True, "max_parallel": max_parallel,
                                   "push": push, "record": record, "root": str(root)})
