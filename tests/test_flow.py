"""The Prefect flow over the DVC pipeline, with a real Prefect server (its test harness) and real DVC.

To keep CI time low the flow builds two fast lessons (``mnist-logreg``, ``mnist-cnn-book``, epochs
cut to 2 and 1) rather than the whole default profile; ``built`` is one concurrent flow build
that the tests after it change and rebuild in order.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest
import yaml
from conftest import BIN, commit_all, dvc, project_env, quick_project, read_json, run, working_in

LESSONS = ["mnist-logreg", "mnist-cnn-book"]
STAGES = ["check", "download@mnist", "prepare@mnist", *(f"{verb}@{lesson}" for verb in ("train", "evaluate") for lesson in LESSONS)]
THREADS = {"LESSONFLOW_THREADS": "1"}  # what the flow gives each of two stages on two cores

pytestmark = pytest.mark.long


@pytest.fixture(scope="session")
def prefect_api():
    """One temporary Prefect server for the whole test run (it takes a while to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=240):
        yield


def edit_params(repo: Path, **lessons: dict) -> None:
    """Change lesson params in a copy the way a user edits params.yaml (comments and order kept)."""
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(repo / "params.yaml")) as params:
        for lesson, changes in lessons.items():
            for key, value in changes.items():
                if isinstance(value, dict):
                    params["lessons"][lesson][key].update(value)
                else:
                    params["lessons"][lesson][key] = value


def set_orchestration(repo: Path, **values) -> None:
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(repo / "params.yaml")) as params:
        params["orchestration"].update(values)


def results_table() -> dict[str, dict]:
    """The last run's ``lessonflow-results`` table artifact, by lesson."""
    from prefect.artifacts import Artifact

    from flows.artifacts import RESULTS_KEY

    return {row["result"]: row for row in json.loads(Artifact.get(RESULTS_KEY).data)}


def run_flow(repo: Path, monkeypatch, runner: str = "thread", **parameters):
    """Run the flow as `lessonflow flow run` does, in the project's folder; returns the final state."""
    from flows.pipeline import pipeline, task_runner

    monkeypatch.chdir(repo)
    for key, value in {**project_env(), **THREADS}.items():
        monkeypatch.setenv(key, value)
    flow = pipeline.with_options(task_runner=task_runner(runner, parameters.get("max_parallel", 2)))
    return flow(root=str(repo), return_state=True, **{"targets": LESSONS, **parameters})


def statuses(state) -> dict[str, str]:
    return {result.stage: result.status for result in state.result()}


def reported_statuses() -> dict[str, str]:
    """Each stage's result as the run's markdown artifact shows it (a failed run returns no value)."""
    from prefect.artifacts import Artifact

    from flows.artifacts import STAGES_KEY as REPORT_KEY

    rows = [line.split("|") for line in Artifact.get(REPORT_KEY).data.splitlines() if line.startswith("| `")]
    return {row[1].strip(" `"): row[2].strip() for row in rows}


def lock_entries(repo: Path) -> dict:
    """dvc.lock of the test stages, without the hashes of the metrics files, which record wall-clock time.

    A train log's ``metrics.json`` holds ``train_seconds``, so its hash differs between any two runs;
    every other hash — data, models (a finished training leaves only its weights there), predictions,
    plots, params — must match.
    """
    stages = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    for entry in stages.values():
        for item in entry.get("deps", []) + entry.get("outs", []):
            if item["path"].endswith("metrics.json"):
                item.pop("md5"), item.pop("size"), item.pop("nfiles", None)
    return {stage: stages[stage] for stage in STAGES}


def model_hashes(repo: Path) -> dict[str, str]:
    return {lesson: hashlib.md5((repo / "models" / lesson / "model.pt").read_bytes()).hexdigest() for lesson in LESSONS}


def assert_clean(repo: Path) -> None:
    status = dvc(repo, "status", *(f"evaluate@{lesson}" for lesson in LESSONS), "--with-deps")
    assert "up to date" in status.stdout, status.stdout


def all_logs(state, level: int = 0) -> list:
    """Every log record of the run at ``level`` or above, its stages' included (a page at a time)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterLevel
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    found = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]), level=LogFilterLevel(ge_=level))
    logs: list = []
    with get_client(sync_client=True) as client:
        while page := client.read_logs(found, offset=len(logs)):
            logs += page
    return logs


def error_logs(state) -> str:
    return "\n".join(log.message for log in all_logs(state, 40))


def flow_run_and_task(state, name: str):
    """The run as the server recorded it, and its task run called ``name``."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

    run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        (task_run,) = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
                                            task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])))
        return client.read_flow_run(run_id), task_run


@pytest.fixture(scope="module")
def built(tmp_path_factory, prefect_api):
    """The two lessons built by the flow, two stages at a time; its state for the tests to inspect."""
    monkeypatch = pytest.MonkeyPatch()
    repo = quick_project(tmp_path_factory.mktemp("flow") / "project")
    state = run_flow(repo, monkeypatch)
    monkeypatch.undo()
    return repo, state


def test_flow_builds_independent_lessons_concurrently(built, tmp_path):
    repo, state = built
    assert state.is_completed(), state.message
    results = {result.stage: result for result in state.result()}
    assert {stage: r.status for stage, r in results.items()} == dict.fromkeys(STAGES, "ran")
    a, b = (results[f"train@{lesson}"] for lesson in LESSONS)
    assert a.started < b.finished and b.started < a.finished, "the two trainings did not overlap"
    assert results["evaluate@mnist-logreg"].metric.startswith("test_accuracy = ")
    assert results["train@mnist-logreg"].metric.startswith("val.accuracy = ")  # the held-out split, not train's

    assert_clean(repo)
    sequential = tmp_path / "sequential"  # the same commit, built by a plain `dvc repro`
    run(tmp_path, "git", "clone", "-q", str(repo), str(sequential))
    dvc(sequential, "repro", *(f"evaluate@{lesson}" for lesson in LESSONS), env=project_env(**THREADS))
    assert lock_entries(repo) == lock_entries(sequential)
    assert model_hashes(repo) == model_hashes(sequential)

    from prefect.artifacts import Artifact

    from flows.artifacts import STAGES_KEY as REPORT_KEY

    report = Artifact.get(REPORT_KEY).data
    assert all(f"`{stage}` | ran |" in report for stage in STAGES), report

    from lessonflow.params import load_params
    from lessonflow.compare import judged

    from flows.artifacts import RESULTS_KEY

    table = results_table()
    params = load_params(repo / "params.yaml")
    assert set(table) == {*params.lessons, *(f"ensemble-{name}" for name in params.ensembles)}
    for lesson in LESSONS:
        metrics = read_json(repo / "results" / lesson / "eval" / "metrics.json")
        accuracy = metrics["test_accuracy"]
        assert table[lesson]["metric"] == "test_accuracy" and table[lesson]["value"] == round(accuracy, 6)
        assert table[lesson]["change"] == "new", "the first run on this server has nothing to compare with"
        assert table[lesson]["verdict"] == judged(metrics, params.lessons[lesson].reference_accuracy)
    assert table["mnist-cnn"] == {"result": "mnist-cnn", "metric": "", "value": "", "change": "", "verdict": "not built"}
    assert list(table)[:2] == LESSONS, "built results come first"
    assert Artifact.get(RESULTS_KEY).description == (f"this run: 2 built, 0 failed, {len(table) - 2} skipped; "
                                                     f"2 of {len(table)} results built; report: not built yet (stage report)")


def test_second_run_starts_no_stage(built, monkeypatch):
    repo, _ = built
    state = run_flow(repo, monkeypatch)
    assert state.is_completed(), state.message
    assert statuses(state) == dict.fromkeys(STAGES, "skipped")


def saved_runs(repo: Path) -> set[str]:
    return set(dvc(repo, "exp", "list", "--all-commits", "--name-only").stdout.split())


def test_a_run_that_changed_results_is_saved_as_an_experiment_pushed_and_in_the_history(built, monkeypatch, tmp_path):
    repo, _ = built
    first = saved_runs(repo)
    assert len(first) == 1 and next(iter(first)).startswith("flow-run-"), first  # the build itself
    assert run_flow(repo, monkeypatch).is_completed()
    assert saved_runs(repo) == first, "a run that changed nothing was recorded"

    store = tmp_path / "store"
    dvc(repo, "remote", "modify", "--local", "local", "url", str(store))
    edit_params(repo, **{"mnist-logreg": {"epochs": 3}})
    state = run_flow(repo, monkeypatch, push=True)
    assert state.is_completed(), state.message
    (new,) = saved_runs(repo) - first
    shown = yaml.safe_load(dvc(repo, "exp", "show", "--json").stdout)
    assert new in json.dumps(shown)
    assert "mnist-logreg" in json.dumps(shown)
    history = run(repo, str(BIN / "lessonflow"), "history", "--lesson", "mnist-logreg").stdout
    assert new in history and next(iter(first)) in history, history
    pushed = dvc(repo, "status", "--cloud", "evaluate@mnist-logreg", "--with-deps").stdout
    assert "Cache and remote 'local' are in sync" in pushed, pushed

    table = results_table()  # the change since the previous run's table, per lesson
    assert table["mnist-cnn-book"]["change"] == "="
    accuracy = read_json(repo / "results" / "mnist-logreg" / "eval" / "metrics.json")["test_accuracy"]
    assert table["mnist-logreg"]["value"] == round(accuracy, 6)
    assert table["mnist-logreg"]["change"] not in ("=", "new", ""), table["mnist-logreg"]


def test_failing_stage_fails_the_run_reports_it_and_the_next_run_finishes(built, monkeypatch, webhook):
    repo, _ = built
    model = repo / "models" / "mnist-cnn-book" / "model.pt"
    before = model.read_bytes()
    # A params change reruns only its lesson; a learning rate this large makes the training diverge.
    edit_params(repo, **{"mnist-logreg": {"optimizer": {"lr": 0.1}}, "mnist-cnn-book": {"optimizer": {"lr": 1e30}}})
    set_orchestration(repo, notify=webhook.url)
    recorded_before = saved_runs(repo)
    state = run_flow(repo, monkeypatch)
    assert state.is_failed()
    (message,) = webhook.wait_for(1)
    # Reported at once: within 10 s of the stage's failure, while the run was still going (before it recorded anything).
    run, failed_task = flow_run_and_task(state, "train@mnist-cnn-book")
    assert failed_task.state.name == "Failed"
    assert webhook.arrived[0] - failed_task.end_time.timestamp() < 10, "the failure was reported late"
    assert webhook.arrived[0] < run.end_time.timestamp(), "the failure was reported only when the run ended"
    assert saved_runs(repo) == recorded_before, "a failed run was saved as an experiment"
    table = results_table()  # says what failed, not the value an earlier run left
    assert table["mnist-cnn-book"]["change"] == "failed", table["mnist-cnn-book"]
    assert re.search(r"^failed: train@mnist-cnn-book: mnist-cnn-book: .*\b(nan|inf)\b", table["mnist-cnn-book"]["verdict"])
    assert table["mnist-logreg"]["change"] not in ("failed", "")
    assert list(table)[:2] == ["mnist-cnn-book", "mnist-logreg"], "failed first, then built"
    from prefect.artifacts import Artifact

    from flows.artifacts import RESULTS_KEY

    assert Artifact.get(RESULTS_KEY).description.startswith(f"this run: 1 built, 1 failed, {len(table) - 2} skipped; ")
    cause = table["mnist-cnn-book"]["verdict"].removeprefix("failed: train@mnist-cnn-book: ")
    logs = all_logs(state)
    assert not [log for log in logs if "Traceback" in log.message], "a stage failure logged a traceback"
    stated = [log for log in logs if cause in log.message and not log.message.startswith("Finished in state")]
    assert [log.level for log in stated] == [40], stated  # once, at ERROR: the run's closing line sums it up
    facts = message["lessonflow"]
    assert facts["state"] == "Failed" and facts["deployment"] == "a run by hand (lessonflow flow run)"
    assert list(facts["failed_stages"]) == ["train@mnist-cnn-book"]
    assert re.search(r"mnist-cnn-book: .*\b(nan|inf)\b", facts["failed_stages"]["train@mnist-cnn-book"]), facts
    assert facts["ui_url"].endswith(str(state.state_details.flow_run_id)) and facts["checkout"] == str(repo)
    assert "train@mnist-cnn-book" in message["text"] and facts["ui_url"] in message["text"]  # what Slack shows
    assert reported_statuses() == {"check": "ran", "download@mnist": "skipped", "prepare@mnist": "skipped",
                               "train@mnist-logreg": "ran", "evaluate@mnist-logreg": "ran",
                               "train@mnist-cnn-book": "failed", "evaluate@mnist-cnn-book": "blocked"}
    assert "train@mnist-cnn-book failed:" in state.message
    assert "train@mnist-cnn-book failed:" in error_logs(state)
    assert model.read_bytes() == before, "the failed stage damaged the previous model"

    edit_params(repo, **{"mnist-cnn-book": {"optimizer": {"lr": 0.002}}})
    set_orchestration(repo, notify=None)
    state = run_flow(repo, monkeypatch)
    assert state.is_completed(), state.message
    assert statuses(state) == {**dict.fromkeys(STAGES, "skipped"), "check": "ran", "train@mnist-cnn-book": "ran",
                               "evaluate@mnist-cnn-book": "ran"}  # check: every params edit is checked first
    assert_clean(repo)
    assert len(webhook.received) == 1, "a run that succeeded was reported"


def test_a_stage_past_its_time_limit_is_stopped_reported_and_loses_nothing(built, monkeypatch, webhook):
    repo, _ = built
    model = repo / "models" / "mnist-cnn-book" / "model.pt"
    before = model.read_bytes()
    edit_params(repo, **{"mnist-cnn-book": {"epochs": 500}})  # minutes of training: it hangs, as far as the limit knows
    set_orchestration(repo, stage_timeout_minutes=0.25, notify=webhook.url)
    started = time.monotonic()
    state = run_flow(repo, monkeypatch)
    assert state.is_failed()
    assert time.monotonic() - started < 120, "the stage was not stopped at its limit"
    assert reported_statuses()["train@mnist-cnn-book"] == "failed"
    assert "ran past the stage time limit" in state.message
    (message,) = webhook.wait_for(1)
    assert list(message["lessonflow"]["failed_stages"]) == ["train@mnist-cnn-book"]
    assert "ran past the stage time limit" in message["text"]
    assert model.read_bytes() == before
    deadline = time.monotonic() + 30
    while working_in(repo) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not working_in(repo), "the stopped stage's process is still running"

    edit_params(repo, **{"mnist-cnn-book": {"epochs": 1}})
    set_orchestration(repo, stage_timeout_minutes=720, notify=None)
    assert run_flow(repo, monkeypatch).is_completed()
    assert_clean(repo)


def test_dask_runner_builds_two_lessons_through_a_dvc_remote(built, tmp_path, monkeypatch):
    """Two local Dask worker processes with their own clone; outputs travel through a DVC remote."""
    repo, _ = built
    dvc(repo, "remote", "add", "-d", "store", str(tmp_path / "store"))
    dvc(repo, "push")
    edit_params(repo, **{lesson: {"seed": 1} for lesson in LESSONS})
    commit_all(repo, "new seeds, a remote")
    clone = tmp_path / "worker-clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    monkeypatch.setenv("LESSONFLOW_WORKER_ROOT", str(clone))  # the workers, started by the flow, inherit it

    state = run_flow(repo, monkeypatch, runner="dask", remote=True)
    assert state.is_completed(), state.message
    assert statuses(state) == {**dict.fromkeys(STAGES, "skipped"), "check": "ran",
                               **{f"{verb}@{lesson}": "ran" for verb in ("train", "evaluate") for lesson in LESSONS}}
    assert_clean(repo)  # the flow's own workspace got the entries and the outputs
    # The worker's clone pulled only the inputs it needed and recorded exactly what the flow did.
    rebuilt = [f"{verb}@{lesson}" for verb in ("train", "evaluate") for lesson in LESSONS]
    recorded = [yaml.safe_load((path / "dvc.lock").read_text())["stages"] for path in (repo, clone)]
    flow_side, worker_side = ({stage: lock[stage] for stage in rebuilt} for lock in recorded)
    assert flow_side == worker_side
    assert (clone / "models" / "mnist-logreg" / "model.pt").read_bytes() == \
        (repo / "models" / "mnist-logreg" / "model.pt").read_bytes()


def test_a_prefect_notification_block_named_in_params_is_a_channel_too(prefect_api, webhook, tmp_path):
    from prefect.blocks.notifications import CustomWebhookNotificationBlock

    from flows.notify import RunReport, channel, send

    CustomWebhookNotificationBlock(name="ops", url=webhook.url,
                                   json_data={"text": "{{subject}}: {{body}}"}).save("ops-room", overwrite=True)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"orchestration": {"notify": "custom-webhook/ops-room"}}))
    target = channel(tmp_path)
    assert target == "custom-webhook/ops-room"
    send(target, RunReport("Failed", "lessonflow/nightly", "wandering-goshawk", str(tmp_path),
                           {"train@mnist-cnn": "mnist-cnn: loss is nan at epoch 3, step 12"}))
    (message,) = webhook.wait_for(1)
    assert message["text"].startswith("lessonflow: run wandering-goshawk of lessonflow/nightly failed: ")
    assert "train@mnist-cnn" in message["text"] and "loss is nan at epoch 3" in message["text"]


def test_a_lessons_seeds_train_side_by_side_in_the_flow_holding_a_slot_each(prefect_api, tmp_path, monkeypatch):
    repo = quick_project(tmp_path / "project", seed_workers=2)
    edit_params(repo, **{"mnist-logreg": {"seeds": 3}})
    commit_all(repo, "three seeds, two at a time")
    state = run_flow(repo, monkeypatch)  # two slots, one CPU thread each
    assert state.is_completed(), state.message
    results = {result.stage: result for result in state.result()}
    seeds, other = results["train@mnist-logreg"], results["train@mnist-cnn-book"]
    assert seeds.finished <= other.started or other.finished <= seeds.started, "two seed workers held one slot"

    serial = tmp_path / "serial"  # the same commit, its seeds in turn, by a plain `dvc repro`
    run(tmp_path, "git", "clone", "-q", str(repo), str(serial))
    set_orchestration(serial, seed_workers=1)
    dvc(serial, "repro", "evaluate@mnist-logreg", env=project_env(**THREADS))
    for model in ("model.pt", "seed-1/model.pt", "seed-2/model.pt"):
        path = Path("models") / "mnist-logreg" / model
        assert (repo / path).read_bytes() == (serial / path).read_bytes(), f"{path} differs"
