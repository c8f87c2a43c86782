"""Scheduled runs: `lessonflow schedule` (flow.serve on a local Prefect server) and the `prefect.yaml` deployments."""

from __future__ import annotations

import contextlib
import json
import socket
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import (
    BIN, ROOT, dvc, project_env, project_params, quick_project, run, working_in,
)

SERVE_STARTUP_S = 300


def test_every_prefect_yaml_deployment_loads_its_flow_and_its_parameters_validate():
    from prefect.client.schemas.objects import ConcurrencyLimitConfig
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
        limit = ConcurrencyLimitConfig(**deployment["concurrency_limit"])  # raises on an unknown strategy
        assert limit.limit == 1, f"{deployment['name']}: two runs of one deployment would share the checkout"
    nightly = next(deployment for deployment in deployments if deployment["name"] == "nightly")
    assert nightly["parameters"]["refresh_sources"] is True, "a scheduled run must re-check sources that change"


def serve_env(prefect_home: Path) -> dict[str, str]:
    """A user's shell with no Prefect server configured: `lessonflow schedule` has to start its own."""
    env = project_env(PREFECT_HOME=str(prefect_home), LESSONFLOW_THREADS="1")
    for key in [key for key in env if key.startswith("PREFECT_") and key != "PREFECT_HOME"]:
        env.pop(key)
    return env


def wait_for_ui(serving: subprocess.Popen, seen: list[str] | None = None) -> str:
    """The UI address `lessonflow schedule` prints once its server answers and the flow is being served.

    The lines printed until then are appended to ``seen``.
    """
    deadline = time.monotonic() + SERVE_STARTUP_S
    seen = [] if seen is None else seen
    while time.monotonic() < deadline:
        line = serving.stdout.readline()
        if not line and serving.poll() is not None:
            break
        seen.append(line)
        if found := re.search(r"Prefect UI: (http://\S+)", line):
            return found.group(1)
    raise AssertionError("no 'Prefect UI:' line from lessonflow schedule:\n" + "".join(seen))


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


# --- a schedule left alone: turns, crashes, reports (small project: two quick lessons) ---------------

QUICK = ["mnist-logreg", "mnist-cnn-book"]
UNFINISHED = {"SCHEDULED", "PENDING", "RUNNING", "CANCELLING"}


class Schedule:
    """`lessonflow schedule` running in a project copy as a user starts it, and a client of its server."""

    def __init__(self, repo: Path, prefect_home: Path, name: str, *args: str):
        self.repo, self.name = repo, name
        self.env = serve_env(prefect_home)
        self.process = subprocess.Popen([str(BIN / "lessonflow"), "schedule", "--cron", "0 3 * * *", "--name", name,
                                         *args], cwd=repo, env=self.env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True)
        self.started: list[str] = []  # what it printed before the UI address
        self.ui = wait_for_ui(self.process, self.started)
        self.api = f"{self.ui}/api"

    def client(self):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            return get_client(sync_client=True)

    def deployment_id(self):
        deadline = time.monotonic() + 120
        with self.client() as client:
            while True:
                try:
                    return client.read_deployment_by_name(f"lessonflow/{self.name}").id
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)

    def trigger(self, **parameters):
        deployment = self.deployment_id()
        with self.client() as client:
            return client.create_flow_run_from_deployment(deployment, parameters={"record": False, **parameters}).id

    def flow_run(self, run_id):
        with self.client() as client:
            return client.read_flow_run(run_id)

    def wait_finished(self, *run_ids, timeout: float = 900) -> list:
        deadline = time.monotonic() + timeout
        while (runs := [self.flow_run(run_id) for run_id in run_ids]) and \
                any(run.state.type.value in UNFINISHED for run in runs):
            assert time.monotonic() < deadline, [run.state for run in runs]
            assert self.process.poll() is None, "lessonflow schedule exited"
            time.sleep(2)
        return runs

    def open_tasks(self, run_id) -> list[str]:
        """Names of the run's task runs that are not finished, as the server records them."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with self.client() as client:
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        assert tasks, "the run recorded no task"
        return [task.name for task in tasks if task.state.type.value in UNFINISHED]

    def logs(self, run_id) -> str:
        """Every log line of the run, its stages' output included (the server hands them out a page at a time)."""
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        lines: list[str] = []
        with self.client() as client:
            while page := client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), offset=len(lines)):
                lines += [log.message for log in page]
        return "\n".join(lines)

    def stop(self) -> str:
        self.process.terminate()
        try:
            return "".join(self.started) + self.process.communicate(timeout=120)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


@pytest.mark.long
def test_runs_of_a_schedule_take_turns_and_a_run_by_hand_waits_for_the_checkout(tmp_path):
    from flows.checkout import holder

    # Each scheduled run retrains mnist-cnn-book for 40 epochs and holds the checkout 26-43 s: the hand run, 11-13 s
    # to start, must find the first still going. Retraining mnist-logreg (2 epochs), CI measured 4 s to spare, then
    # a 6 s gap before the second run in which the hand run would have found the checkout free.
    repo = quick_project(tmp_path / "repo", cnn_epochs=40)
    with socket.socket() as default_port:  # taken, as by another server: the schedule's goes elsewhere
        with contextlib.suppress(OSError):
            default_port.bind(("127.0.0.1", 4200))
        schedule = Schedule(repo, tmp_path / "prefect-home", "turns")
    assert not schedule.ui.endswith(":4200")
    try:
        with urllib.request.urlopen(f"{schedule.ui}/ui-settings", timeout=10) as settings:
            assert json.load(settings)["api_url"] == schedule.api, "the UI would ask another server for its data"
        first, second = (schedule.trigger(targets=["mnist-cnn-book"], force=True) for _ in range(2))
        deadline = time.monotonic() + 300
        while sorted(states := [schedule.flow_run(run).state.name for run in (first, second)]) != \
                ["AwaitingConcurrencySlot", "Running"]:  # the state docs/orchestration.md names, not Late
            assert time.monotonic() < deadline, f"the second run never showed as waiting for a slot: {states}"
            time.sleep(0.5)
        while holder(repo) is None:
            assert time.monotonic() < deadline, "no run took the checkout"
            time.sleep(0.5)
        by_hand = run(repo, str(BIN / "lessonflow"), "flow", "run", "mnist-logreg", "--force", "--no-record",
                      env=project_env(PREFECT_HOME=str(tmp_path / "hand-home"), LESSONFLOW_THREADS="1"), timeout=900)
        runs = schedule.wait_finished(first, second)
        assert [run.state.name for run in runs] == ["Completed", "Completed"]
        a, b = sorted(runs, key=lambda run: run.start_time)
        assert b.created < a.end_time <= b.start_time, "the second run did not wait for the first"
        with schedule.client() as client:
            deployment = client.read_deployment(schedule.deployment_id())
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options.collision_strategy.value == "ENQUEUE"
    finally:
        output = schedule.stop()
    assert output.count("Failed runs are reported nowhere") == 1, output  # no channel configured: said once
    assert "at capacity" not in output, output  # the runner leaves the waiting to the server
    assert re.search(r"is busy: (scheduled|turns)-\S+ \(pid \d+, since .*\) is running on it; waiting",
                     by_hand.stdout + by_hand.stderr), by_hand.stdout + by_hand.stderr
    assert holder(repo) is None
    status = dvc(repo, "status", *(f"evaluate@{lesson}" for lesson in QUICK), "--with-deps").stdout
    assert "up to date" in status, status


def recorded(repo: Path, stage: str) -> bool:
    """Whether ``stage`` is in dvc.lock: DVC writes it there after the outputs, and only then is the stage done.

    Its outputs alone are not enough: a kill between them and the lock entry rightly runs the stage again.
    """
    try:
        return stage in (yaml.safe_load((repo / "dvc.lock").read_text()) or {}).get("stages", {})
    except (FileNotFoundError, yaml.YAMLError):  # not written yet, or caught mid-rewrite
        return False


@pytest.mark.long
def test_a_killed_schedule_is_recovered_the_run_shown_crashed_and_the_next_run_resumes(tmp_path, webhook):
    import psutil

    from flows.checkout import holder

    # 40 epochs of about 0.3 s: the kill lands mid-training even though the run notices it up to a second late.
    repo = quick_project(tmp_path / "repo", cnn_epochs=40, notify=webhook.url)
    home = tmp_path / "prefect-home"
    schedule = Schedule(repo, home, "crash")
    checkpoint, model = (repo / "models" / "mnist-cnn-book" / name for name in ("checkpoint.pt", "model.pt"))
    try:
        killed = schedule.trigger(targets=QUICK)
        deadline = time.monotonic() + 600
        while not (checkpoint.exists() and recorded(repo, "evaluate@mnist-logreg")):
            assert time.monotonic() < deadline and not model.exists(), "missed the moment: training ended or never began"
            time.sleep(0.1)
        served = psutil.Process(schedule.process.pid).children(recursive=True)
        schedule.process.kill()  # SIGKILL: no handler runs in the serving process
        schedule.process.wait()
    except BaseException:
        print(schedule.stop())
        raise
    psutil.wait_procs(served, timeout=60)
    assert not [process for process in served if process.is_running()], "children of the killed schedule live on"
    deadline = time.monotonic() + 30
    while (left := working_in(repo)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, f"the killed run's stages are still running: {[process.cmdline() for process in left]}"
    assert holder(repo) is None, "the killed run still holds the checkout"
    assert not model.exists()

    schedule = Schedule(repo, home, "crash")
    try:
        assert schedule.flow_run(killed).state.name == "Crashed"
        assert not schedule.open_tasks(killed), "a task of the crashed run is left Running"
        crashed = [message["lessonflow"] for message in webhook.wait_for(1)]
        assert any(facts["state"] == "Crashed" and facts["flow_run"] == schedule.flow_run(killed).name
                   for facts in crashed), crashed
        resumed = schedule.trigger(targets=QUICK)
        (finished,) = schedule.wait_finished(resumed)
        assert finished.state.name == "Completed", finished.state
        logs = schedule.logs(resumed)
    finally:
        output = schedule.stop()
    assert "marked crashed" in output, output
    resumed_after = re.search(r"mnist-cnn-book: resuming after epoch (\d+) of 40", logs)
    assert resumed_after and 1 <= int(resumed_after[1]) < 40, logs
    for stage in ("train@mnist-logreg", "evaluate@mnist-logreg"):
        assert f"Running stage '{stage}'" not in logs, f"{stage} had finished before the kill and ran again"
    status = dvc(repo, "status", *(f"evaluate@{lesson}" for lesson in QUICK), "--with-deps").stdout
    assert "up to date" in status, status


def test_a_typo_in_the_orchestration_settings_stops_the_schedule_before_it_serves(tmp_path):
    params = project_params()
    params["orchestration"]["notfy"] = params["orchestration"].pop("notify")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    started = run(tmp_path, str(BIN / "lessonflow"), "schedule", "--cron", "0 3 * * *", check=False,
                  env=serve_env(tmp_path / "prefect-home"), timeout=120)
    assert started.returncode == 1
    assert "orchestration.notfy: unknown key; allowed keys here: stage_timeout_minutes, notify" in started.stderr
    assert "Prefect UI" not in started.stdout
