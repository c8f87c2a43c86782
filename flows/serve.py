"""Serving the pipeline flow on a schedule, with a local Prefect server when none is configured.

A schedule needs a Prefect server that outlives one run (Prefect's throw-away "ephemeral" server
does not); users without one get a local server started here, stopped when serving stops.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path

from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

SERVER_STARTUP_S = 180


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
    server = subprocess.Popen([str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"{url}/api", server, SERVER_STARTUP_S)
        with temporary_settings(updates={PREFECT_API_URL: f"{url}/api"}):
            yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


def serve(cron: str, *, name: str, max_parallel: int, root: Path, push: bool = False, record: bool = True) -> None:
    """Run the pipeline on ``cron`` until interrupted; each run re-downloads the live sources."""
    from flows.pipeline import pipeline

    with prefect_server() as ui:
        print(f"Prefect UI: {ui}  (runs of deployment 'lessonflow/{name}', schedule '{cron}')", flush=True)
        pipeline.serve(name=name, cron=cron, parameters={"refresh_sources": True, "max_parallel": max_parallel,
                                                         "push": push, "record": record, "root": str(root.resolve())})
