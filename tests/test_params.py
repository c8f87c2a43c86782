"""A bad params.yaml fails before any work, naming the key and what it accepts, and touches no output."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import clone, dvc, project_env, project_params, snapshot
from lessonflow.params import ParamsError, load_params, parse_params

DELETE = object()

# (edited key, new value or DELETE, substrings the message must contain: the key, then what is allowed);
# a case that needs several edits gives them as a dict instead of key and value
BAD = {
    "wrong type: int": ("lessons.mnist-cnn.epochs", "ten", ["lessons.mnist-cnn.epochs", "integer", "'ten'"]),
    "wrong type: float": ("lessons.mnist-cnn.optimizer.lr", "fast", ["lessons.mnist-cnn.optimizer.lr", "number"]),
    "wrong type: list": ("datasets.mnist.urls", "http://example.org", ["datasets.mnist.urls", "list"]),
    "unknown top-level key": ("profil", "full", ["profil: unknown key", "profile", "datasets", "lessons"]),
    "unknown lesson key": ("lessons.mnist-cnn.epochz", 3, ["lessons.mnist-cnn.epochz: unknown key", "epochs"]),
    "unknown dataset key": ("datasets.mnist.sauce", "x", ["datasets.mnist.sauce: unknown key", "source"]),
    "unknown optimizer key": ("lessons.mnist-cnn.optimizer.lrate", 0.1, ["optimizer.lrate: unknown key", "lr"]),
    "unknown model": ("lessons.mnist-cnn.model.name", "resnet9000",
                      ["lessons.mnist-cnn.model.name", "'resnet9000'", "cnn", "mlp"]),
    "unknown model argument": ("lessons.mnist-cnn.model.chanels", [8], ["lessons.mnist-cnn.model.chanels", "channels"]),
    "unknown optimizer": ("lessons.mnist-cnn.optimizer.name", "adamw",
                          ["lessons.mnist-cnn.optimizer.name", "'sgd'", "'adam'", "'adamw'"]),
    "unknown train split": ("lessons.mnist-bilstm.train_split", "all",
                            ["lessons.mnist-bilstm.train_split", "'train'", "'train+val'", "'all'"]),
    "unknown kind": ("lessons.mnist-cnn.kind", "classifer", ["lessons.mnist-cnn.kind", "'classifer'", "classifier"]),
    "unknown source": ("datasets.mnist.source", "ftp", ["datasets.mnist.source", "'embedded'", "'mirror'"]),
    "source the dataset lacks": ("datasets.mnist.source", "csv",
                                 ["datasets.mnist.source", "'csv'", "embedded, official, mirror"]),
    "unknown dataset": ("datasets.mnisst", {}, ["datasets", "'mnisst'", "mnist"]),
    # (without ensembles: the mnist ensemble would first complain that mnist-cnn left it)
    "undeclared dataset": ({"lessons.mnist-cnn.dataset": "emnist", "ensembles": DELETE},
                           ["lessons.mnist-cnn.dataset", "'emnist'", "mnist", "datasets:"]),
    "missing datasets": ("datasets", DELETE, ["datasets", "required"]),
    "missing lesson key": ("lessons.mnist-cnn.epochs", DELETE, ["lessons.mnist-cnn.epochs", "required"]),
    "zero epochs": ("lessons.mnist-cnn.epochs", 0, ["lessons.mnist-cnn.epochs", "greater than 0"]),
    "negative batch": ("lessons.mnist-cnn.batch_size", -5, ["lessons.mnist-cnn.batch_size", "greater than 0"]),
    "zero lr": ("lessons.mnist-cnn.optimizer.lr", 0, ["lessons.mnist-cnn.optimizer.lr", "greater than 0"]),
    "momentum 1.5": ("lessons.mnist-cnn.optimizer.momentum", 1.5, ["optimizer.momentum", "less than 1"]),
    "val_fraction 1": ("datasets.mnist.val_fraction", 1.0, ["datasets.mnist.val_fraction", "less than 1"]),
    "accuracy 1.2": ("lessons.mnist-cnn.reference_accuracy", 1.2, ["reference_accuracy", "less than or equal to 1"]),
    "unknown profile": ("profile", "huge", ["profile", "'embedded'", "'full'"]),
    "unknown device": ("device", "tpu", ["device", "'cpu'", "'cuda'"]),
    "unknown orchestration key": ("orchestration.stage_timeout", 5,
                                  ["orchestration.stage_timeout: unknown key", "stage_timeout_minutes", "notify"]),
    "zero stage timeout": ("orchestration.stage_timeout_minutes", 0,
                           ["orchestration.stage_timeout_minutes", "greater than 0"]),
}


def edited(raw: dict, key: str, value) -> dict:
    """``raw`` with the dotted ``key`` set to ``value`` (or removed); lesson ids contain dashes, not dots."""
    raw = copy.deepcopy(raw)
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return raw


def test_the_project_params_are_valid():
    parse_params(project_params())


@pytest.mark.parametrize("case", BAD.values(), ids=BAD.keys())
def test_bad_params_are_refused_naming_key_and_allowed_values(case):
    *edits, expected = case
    raw = project_params()
    for key, value in (edits[0].items() if isinstance(edits[0], dict) else [edits]):
        raw = edited(raw, key, value)
    with pytest.raises(ParamsError) as caught:
        parse_params(raw)
    message = str(caught.value)
    for part in expected:
        assert part in message, f"{part!r} missing from:\n{message}"


def test_every_problem_is_reported_at_once():
    raw = edited(edited(project_params(), "lessons.mnist-cnn.epochs", 0), "lessons.mnist-mlp.optimizer.name", "adamw")
    message = str(pytest.raises(ParamsError, parse_params, raw).value)
    assert "lessons.mnist-cnn.epochs" in message and "lessons.mnist-mlp.optimizer.name" in message


def problems_in(raw: dict) -> list[str]:
    message = str(pytest.raises(ParamsError, parse_params, raw).value)
    return message.splitlines()[1:]  # after "params.yaml is invalid:", one line per problem


def test_an_invalid_section_hides_no_error_of_another_and_adds_no_consequence():
    raw = edited(project_params(), "datasets.mnist.val_fraction", 1.5)
    raw = edited(edited(raw, "lessons.mnist-cnn.epochs", 0), "lessons.cifar-resnet.epochz", 3)
    problems = problems_in(raw)
    assert len(problems) == 3, problems  # each real error once; nothing about the ensembles of mnist
    for key in ("datasets.mnist.val_fraction", "lessons.mnist-cnn.epochs", "lessons.cifar-resnet.epochz"):
        assert sum(key in line for line in problems) == 1, (key, problems)


def test_a_missing_datasets_section_is_one_error_not_one_per_lesson():
    raw = edited(project_params(), "datasets", DELETE)
    assert problems_in(raw) == ["  datasets: Field required"]


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("- profile: embedded\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(path)


def test_dvc_repro_with_bad_params_fails_before_any_work(quick_built, tmp_path):
    repo = clone(quick_built, tmp_path / "repo")
    before = snapshot(repo)
    params_path = repo / "params.yaml"
    raw = edited(yaml.safe_load(params_path.read_text()), "lessons.mnist-logreg.optimizer.name", "adamw")
    params_path.write_text(yaml.safe_dump(raw, sort_keys=False))

    result = dvc(repo, "repro", "evaluate@mnist-logreg", check=False, env=project_env())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "check failed: params.yaml is invalid" in output  # the first stage of every build
    assert "lessons.mnist-logreg.optimizer.name" in output and "'sgd'" in output
    assert "Traceback" not in output
    assert snapshot(repo) == before

    alone = dvc(repo, "repro", "--single-item", "train@mnist-logreg", check=False, env=project_env())
    output = alone.stdout + alone.stderr  # the stage run by itself checks its own lesson as well
    assert alone.returncode != 0 and "train@mnist-logreg failed: params.yaml is invalid" in output
    assert "Traceback" not in output
    assert snapshot(repo) == before
