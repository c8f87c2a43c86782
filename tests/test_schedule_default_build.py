"""`lessonflow schedule` on the README's default build: a triggered run finds nothing to rebuild.

Apart from the other schedule tests because it reads the default build, whose file runs last, after
`make run` has made it (tests/conftest.py orders the files).
"""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest
from conftest import BIN, clone, dvc, project_env, run, snapshot
from test_schedule import serve_env, wait_for_ui


def test_schedule_starts_a_local_server_serves_the_flow_and_a_triggered_run_rebuilds_nothing(built_project, tmp_path):
    repo = clone(built_project, tmp_path / "repo")
    before = snapshot(repo)
    env = serve_env(tmp_path / "prefect-home")
    serving = subprocess.Popen([str(BIN / "lessonflow"), "schedule", "--cron", "0 3 * * *", "--name", "test-nightly"],
                               cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ui = wait_for_ui(serving)
        with urllib.request.urlopen(f"{ui}/api/health", timeout=10) as health:
            assert health.status == 200
        client_env = {**env, "PREFECT_API_URL": f"{ui}/api"}
        deployment = "lessonflow/test-nightly"
        deadline = time.monotonic() + 120
        while (inspected := run(repo, str(BIN / "prefect"), "deployment", "inspect", deployment, check=False,
                                env=client_env)).returncode != 0 and time.monotonic() < deadline:
            time.sleep(2)
        assert inspected.returncode == 0, inspected.stdout + inspected.stderr
        assert "0 3 * * *" in inspected.stdout
        assert "'refresh_sources': True" in inspected.stdout

        triggered = run(repo, str(BIN / "prefect"), "deployment", "run", deployment, "--watch",
                        "--watch-timeout", "900", env=client_env, timeout=1000)
        assert "Completed" in triggered.stdout, triggered.stdout
    finally:
        serving.terminate()  # what a service manager sends to stop it
        try:
            serving.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            serving.kill()
            raise

    status = dvc(repo, "status", env=project_env()).stdout
    assert "Data and pipelines are up to date" in status, status
    assert snapshot(repo) == before, "a run with nothing changed rewrote outputs or dvc.lock"
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{ui}/api/health", timeout=5)  # the local server stopped with the schedule
