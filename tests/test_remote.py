"""Results across clones: metrics travel with git, models and images through a DVC remote.

Real git clones, real DVC, and for S3 a real S3-compatible server (moto's) on loopback.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ONE_THREAD, clone, commit_all, dvc, project_env, run, stages_ran
from flows.dvc_stages import save_experiment

LESSON = "mnist-logreg"
BUILT = ["evaluate@mnist-logreg", "evaluate@mnist-cnn-book"]
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def two_commits(quick_built, tmp_path_factory) -> Path:
    """The quick lessons built and committed, then mnist-logreg retrained with fewer epochs and committed."""
    repo = clone(quick_built, tmp_path_factory.mktemp("two-commits") / "repo")
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lessons"][LESSON]["epochs"] = 2
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro", f"evaluate@{LESSON}", env=project_env(**ONE_THREAD))
    commit_all(repo, f"{LESSON}: 2 epochs")
    return repo


def git_clone(repo: Path, dest: Path) -> Path:
    run(dest.parent, "git", "clone", "-q", str(repo), str(dest))
    return dest


def test_a_second_clone_compares_two_commits_without_building_or_pulling(two_commits, tmp_path):
    second = git_clone(two_commits, tmp_path / "second")
    assert not (second / "models" / LESSON).exists() and not (second / ".dvc" / "cache").exists()  # nothing built
    diff = dvc(second, "metrics", "diff", "HEAD~1", "--json").stdout
    changed = yaml.safe_load(diff)[f"results/{LESSON}/eval/metrics.json"]["test_accuracy"]
    assert changed["old"] is not None and changed["new"] is not None and changed["old"] != changed["new"], diff
    compared = run(second, str(BIN / "lessonflow"), "compare", "HEAD~1", "HEAD").stdout
    row = next(line for line in compared.splitlines() if line.startswith(LESSON))
    assert f"{changed['old']:.4f}" in row and f"{changed['new']:.4f}" in row and "new" not in row.split()[-1], compared
    curves = dvc(second, "plots", "diff", "HEAD~1", "--json").stdout  # per-epoch curves of both commits, from git
    assert f"results/{LESSON}/train/plots/metrics/train/loss.tsv" in curves


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """moto's S3-compatible server on loopback, with an empty bucket."""
    port = free_port()
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            break
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise
            time.sleep(0.3)
    request = urllib.request.Request(f"{endpoint}/lessonflow", method="PUT")  # create the bucket
    urllib.request.urlopen(request, timeout=10).close()
    yield endpoint
    server.terminate()
    server.wait(timeout=30)


def configure_remote(repo: Path, kind: str, store: Path, endpoint: str | None) -> list[str]:
    """How a team points its clones at a remote; returns the extra `dvc push/pull` arguments."""
    if kind == "local":  # the default remote, moved for this machine only (config.local, not committed)
        dvc(repo, "remote", "modify", "--local", "local", "url", str(store))
        return []
    dvc(repo, "remote", "add", "s3", "s3://lessonflow/store")
    dvc(repo, "remote", "modify", "s3", "endpointurl", endpoint)
    commit_all(repo, "an S3 remote")  # committed: every clone finds it
    return ["-r", "s3"]


@pytest.mark.long  # the contributor's tier stays under 10 minutes (BENCHMARKS.md, test tiers)
@pytest.mark.parametrize("kind", ["local", "s3"])
def test_a_second_clone_pulls_the_results_and_rebuilds_nothing(kind, two_commits, tmp_path, request):
    endpoint = request.getfixturevalue("s3_endpoint") if kind == "s3" else None
    env = project_env(**S3_ENV)
    first = clone(two_commits, tmp_path / "first")
    store = tmp_path / "store"
    remote = configure_remote(first, kind, store, endpoint)
    dvc(first, "push", *remote, *BUILT, "--with-deps", env=env)
    assert kind != "local" or any(store.rglob("*")), "the push did not reach the configured folder"

    second = git_clone(first, tmp_path / "second")
    if kind == "local":
        configure_remote(second, kind, store, endpoint)
    dvc(second, "pull", *remote, *BUILT, "--with-deps", env=env)
    for name in ("models/mnist-logreg/model.pt", "results/mnist-logreg/eval/plots/images/confusion_matrix.png"):
        assert (second / name).read_bytes() == (first / name).read_bytes()
    status = dvc(second, "status", *BUILT, "--with-deps", env=env).stdout
    assert "Data and pipelines are up to date" in status, status
    assert stages_ran(dvc(second, "repro", *BUILT, env=env).stdout) == set()


@pytest.mark.long  # the contributor's tier stays under 10 minutes (BENCHMARKS.md, test tiers)
def test_history_lists_commits_and_saved_runs_from_a_clone_and_the_report_draws_the_trend(two_commits, tmp_path):
    repo = clone(two_commits, tmp_path / "repo")
    params_path = repo / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lessons"][LESSON]["epochs"] = 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    dvc(repo, "repro", f"evaluate@{LESSON}", env=project_env(**ONE_THREAD))
    built = ["download@mnist", "prepare@mnist", *(f"{verb}@{lesson}" for verb in ("train", "evaluate")
                                                  for lesson in ("mnist-logreg", "mnist-cnn-book"))]
    save_experiment(repo, built, "nightly-20261202T030000Z", print)  # what a scheduled run that changed results does
    second = git_clone(repo, tmp_path / "second")
    run(second, "git", "fetch", "-q", "origin", "refs/exps/*:refs/exps/*")  # how a teammate gets saved runs

    printed = run(second, str(BIN / "lessonflow"), "history", "--lesson", LESSON).stdout
    lines = [line for line in printed.splitlines() if line.startswith(LESSON)]
    assert len(lines) == 3, printed  # the two commits, then the saved run
    assert "nightly-20261202T030000Z" in lines[-1] and f"{LESSON}: 2 epochs" in lines[1]
    assert all("embedded" in line for line in lines) and "(worse)" in lines[1] and "(better)" in lines[2]

    from lessonflow.report import draw_trends

    trends = draw_trends(second, tmp_path)
    assert trends.chart is not None and trends.chart.read_bytes().startswith(b"\x89PNG"), trends.note
    assert [row[1] for row in trends.revisions][-1] == "nightly-20261202T030000Z"


def test_history_starts_a_new_line_where_the_data_source_changed():
    from datetime import datetime, timedelta

    from lessonflow.history import Point, Revision, rows

    start = datetime(2026, 12, 1)
    revisions = [Revision(f"{index:040d}", f"r{index}", start + timedelta(days=index)) for index in range(3)]
    points = {LESSON: [Point(revisions[0], "test_accuracy", 0.93, "embedded"),
                       Point(revisions[1], "test_accuracy", 0.92, "mirror"),
                       Point(revisions[2], "test_accuracy", 0.925, "mirror")]}
    changes = [row[-1] for row in rows(points)]
    assert changes == ["", "data source changed: embedded → mirror", "+0.0050 (better)"]
