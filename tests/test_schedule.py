"""Scheduled runs: `lessonflow schedule` (flow.serve on a local Prefect server) and the `prefect.yaml` deployments."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, clone, dvc, project_env, project_params, run, snapshot

SERVE_STARTUP_S = 300


def test_every_prefect_yaml_deployment_loads_its_flow_and_its_parameters_validate():
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    from flows.pipeline import pipeline

    deployments = yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]
    assert {deployment["name"] for deployment in deployments} >= {"nightly", "on-demand"}
    for deployment in deployments:
        flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
        assert flow.name == pipeline.name
        flow.validate_parameters(deployment.get("parameters", {}))
        for schedule in deployment.get("schedules") or []:
            CronSchedule(**schedule)  # raises on a malformed cron line or time zone
    nightly = next(deployment for deployment in deployments if deployment["name"] == "nightly")
    assert nightly["parameters"]["refresh_sources"] is True, "a scheduled run must re-check sources that change"


def serve_env(prefect_home: Path) -> dict[str, str]:
    """A user's shell with no Prefect server configured: `lessonflow schedule` has to start its own."""
    env = project_env(PREFECT_HOME=str(prefect_home), LESSONFLOW_THREADS="1")
    for key in [key for key in env if key.startswith("PREFECT_") and key != "PREFECT_HOME"]:
        env.pop(key)
    return env


def wait_for_ui(serving: subprocess.Popen) -> str:
    """The UI address `lessonflow schedule` prints once its server answers and the flow is being served."""
    deadline = time.monotonic() + SERVE_STARTUP_S
    seen = []
    while time.monotonic() < deadline:
        line = serving.stdout.readline()
        if not line and serving.poll() is not None:
            break
        seen.append(line)
        if found := re.search(r"Prefect UI: (http://\S+)", line):
            return found.group(1)
    raise AssertionError("no 'Prefect UI:' line from lessonflow schedule:\n" + "".join(seen))


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


@pytest.mark.long
@pytest.mark.parametrize("profile, stock_source, mirror, refreshed", [
    ("embedded", "auto", False, set()),                 # arch's bundled prices never change
    ("full", "auto", False, {"download@stock"}),        # Yahoo's prices grow every trading day
    ("full", "auto", True, set()),                      # the mirror's file does not change by itself
    ("embedded", "official", False, {"download@stock"}),
])
def test_a_scheduled_run_re_downloads_only_the_sources_that_change_by_themselves(
        tmp_path, monkeypatch, profile, stock_source, mirror, refreshed):
    from flows.dvc_stages import live_download_stages

    params = project_params()
    params["profile"] = profile
    params["datasets"]["stock"]["source"] = stock_source
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    if mirror:
        monkeypatch.setenv("LESSONFLOW_DATA_MIRROR", str(tmp_path))
    else:
        monkeypatch.delenv("LESSONFLOW_DATA_MIRROR", raising=False)
    stages = [*(f"download@{name}" for name in params["datasets"]), "prepare@stock", "train@stock-mlp"]
    assert live_download_stages(tmp_path, stages) == refreshed
