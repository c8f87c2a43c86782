"""The style-transfer lesson on the embedded photos under four settings: why its ``embedded:`` block is what it is.

Each row trains the lesson's kind with the seed's weights or the embedded ones, with or without a
line search, at the embedded size and budget, on one thread, and prints what the evaluation measures:
how far the style loss fell, how near the content the result stayed (its content loss against the style
photo's, a result that forgot the content), how far the pixels moved, and how much the loss climbed back
up in the second half of the calls. Run: ``python benchmarks/style_transfer.py`` (a Markdown table).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import project_params  # noqa: E402

from lessonflow.contract import Checkpoint, Saved  # noqa: E402
from lessonflow.datasets import download_dataset, prepare_dataset  # noqa: E402
from lessonflow.kinds import style_transfer  # noqa: E402
from lessonflow.records import run_facts  # noqa: E402
from lessonflow.schema import DatasetParams  # noqa: E402

VARIANTS = {"the seed's (1 / 1000, no line search)": {"style_weight": 1000.0, "line_search": None},
            "1 / 1000, strong Wolfe": {"style_weight": 1000.0, "line_search": "strong_wolfe"},
            "1 / 100, no line search": {"style_weight": 100.0, "line_search": None},
            "1 / 100, strong Wolfe (embedded:)": {"style_weight": 100.0, "line_search": "strong_wolfe"}}


def row(name: str, lesson: style_transfer.StyleTransferLesson, data: dict) -> list:
    trained = style_transfer.train(lesson, name=name, data=data, device=torch.device("cpu"),
                                   checkpoint=Checkpoint(Path("unused"), "", ""))
    saved = Saved(trained.states, {**run_facts(trained.seconds, "cpu", "embedded", lesson.seed), **trained.summary})
    m = style_transfer.evaluate(lesson, name=name, data=data, device=torch.device("cpu"), saved=saved).metrics
    half = [step["style_loss"] for step in trained.history[len(trained.history) // 2:]]
    return [name, m["closure_calls"], f"{m['style_loss_reduction']:.1f}×",
            f"{m['content_loss_final'] / m['content_loss_of_style_photo']:.2f}", f"{m['pixel_change']:.3f}",
            f"{max(half) / min(half):.1f}×", f"{trained.seconds:.1f}"]


def main() -> None:
    torch.set_num_threads(1)
    shipped = style_transfer.Lesson.model_validate(project_params()["lessons"]["style-transfer"])
    embedded = shipped.for_source("embedded")
    with tempfile.TemporaryDirectory() as tmp:
        download_dataset("images", DatasetParams(), "embedded", Path(tmp) / "raw")
        data = prepare_dataset("images", DatasetParams(), Path(tmp) / "raw", Path(tmp) / "images.pt")
    rows = [row(name, embedded.model_copy(update=change), data) for name, change in VARIANTS.items()]
    print(f"{embedded.size}×{embedded.size}, {embedded.closure_calls} closure calls asked, seed {embedded.seed}")
    print(tabulate(rows, ["settings", "calls", "style loss fell", "content loss / style photo's",
                          "mean abs pixel change", "second half: max / min style loss", "training s"],
                   tablefmt="github", disable_numparse=True))


if __name__ == "__main__":
    main()
