"""The GPU path's decisions and code, exercised on the CPU; and the `recipe: fast` switch of classifier lessons."""

from __future__ import annotations

import pytest
import torch

from lessonflow import accel
from lessonflow.kinds.classifier import train_config
from lessonflow.params import ParamsError, parse_params
from lessonflow.zoo import build_model
from conftest import project_params


def test_cuda_with_bf16_uses_autocast_channels_last_and_autotuning_when_determinism_is_not_asked():
    plan = accel.plan("cuda", bf16_supported=True, image_inputs=True, deterministic=False, compile_requested=False)
    assert plan.autocast_dtype == torch.bfloat16
    assert plan.channels_last and plan.cudnn_benchmark and not plan.compile


def test_cuda_keeps_determinism_and_float32_when_asked_or_unsupported():
    plan = accel.plan("cuda", bf16_supported=False, image_inputs=False, deterministic=True, compile_requested=True)
    assert plan.autocast_dtype is None  # no float16 fallback: it would need loss scaling
    assert not plan.channels_last  # flat (MLP) inputs have no channels
    assert not plan.cudnn_benchmark
    assert plan.compile


@pytest.mark.parametrize("device_type", ["cpu", "mps"])
def test_cpu_and_mps_train_in_float32_with_the_default_layout(device_type):
    plan = accel.plan(device_type, bf16_supported=True, image_inputs=True, deterministic=False,
                      compile_requested=True)
    assert plan.autocast_dtype is None and not plan.channels_last and not plan.cudnn_benchmark
    assert plan.compile == (device_type == "cpu")  # torch.compile does not support MPS


def test_plan_for_asks_the_installed_torch():
    plan = accel.plan_for(torch.device("cpu"), image_inputs=True)
    assert plan == accel.Accel("cpu")


def test_autocast_step_runs_on_the_cpu_with_the_gpu_plans_code_path():
    """The CUDA plan (bf16 autocast + channels-last), applied to a CPU device: one real training step."""
    torch.manual_seed(0)
    plan = accel.Accel("cpu", autocast_dtype=torch.bfloat16, channels_last=True)
    model = build_model("cnn", {"channels": [4, 8], "kernel": 3, "head": []}, in_shape=(1, 12, 12), num_classes=3)
    forward = accel.apply(plan, model)
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.rand(8, 1, 12, 12), torch.randint(3, (8,))
    batch = accel.prepare_batch(plan, x)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    with accel.autocast(plan):
        logits = forward(batch)
        loss = torch.nn.functional.cross_entropy(logits, y)
    assert logits.dtype == torch.bfloat16
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_float32_plan_is_a_no_op():
    plan = accel.Accel("cpu")
    x = torch.rand(2, 1, 4, 4)
    with accel.autocast(plan):
        assert torch.mm(torch.rand(2, 2), torch.rand(2, 2)).dtype == torch.float32
    assert accel.prepare_batch(plan, x) is x


def params_with(lesson_id: str, **changes) -> dict:
    raw = project_params()
    raw["lessons"][lesson_id].update(changes)
    return raw


@pytest.mark.parametrize("lesson_id", [lesson_id for lesson_id, entry in project_params()["lessons"].items()
                                       if entry.get("fast")])
def test_fast_recipe_replaces_the_tutorial_settings_it_names(lesson_id):
    tutorial = parse_params(params_with(lesson_id)).lessons[lesson_id]
    fast = parse_params(params_with(lesson_id, recipe="fast")).lessons[lesson_id]
    assert train_config(tutorial).epochs == tutorial.epochs  # the default is the reproduction
    cfg = train_config(fast)
    block = fast.fast
    assert cfg.schedule == block.schedule and cfg.epochs == block.epochs and cfg.batch_size == block.batch_size
    assert (cfg.optimizer, cfg.lr) == (block.optimizer.name, block.optimizer.lr)
    assert cfg.normalize == tutorial.normalize  # same data handling, same model
    assert fast.model == tutorial.model


def test_fast_recipe_without_a_block_is_refused_naming_the_key():
    raw = params_with("mnist-mlp", recipe="fast", fast=None)
    with pytest.raises(ParamsError, match=r"lessons\.mnist-mlp\.recipe: 'fast' needs a 'fast:' block"):
        parse_params(raw)


def test_unknown_recipe_and_unknown_fast_key_are_named():
    with pytest.raises(ParamsError) as err:
        parse_params(params_with("mnist-ann", recipe="quick", fast={"epochs": 2, "lr": 0.1}))
    message = str(err.value)
    assert "lessons.mnist-ann.recipe" in message and "'tutorial'" in message and "'fast'" in message
    assert "lessons.mnist-ann.fast.lr: unknown key; allowed keys here: optimizer, schedule, epochs, batch_size" \
        in message


@pytest.mark.parametrize("lesson_id", [lesson_id for lesson_id, entry in project_params()["lessons"].items()
                                       if entry.get("embedded") and entry["kind"] == "classifier"])
def test_embedded_settings_apply_on_the_sample_data_only(lesson_id):
    lesson = parse_params(params_with(lesson_id)).lessons[lesson_id]
    block = lesson.embedded
    for source in ("official", "mirror"):
        assert train_config(lesson, source) == train_config(lesson)  # the real data keeps the tutorial's settings
    sample = train_config(lesson, "embedded")
    assert sample != train_config(lesson)
    assert train_config(lesson, "synthetic") == sample  # CIFAR's sample images say what they are
    for key in ("schedule", "epochs", "batch_size"):
        assert getattr(sample, key) == (getattr(block, key) or getattr(lesson, key))
    assert sample.lr == (block.optimizer or lesson.optimizer).lr and sample.normalize == lesson.normalize
    if lesson.fast:  # a fast recipe on the sample data: what the embedded block names wins
        fast = parse_params(params_with(lesson_id, recipe="fast")).lessons[lesson_id]
        assert train_config(fast, "embedded").epochs == (block.epochs or fast.fast.epochs or lesson.epochs)
