"""Ensembles: the combining rules on hand-made probabilities, their params and DVC wiring, the split they fit on."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import ROOT, project_params
from lessonflow.datasets import download_dataset, load_prepared, prepare_dataset
from lessonflow.ensemble import (
    Predictions, combine, fit_weights, majority_vote, oracle_accuracy, soft_average, table_rows, weighted_average,
)
from lessonflow.params import ParamsError, load_params, parse_params
from stages.ensemble import check_declared


def probs(*rows_per_member: list[list[float]]) -> np.ndarray:
    return np.array(rows_per_member, dtype=float)


def test_majority_vote_takes_the_most_voted_class_and_breaks_ties_by_summed_probability_then_lowest_class():
    votes = probs(
        # sample 0: two votes for class 1 | sample 1: one vote each, class 1 has the highest summed probability
        # (1.0 / 1.2 / 0.8) | sample 2: one vote each and equal sums (exact in binary): the lowest class, 0
        [[0.1, 0.8, 0.1], [0.6, 0.4, 0.0], [0.5, 0.25, 0.25]],
        [[0.2, 0.7, 0.1], [0.3, 0.7, 0.0], [0.25, 0.5, 0.25]],
        [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.25, 0.25, 0.5]],
    )
    assert majority_vote(votes).tolist() == [1, 1, 0]
    for order in ([2, 0, 1], [1, 2, 0]):
        assert majority_vote(votes[order]).tolist() == [1, 1, 0], "the order of members must not matter"


def test_majority_vote_tie_between_two_members_goes_to_the_more_confident_one():
    two = probs([[0.55, 0.45], [0.4, 0.6]], [[0.1, 0.9], [0.9, 0.1]])
    assert majority_vote(two).tolist() == [1, 0]
    exact_tie = probs([[0.6, 0.4]], [[0.4, 0.6]])
    assert majority_vote(exact_tie).tolist() == [0]  # equal votes, equal sums: the lowest class


def test_soft_average_overrules_a_vote_when_the_minority_is_confident():
    members = probs([[0.55, 0.45]], [[0.55, 0.45]], [[0.01, 0.99]])
    assert majority_vote(members).tolist() == [0]
    assert soft_average(members).argmax(1).tolist() == [1]
    np.testing.assert_allclose(soft_average(members), [[0.37, 0.63]])
    np.testing.assert_allclose(weighted_average(members, np.array([0.5, 0.5, 0.0])), [[0.55, 0.45]])


def test_fit_weights_finds_the_minimum_of_the_validation_loss():
    # member A alone is right on 3 samples of 4, member B on the 4th: NLL = -(3 log w + log(1 - w)) / 4, minimum w = 3/4
    a = [[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]
    b = [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    y = np.array([0, 0, 0, 1])
    weights = fit_weights(probs(a, b), y)
    np.testing.assert_allclose(weights, [0.75, 0.25], atol=1e-4)
    assert np.array_equal(weights, fit_weights(probs(a, b), y)), "the same data must give the same weights"


def test_fit_weights_gives_a_useless_member_no_weight():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=200)
    good = np.full((200, 3), 0.05)
    good[np.arange(200), y] = 0.9
    wrong = np.full((200, 3), 0.45)
    wrong[np.arange(200), y] = 0.1
    weights = fit_weights(np.stack([wrong, good, wrong]), y)
    assert weights[1] > 0.999 and weights.sum() == pytest.approx(1.0) and (weights >= 0).all()


def test_oracle_counts_a_sample_once_any_member_is_right():
    members = probs([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1]], [[0.1, 0.9], [0.9, 0.1], [0.9, 0.1]])
    assert oracle_accuracy(members, np.array([0, 1, 1])) == pytest.approx(1 / 3)


def member(val: list[list[float]], test: list[list[float]], y_val, y_test) -> Predictions:
    return Predictions(np.array(val), np.array(y_val), np.array(test), np.array(y_test))


def test_weights_are_fitted_on_validation_and_never_see_the_test_labels():
    y_val, y_test = [0, 0, 1, 1], [0, 1, 1, 0]
    a = member([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]], [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]],
               y_val, y_test)
    b = member([[0.4, 0.6], [0.6, 0.4], [0.7, 0.3], [0.5, 0.5]], [[0.1, 0.9], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6]],
               y_val, y_test)
    metrics, predicted = combine({"a": a, "b": b})
    flipped = {name: Predictions(m.val_probs, m.y_val, m.test_probs, 1 - m.y_test) for name, m in (("a", a), ("b", b))}
    assert combine(flipped)[0]["weights"] == metrics["weights"]
    assert metrics["weights"]["a"] > 0.99  # a is right on every validation sample, b on none
    assert metrics["members"] == {"a": 1.0, "b": 0.0}
    assert metrics["methods"]["weighted_average"] == metrics["test_accuracy"] == 1.0
    assert metrics["oracle"] == 1.0 and metrics["best_member"] == "a"
    assert set(predicted) == {"majority_vote", "soft_average", "weighted_average"}


def test_a_fixed_blend_is_a_fourth_method_ranking_classes_as_the_blend_of_the_members_logits():
    generator = np.random.default_rng(0)
    logits = generator.normal(size=(2, 2, 40, 3)) * 3  # (members, val/test, samples, classes)
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = generator.integers(0, 3, size=40)
    members = {name: Predictions(probs[i, 0], y, probs[i, 1], y) for i, name in enumerate(("vgg", "resnet"))}
    metrics, predicted = combine(members, [0.6, 0.4])
    assert np.array_equal(predicted["fixed_blend"], (0.6 * logits[0, 1] + 0.4 * logits[1, 1]).argmax(1))
    assert list(metrics["methods"]) == ["majority_vote", "soft_average", "weighted_average", "fixed_blend"]
    assert metrics["blend"] == {"vgg": 0.6, "resnet": 0.4}
    assert [row[1] for row in table_rows(metrics)][-2:] == ["fixed_blend", "oracle (any member right)"]
    assert "fixed_blend" not in combine(members)[0]["methods"]  # the other ensembles' metrics stay as they were


def test_a_blend_needs_one_weight_per_member():
    raw = project_params()
    raw["ensembles"]["catdog"]["blend"] = [0.6]
    with pytest.raises(ParamsError, match=r"ensembles.catdog.blend: 2 weights of at least 0 expected, one per member "
                                          r"\(catdog-vgg16, catdog-resnet50\); got \[0.6\]"):
        parse_params(raw, lessons=[])


def test_members_scored_on_other_samples_are_refused():
    a = member([[0.9, 0.1]], [[0.9, 0.1]], [0], [0])
    b = member([[0.9, 0.1]], [[0.9, 0.1]], [0], [1])
    with pytest.raises(ValueError, match="'b' was scored on other samples"):
        combine({"a": a, "b": b})


@pytest.mark.parametrize("members, message", [
    (["mnist-cnn", "mnist-typo"], "ensembles.mnist.members: unknown mnist lesson 'mnist-typo'; allowed: mnist-ann, "),
    (["mnist-cnn", "mnist-cnn"], "ensembles.mnist.members: 'mnist-cnn' is listed twice"),
    ([], "ensembles.mnist.members: List should have at least 1 item"),
    (["mnist-cnn", "mnist-bilstm"], "ensembles.mnist.members: 'mnist-bilstm' trains on the validation split the "
                                    "ensemble fits its weights on (lessons.mnist-bilstm.train_split: train+val)"),
])
def test_bad_members_fail_with_the_key_and_the_allowed_lessons(members, message):
    raw = project_params()
    raw["ensembles"]["mnist"]["members"] = members
    with pytest.raises(ParamsError, match=re.escape(message)):
        parse_params(raw)


def test_every_ensemble_has_a_dvc_stage_depending_on_exactly_its_members_predictions():
    params = load_params(ROOT / "params.yaml")
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert params.ensembles, "params.yaml declares the ensembles"
    for name, group in params.ensembles.items():
        stage = stages[f"ensemble-{name}"]
        predictions = {dep for dep in stage["deps"] if dep.startswith("results/")}
        assert predictions == {f"results/{m}/eval/outputs/predictions.npz" for m in group.members}
        assert stage["params"] == [f"ensembles.{name}"]
        check_declared(ROOT, name, group.members)  # what the stage itself checks before it runs


def test_the_stage_refuses_members_dvc_yaml_does_not_declare(tmp_path):
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"ensemble-mnist": {"deps": [
        "stages/ensemble.py", "results/mnist-cnn/eval/outputs/predictions.npz"]}}}))
    with pytest.raises(ParamsError, match=r"ensembles.mnist.members \['mnist-ann', 'mnist-cnn'\] differ"):
        check_declared(tmp_path, "mnist", ["mnist-cnn", "mnist-ann"])
    with pytest.raises(ParamsError, match="dvc.yaml has no stage 'ensemble-cifar'"):
        check_declared(tmp_path, "cifar", ["cifar-resnet"])


def digests(images, labels) -> set[str]:
    return {hashlib.sha256(image.numpy().tobytes() + bytes([label])).hexdigest()
            for image, label in zip(images, labels)}


def test_the_validation_split_the_weights_fit_on_never_overlaps_the_test_split(tmp_path: Path):
    params = load_params(ROOT / "params.yaml")
    settings = params.datasets["mnist"].model_copy(update={"source": "embedded"})
    download_dataset("mnist", settings, "embedded", tmp_path / "raw")
    prepare_dataset("mnist", settings, tmp_path / "raw", tmp_path / "mnist.pt")
    data = load_prepared(tmp_path / "mnist.pt")
    val, test, train = (digests(data[f"x_{s}"], data[f"y_{s}"]) for s in ("val", "test", "train"))
    assert len(val) == len(data["y_val"]) > 0 and len(test) == len(data["y_test"])
    assert not val & test, "a validation image is also a test image"
    assert not val & train, "a validation image is also a training image"
    expected_val = round((len(data["y_train"]) + len(data["y_val"])) * settings.val_fraction)
    assert len(data["y_val"]) == expected_val
