"""The book's sequence lessons (LESSONS.md §7): the NumPy RNN and French → English translation.

The RNN's hand-written BPTT is checked against torch autograd. The translation data is checked for the
seed's filter and a held-out split of whole numbers, and its download and mirror code runs on a zip the
test makes in the layout of the PyTorch tutorial's ``data.zip``, served over real HTTP or from a mirror
folder. One real ``dvc repro`` of both lessons in a copy of the project checks that they learned.
"""

from __future__ import annotations

import re
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import BIN, copy_project, dvc, project_env, read_json, run
from test_downloads import MirrorServer

import lessonflow
from lessonflow.compare import headline, higher_is_better
from lessonflow.datasets import MIRROR_ENV, download_dataset, load_prepared, prepare_dataset
from lessonflow.datasets.fetch import sha256_of
from lessonflow.datasets.fra_eng import ENG_PREFIXES, MIRROR_FILE, TUTORIAL_SHA256, normalise
from lessonflow.errors import ChecksumError
from lessonflow.params import DatasetParams
from lessonflow.scratch import rnn
from lessonflow.zoo import EOS

# English, tab, French: the tutorial's layout; "Go." fails the seed's prefix filter
TUTORIAL_LINES = ["I'm cold.\tJ'ai froid.", "I'm hot.\tJ'ai chaud.", "Go.\tVa !", "He's cold.\tIl a froid.",
                  "He's hot.\tIl a chaud.", "She is cold.\tElle a froid.", "She is hot.\tElle a chaud."]


def test_bptt_gradients_match_autograd():
    rng = np.random.default_rng(5)
    params = rnn.initial(6, 5, 6, rng)
    xs, targets = np.eye(6)[rng.integers(0, 6, 7)], np.eye(6)[rng.integers(0, 6, 7)]
    loss, grads = rnn.loss_and_gradients(params, xs, targets)
    tensors = {name: torch.tensor(value, requires_grad=True) for name, value in params.items()}
    hidden, expected_loss = tensors["h0"], 0
    for x, target in zip(torch.from_numpy(xs), torch.from_numpy(targets)):
        hidden = torch.tanh(x @ tensors["U"] + hidden @ tensors["W"])
        expected_loss = expected_loss - (target * torch.log_softmax(hidden @ tensors["V"], -1)).sum()
    expected_loss.backward()
    assert loss == pytest.approx(expected_loss.item(), rel=1e-12)
    for name in rnn.WEIGHTS:  # the last step's error included, carried back through W to the first
        np.testing.assert_allclose(grads[name], tensors[name].grad.numpy(), rtol=1e-9, atol=1e-12)


def test_normalise_is_the_seeds_with_its_character_class_fixed():
    assert normalise("J'ai vingt-et-un ans!") == "j ai vingt et un ans !"
    assert normalise("  Je suis très fatigué.  ") == "je suis tres fatigue ."


def prepared(tmp_path: Path, params: DatasetParams, profile: str = "embedded") -> dict:
    raw = tmp_path / "raw"
    download_dataset("fra-eng", params, profile, raw)
    prepare_dataset("fra-eng", params, raw, tmp_path / "prepared.pt")
    return load_prepared(tmp_path / "prepared.pt")


def test_the_number_phrases_pass_the_seeds_filter_and_hold_out_whole_numbers(tmp_path):
    data = prepared(tmp_path, DatasetParams(options={"test_fraction": 0.1}))
    assert data["source"] == "embedded" and ["j ai vingt et un ans .", "i am twenty one years old ."] in \
        data["train_pairs"] + data["test_pairs"]
    for french, english in data["train_pairs"] + data["test_pairs"]:
        assert english.startswith(ENG_PREFIXES) and len(french.split(" ")) < 10 and len(english.split(" ")) < 10
    def numbers(pairs: list) -> set[str]:  # "i am twenty one years old ." -> "twenty one"
        return {english.split(" ", 2)[-1].rsplit(" ", 3)[0] for _, english in pairs}

    held = numbers(data["test_pairs"])
    assert len(held) == 10 and not held & numbers(data["train_pairs"])
    known = {word for pair in data["train_pairs"] for word in " ".join(pair).split(" ")}
    assert all(set(" ".join(pair).split(" ")) <= known for pair in data["test_pairs"])  # unseen, yet all known words


def tutorial_zip(folder: Path, lines: list[str] = TUTORIAL_LINES) -> Path:
    """A ``data.zip`` in the tutorial's layout: ``data/eng-fra.txt`` beside another corpus of the archive."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "data.zip", "w") as archive:
        archive.writestr("data/eng-fra.txt", "\n".join(lines) + "\n")
        archive.writestr("data/names/English.txt", "Abbott\n")
    return folder / "data.zip"


@pytest.fixture
def mirror_folder(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "mirror"
    tutorial_zip((folder / MIRROR_FILE).parent)
    monkeypatch.setenv(MIRROR_ENV, str(folder))
    return folder


def test_the_tutorial_zip_comes_from_a_mirror_or_a_url_checked_against_params(tmp_path, mirror_folder):
    sha = sha256_of(mirror_folder / MIRROR_FILE)
    from_mirror = prepared(tmp_path / "m", DatasetParams(source="mirror",
                                                         options={"sha256": sha, "test_fraction": 0.5}))
    server = MirrorServer(mirror_folder / Path(MIRROR_FILE).parent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        official = DatasetParams(source="official", urls=[f"{server.url('good')}/data.zip"],
                                 options={"sha256": sha, "test_fraction": 0.5})
        downloaded = prepared(tmp_path / "o", official, profile="full")
    finally:
        server.shutdown()
        server.server_close()
    assert (from_mirror["source"], downloaded["source"]) == ("mirror", "official")
    for data in (from_mirror, downloaded):
        pairs = data["train_pairs"] + data["test_pairs"]
        assert len(pairs) == 6 and ["j ai froid .", "i m cold ."] in pairs  # "go ." fails the seed's filter
        known = {word for pair in data["train_pairs"] for word in " ".join(pair).split(" ")}
        assert data["test_pairs"] and all(set(" ".join(pair).split(" ")) <= known for pair in data["test_pairs"])


@pytest.mark.parametrize("how", ["truncated", "another file"])
def test_a_truncated_or_wrong_zip_is_refused_naming_the_file_and_the_expected_hash(tmp_path, mirror_folder, how):
    archive = mirror_folder / MIRROR_FILE
    expected = sha256_of(archive) if how == "truncated" else TUTORIAL_SHA256  # the real data.zip's
    if how == "truncated":
        archive.write_bytes(archive.read_bytes()[:100])
    raw = tmp_path / "raw"
    with pytest.raises(ChecksumError) as refused:
        download_dataset("fra-eng", DatasetParams(source="mirror", options={"sha256": expected}), "full", raw)
    assert str(archive) in str(refused.value) and expected in str(refused.value)
    assert not raw.exists()  # nothing half-written


def test_a_missing_mirror_file_names_the_path_it_looked_for(tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / MIRROR_FILE)):
        download_dataset("fra-eng", DatasetParams(source="mirror"), "full", tmp_path / "raw")


def test_the_report_judges_a_translation_by_its_bleu_and_the_rnn_by_its_next_letters():
    translation = {"test_bleu": 92.3, "test_exact_match": 0.85, "final_loss": 0.006, "iterations": 1500}
    assert headline(translation) == ("test_bleu", 92.3) and higher_is_better("test_bleu")
    assert headline({"next_char_accuracy": 1.0, "final_loss": 0.02, "steps": 500}) == ("next_char_accuracy", 1.0)


@pytest.mark.long
def test_both_lessons_build_with_dvc_and_learn(tmp_path):
    """A real ``dvc repro`` of the two lessons and the report in a copy of the project, on the embedded profile."""
    repo = copy_project(tmp_path / "project")
    dvc(repo, "repro", "evaluate@rnn-scratch", "evaluate@seq2seq-fra-eng", env=project_env(LESSONFLOW_THREADS="1"))
    rnn_metrics = read_json(repo / "results/rnn-scratch/eval/metrics.json")
    assert (rnn_metrics["next_after_c"], rnn_metrics["next_after_fg"]) == ("d", "h")
    assert rnn_metrics["next_char_accuracy"] == 1.0
    s2s = read_json(repo / "results/seq2seq-fra-eng/eval/metrics.json")
    assert s2s["iterations"] == 1500 and s2s["test_pairs"] == 60  # the embedded settings, whole numbers held out
    assert s2s["test_bleu"] > 70 and s2s["test_exact_match"] > 0.5  # the floors BENCHMARKS.md states
    for lesson in ("rnn-scratch", "seq2seq-fra-eng"):
        for log in ("train", "eval"):
            assert read_json(repo / f"results/{lesson}/{log}/metrics.json")["data_source"] == "embedded"
    assert (repo / "results/seq2seq-fra-eng/eval/plots/images/attention.png").is_file()
    model = lessonflow.load("seq2seq-fra-eng", repo=repo)  # the registry's model, rebuilt from params and train log
    vocabulary = torch.load(repo / "models/seq2seq-fra-eng/vocabulary.pt", weights_only=True)
    words, _ = model(torch.tensor([vocabulary["source"].index(word) for word in "j ai deux ans .".split()] + [EOS]))
    assert " ".join(vocabulary["target"][word] for word in words[:-1]).startswith("i am")
    run(repo, str(BIN / "python"), "-m", "stages.report")  # the report stage's command, without the other lessons
    report = (repo / "reports/report.md").read_text()
    translation = report[report.index("### seq2seq-fra-eng"):]
    assert "test_bleu" in translation and "Verdict: no reference result" in translation
    assert "held_out_translations.png" in translation and "attention.png" in translation
    assert re.search(r"\| next_after_fg +\| h +\|", report[report.index("### rnn-scratch"):])
