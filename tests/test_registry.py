"""Model cards and the model registry: a card per lesson from a real build, `dvc artifacts get` and
`lessonflow.load` from a second clone through a local DVC remote."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
import yaml

from conftest import BIN, clone, commit_all, dvc, read_json, run
from lessonflow.cards import FIELDS, card_fields, known_limits, over_seeds, render_card
from lessonflow.loader import ModelNotFound, load
from lessonflow.params import load_params
from lessonflow.registry import registered
from lessonflow.seeds import spread

LESSON = "mnist-cnn-book"  # built by the quick_built fixture, with mnist-logreg


def test_dvc_yaml_registers_exactly_the_lessons_with_a_torch_model():
    from conftest import ROOT

    declared = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]
    params = load_params(ROOT / "params.yaml")
    assert list(declared) == registered(params)
    assert {"mnist-cnn", "cifar-fast", "mnist-gan", "stock-lstm", "diabetes-mlp"} <= set(declared)
    assert not {"boston-knn", "sign-logreg-scratch", "fit-grid-search"} & set(declared)
    entry = declared["mnist-cnn"]
    assert entry["type"] == "model" and entry["path"] == "models/mnist-cnn/model.pt" and entry["desc"]
    assert entry["labels"] == ["kind:classifier", "dataset:mnist"]


def test_spread_and_known_limits_come_from_the_values_and_metrics():
    assert over_seeds(None, 0, 0.979) == "seed 0: 0.979 (one seed: no spread measured)"
    assert over_seeds(spread("test_accuracy", {0: 0.979, 1: 0.977, 2: 0.978}, None), 0, 0.979) == (
        "seed 0: 0.979, seed 1: 0.977, seed 2: 0.978; mean 0.978 ± 0.001 (standard deviation over 3 seeds; "
        "range 0.977 to 0.979)")
    limits = known_limits({"beats_persistence": False, "verdict": "does not beat persistence: RMSE 20 vs 19"},
                          {"data_source": "embedded"}, "no reference result", 1)
    assert limits[0] == "does not beat persistence: RMSE 20 vs 19"
    assert known_limits({"beats_majority_baseline": False}, {}, "no reference result", 2) == [
        "does not beat majority baseline"]
    assert any("sample data" in line for line in limits) and any("one seed" in line for line in limits)
    assert known_limits({"beats_persistence": True}, {"data_source": "official"}, "matches (+0.1 pts)", 3) == [
        "none that its metrics show"]


def test_a_card_states_the_gpu_and_cuda_that_trained_it_and_names_the_stage_of_a_lesson_not_built():
    from conftest import ROOT

    params = load_params(ROOT / "params.yaml", lessons=["mnist-cnn", "boston-knn"])
    trained = {"train_seconds": 41.5, "device": "cuda", "data_source": "mirror", "seed": 0, "train_samples": 54000,
               "environment": {"python": "3.11.7", "torch": "2.14.1", "numpy": "2.4.6", "cpu": "Xeon",
                               "gpu": "NVIDIA H100", "cuda": "13.0"},
               "model": {"file_bytes": 90000, "parameters": 21840, "input_shape": [1, 28, 28], "outputs": 10}}
    fields = card_fields("mnist-cnn", params.lessons["mnist-cnn"], {"test_accuracy": 0.99}, trained,
                         ("test_accuracy", 0.99), "matches (+1.0 pts)")
    card = render_card("mnist-cnn", fields)
    assert [name for name in FIELDS if f"**{name}:**" in card] == list(FIELDS)
    assert "**Hardware:** CPU Xeon; GPU NVIDIA H100" in card and "CUDA 13.0" in card and "41.5 s (one seed: no spread measured), on cuda" in card
    assert "003 K (003 = the PyTorch practice course" in card and "21,840" in card and "lr: 0.01" in card
    assert "mean ±" not in card and "one seed" in card
    unbuilt = render_card("boston-knn", card_fields("boston-knn", params.lessons["boston-knn"], {}, {}, None,
                                                    "not built"))
    assert [name for name in FIELDS if f"**{name}:**" in unbuilt] == list(FIELDS)
    assert unbuilt.count("run `dvc repro train@boston-knn`") == 8 and "dvc repro evaluate@boston-knn" in unbuilt


def test_load_says_what_is_missing_in_one_line(project):
    with pytest.raises(ModelNotFound, match=r"^mnist-cnn has no trained model at the workspace .*"
                                            r"run `dvc repro train@mnist-cnn`$"):
        load("mnist-cnn", repo=project)
    with pytest.raises(ModelNotFound, match="no-such-rev") as raised:
        load("mnist-cnn", rev="no-such-rev", repo=project)
    assert "\n" not in str(raised.value)
    with pytest.raises(ValueError, match=r"lessons.boston-knn.kind: 'scratch_line' trains no torch model; "
                                         r"lessonflow.load takes one of: .*mnist-cnn"):
        load("boston-knn", repo=project)
    with pytest.raises(ValueError, match="no entry 'no-such-lesson'"):
        load("no-such-lesson", repo=project)


@pytest.fixture(scope="module")
def reported(quick_built, tmp_path_factory):
    """The quick lessons' build with the report stage run on it alone."""
    repo = clone(quick_built, tmp_path_factory.mktemp("reported") / "repo")
    dvc(repo, "repro", "--single-item", "report")
    return repo


@pytest.mark.long  # builds on the quick lessons' build (minutes, shared with other long tests)
def test_every_card_lists_every_field_and_the_report_links_it(reported):
    params = yaml.safe_load((reported / "params.yaml").read_text())
    reports = reported / "reports"
    markdown, page = (reports / "report.md").read_text(), (reports / "report.html").read_text()
    for lesson in params["lessons"]:
        card = (reports / "cards" / f"{lesson}.md").read_text()
        assert [name for name in FIELDS if f"**{name}:**" in card] == list(FIELDS), lesson
        assert f"(cards/{lesson}.md)" in markdown and f"href='cards/{lesson}.md'" in page
    card = (reports / "cards" / f"{LESSON}.md").read_text()
    trained = read_json(reported / "results" / LESSON / "train" / "metrics.json")
    tested = read_json(reported / "results" / LESSON / "eval" / "metrics.json")
    parameters = trained["model"]["parameters"]
    assert parameters == sum(p.numel() for p in load(LESSON, repo=reported).parameters())
    assert f"**Parameters:** {parameters:,}" in card
    assert f"{(reported / 'models' / LESSON / 'model.pt').stat().st_size:,} bytes" in card
    assert f"seed 0: {tested['test_accuracy']:.4g}, seed 1: " in card and "001 §7.6" in card  # params: seeds: 3
    assert f"mean {tested['over_seeds']['mean']:.4g} ± " in card
    assert f"torch {torch.__version__}" in card and "Python 3." in card and "NumPy" in card
    assert re.search(r"\*\*Hardware:\*\* CPU \S", card) and "source `embedded`" in card
    assert "lessonflow.load(\"mnist-cnn-book\")" in card and "Conv2d" in card
    assert "- trained and tested on sample data" in card and "- one seed" not in card
    knn = (reports / "cards" / "boston-knn.md").read_text()
    assert "**Parameters:** not trained yet: run `dvc repro train@boston-knn`" in knn and "not a torch module" in knn


@pytest.mark.long  # a second clone, a push and a pull through the local remote
def test_a_second_clone_gets_the_registered_model_and_loads_it_with_the_recorded_accuracy(quick_built, tmp_path):
    from lessonflow.training import predict_logits

    first = clone(quick_built, tmp_path / "first")
    store = tmp_path / "store"
    dvc(first, "remote", "modify", "--local", "local", "url", str(store))
    dvc(first, "push", f"train@{LESSON}")
    commit = run(first, "git", "rev-parse", "HEAD").stdout.strip()
    run(first, "git", "-c", "user.email=t@lessonflow.invalid", "-c", "user.name=t", "tag", "-a",
        f"{LESSON}@v1.0.0", "-m", "registered", commit)  # what `gto register` does: an annotated name@version tag
    second = tmp_path / "second"
    run(tmp_path, "git", "clone", "-q", str(first), str(second))
    dvc(second, "remote", "modify", "--local", "local", "url", str(store))
    assert not (second / "models" / LESSON).exists() and not (second / ".dvc" / "cache").exists()

    dvc(second, "artifacts", "get", ".", LESSON, "--rev", "v1.0.0", "-o", "fetched.pt")
    assert (second / "fetched.pt").read_bytes() == (first / "models" / LESSON / "model.pt").read_bytes()

    model = load(LESSON, rev=commit, repo=second)
    assert not model.training
    data = torch.load(first / "data" / "prepared" / "mnist.pt", weights_only=False)
    predicted = predict_logits(model, data["x_test"], None, torch.device("cpu")).argmax(1)
    accuracy = round((predicted == data["y_test"]).float().mean().item(), 6)
    assert accuracy == read_json(first / "results" / LESSON / "eval" / "metrics.json")["test_accuracy"]
    with pytest.raises(ModelNotFound, match="revision 'v9.9.9'"):
        load(LESSON, rev="v9.9.9", repo=second)
