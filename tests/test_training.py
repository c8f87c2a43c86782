"""The shared training loop on small real data: determinism, resume, divergence, devices."""

from __future__ import annotations

import pytest
import torch
from conftest import killed_after_checkpoint

from lessonflow.contract import Checkpoint
from lessonflow.errors import DivergedError
from lessonflow.runtime import make_deterministic, pick_device
from lessonflow.training import TrainConfig, eval_batch_size, predict_logits, train_classifier
from lessonflow.zoo import build_model


@pytest.fixture(scope="module")
def digits():
    """A slice of the embedded digits, prepared exactly as the pipeline does."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    x = torch.from_numpy((images.reshape(-1, 1, 8, 8) * 255 / 16).round()).to(torch.uint8)
    y = torch.from_numpy(labels).long()
    return {"x_train": x[:600], "y_train": y[:600], "x_val": x[600:800], "y_val": y[600:800]}


def train(digits, tmp_path, epochs=3, lr=0.01, name="run", optimizer="adam"):
    make_deterministic(seed=7)
    model = build_model("cnn", {"channels": [4, 8], "kernel": 3, "padding": 1, "head": [16]},
                        in_shape=(1, 8, 8), num_classes=10)
    cfg = TrainConfig(epochs=epochs, batch_size=32, optimizer=optimizer, lr=lr, seed=7)
    history = train_classifier(model, digits, cfg, device=torch.device("cpu"),
                               checkpoint=Checkpoint(tmp_path / f"{name}.pt", "f", name), progress=False)
    return model, history


def test_same_seed_gives_bit_identical_weights(digits, tmp_path):
    first, h1 = train(digits, tmp_path, name="a")
    second, h2 = train(digits, tmp_path, name="b")
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key
    assert [e["val_accuracy"] for e in h1.epochs] == [e["val_accuracy"] for e in h2.epochs]
    assert h1.epochs[-1]["val_accuracy"] > 0.5  # it does learn


def test_resuming_from_a_checkpoint_ends_where_an_uninterrupted_run_ends(digits, tmp_path):
    straight, _ = train(digits, tmp_path, epochs=3, name="straight")
    with killed_after_checkpoint(tmp_path / "resumed.pt"):
        train(digits, tmp_path, epochs=3, name="resumed")
    checkpoint = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert len(checkpoint["history"]) == 1
    resumed, history = train(digits, tmp_path, epochs=3, name="resumed")
    assert len(history.epochs) == 3 and history.epochs[0] == checkpoint["history"][0]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_checkpoint_from_other_params_is_not_resumed(digits, tmp_path):
    with killed_after_checkpoint(tmp_path / "x.pt"):
        train(digits, tmp_path, epochs=2, name="x")
    make_deterministic(seed=7)
    model = build_model("mlp", {}, in_shape=(1, 8, 8), num_classes=10)
    cfg = TrainConfig(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, seed=7)
    history = train_classifier(model, digits, cfg, device=torch.device("cpu"),
                               checkpoint=Checkpoint(tmp_path / "x.pt", "other", "x"), progress=False)
    assert [e["epoch"] for e in history.epochs] == [1, 2]


def test_a_diverging_loss_names_lesson_epoch_and_step(digits, tmp_path):
    with pytest.raises(DivergedError, match=r"run: loss became (nan|inf) at epoch 1, step \d+"):
        train(digits, tmp_path, lr=1e12, optimizer="sgd")


def test_device_auto_falls_back_to_cpu_and_an_impossible_request_is_an_error():
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert pick_device("auto").type in ("cpu", "mps")
        with pytest.raises(RuntimeError, match="'cuda' was requested but is not available"):
            pick_device("cuda")


def test_predictions_do_not_depend_on_the_evaluation_chunking(digits, tmp_path):
    """CPU evaluation runs in 512-row chunks, a GPU's in 4096: the predictions must be those of one pass."""
    model, _ = train(digits, tmp_path, epochs=1)
    x = torch.cat([digits["x_train"]] * 2)  # 1 200 rows: three CPU chunks, the last one partial
    cpu = torch.device("cpu")
    assert (eval_batch_size(cpu), eval_batch_size(torch.device("cuda"))) == (512, 4096)
    chunked = predict_logits(model, x, None, cpu)
    with torch.no_grad():
        whole = model(x.float() / 255)
    assert chunked.shape == (1200, 10)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert torch.equal(chunked.argmax(1), whole.argmax(1))
