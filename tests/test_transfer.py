"""The transfer lessons and their fusion built by a real ``dvc repro`` of a copy of the project.

Their backbones are other lessons' models, so the dependency between lessons is what is tested:
a frozen backbone's file is the same after the transfer lesson trained on it, an edit of one
backbone's params rebuilds exactly its own stages, its transfer lesson and the fusion, and
transfer learning beats the same network trained from scratch on the same few images.
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import ONE_THREAD, commit_all, copy_project, dvc, project_env, read_json, stages_ran

BACKBONES = {"catdog-vgg16": "cifar8-vgg", "catdog-resnet50": "cifar8-resnet"}


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.long  # four CIFAR trainings and a fusion: minutes on 2 shared cores
def test_transfer_lessons_freeze_their_backbones_beat_training_from_scratch_and_rebuild_with_them_only(tmp_path):
    from dvc.utils.serialize import modify_yaml

    repo = copy_project(tmp_path / "project")
    with modify_yaml(str(repo / "params.yaml")) as params:
        params["lessons"]["catdog-resnet50"]["seeds"] = 2  # each seed has its own from-scratch baseline
    commit_all(repo, "two seeds of one transfer lesson")
    env = project_env(**ONE_THREAD)
    dvc(repo, "repro", *(f"train@{backbone}" for backbone in BACKBONES.values()), env=env)
    before = {backbone: digest(repo / "models" / backbone / "model.pt") for backbone in BACKBONES.values()}
    dvc(repo, "repro", "ensemble-catdog", env=env)
    assert {backbone: digest(repo / "models" / backbone / "model.pt") for backbone in BACKBONES.values()} == before

    for lesson in BACKBONES:
        metrics = read_json(repo / "results" / lesson / "eval" / "metrics.json")
        assert metrics["data_source"] == "synthetic" and metrics["backbone"] == BACKBONES[lesson]
        assert metrics["test_accuracy"] > metrics["scratch_test_accuracy"], metrics
    seeds = read_json(repo / "results" / "catdog-resnet50" / "eval" / "metrics.json")["over_seeds"]
    transfer, beside = seeds["per_seed"], seeds["beside"]
    scratch, gain = beside["scratch_test_accuracy"]["per_seed"], beside["transfer_gain"]["per_seed"]
    assert set(transfer) == set(scratch) == set(gain) == {"0", "1"}
    assert scratch["0"] == metrics["scratch_test_accuracy"] and gain["0"] == metrics["transfer_gain"]
    assert all(abs(gain[seed] - (transfer[seed] - scratch[seed])) < 2e-6 for seed in transfer), seeds
    assert beside["transfer_gain"]["interval"]["low"] <= beside["transfer_gain"]["mean"]
    fusion = read_json(repo / "results" / "ensemble-catdog" / "metrics.json")
    assert set(fusion["methods"]) == {"majority_vote", "soft_average", "weighted_average", "fixed_blend"}
    assert fusion["blend"] == {"catdog-vgg16": 0.6, "catdog-resnet50": 0.4}
    assert fusion["oracle"] >= max(fusion["methods"].values())

    commit_all(repo, "built the transfer lessons")
    with modify_yaml(str(repo / "params.yaml")) as params:
        params["lessons"]["cifar8-vgg"]["epochs"] += 1
    ran = stages_ran(dvc(repo, "repro", "ensemble-catdog", "train@cifar8-resnet", env=env).stdout)
    assert ran == {"check", "train@cifar8-vgg", "train@catdog-vgg16", "evaluate@catdog-vgg16", "ensemble-catdog"}
    assert "up to date" in dvc(repo, "status", "ensemble-catdog", "train@cifar8-resnet", env=project_env()).stdout


def test_a_backbone_must_be_another_lesson_and_its_model_must_exist(tmp_path):
    from conftest import project_params

    from lessonflow.params import ParamsError, parse_params
    from lessonflow.paths import Layout
    from stages.train import backbone_file

    raw = project_params()
    raw["lessons"]["catdog-vgg16"]["backbone"] = "cifar8-vgq"
    with pytest.raises(ParamsError, match=r"lessons.catdog-vgg16.backbone: unknown lesson 'cifar8-vgq'; allowed: .*"
                                          r"cifar8-resnet, cifar8-vgg, "):
        parse_params(raw, lessons=["catdog-vgg16"])
    lesson = parse_params(project_params(), lessons=["catdog-vgg16"]).lessons["catdog-vgg16"]
    with pytest.raises(FileNotFoundError, match=r"models/cifar8-vgg/model.pt: the backbone of lessons.catdog-vgg16 is "
                                                r"missing; run `dvc repro train@cifar8-vgg` first$"):
        backbone_file("catdog-vgg16", lesson, Layout(tmp_path))
