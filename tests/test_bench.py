"""`make bench` scales a timed stretch of steps to an epoch (the arithmetic its per-epoch table rests on) and
measures peak memory in fresh interpreters."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from bench import EPOCH_PLAN, isolated, per_epoch  # noqa: E402
from tutorial import EVAL_CADENCE  # noqa: E402

LESSON = SimpleNamespace(epochs=25)
MEASURED = {"data": 2.0, "compute": 1.0, "evaluation": 3.0}  # 200 steps, 4 passes of 0.75 s (or 1 pass of 3 s)


@pytest.mark.parametrize("cadence, passes, evaluation", [
    (("steps", 50), 4, 0.75 * 12),   # a pass every 50 steps: 12 in a 600-step epoch
    (("tensor", 100), 2, 1.5 * 6),   # every 100 steps: 6 per epoch
    (("epoch", 0), 1, 3.0),          # once per epoch
    (("end", 0), 1, 3.0 / 25),       # once per training run, shared by its 25 epochs
])
def test_a_stretch_of_steps_scales_to_an_epoch_with_the_loops_own_test_passes(cadence, passes, evaluation):
    epoch = per_epoch(LESSON, cadence, MEASURED, steps=200, passes=passes, steps_per_epoch=600)
    assert epoch["data"] == pytest.approx(6.0) and epoch["compute"] == pytest.approx(3.0)
    assert epoch["evaluation"] == pytest.approx(evaluation)
    assert epoch["total"] == pytest.approx(9.0 + evaluation)


def test_a_stretch_too_short_to_hold_a_test_pass_is_refused():
    with pytest.raises(ValueError, match="at least 100"):
        per_epoch(LESSON, ("tensor", 100), MEASURED, steps=80, passes=0, steps_per_epoch=1200)


def test_every_benchmarked_lesson_times_enough_steps_for_its_tutorials_test_passes():
    for lesson_id, (steps, runs) in EPOCH_PLAN.items():
        where, every = EVAL_CADENCE[lesson_id]
        assert runs >= 2, f"{lesson_id}: a median and a spread need two runs"
        assert where not in ("steps", "tensor") or steps >= every, lesson_id


def test_a_memory_measurement_runs_in_a_fresh_interpreter_with_the_given_environment():
    """Section 5 runs each lesson in a child: the result must come back whole, and the child must see its env."""
    import os

    assert isolated("summary", values=[1.0, 3.0, 2.0]) == {"runs": [1.0, 3.0, 2.0], "median": 2.0, "spread": 2.0}
    child = isolated("machine", env={"OMP_NUM_THREADS": "1"})
    assert child["torch_threads"] == 1 and child["cores"] == os.cpu_count()


def test_a_partial_run_keeps_the_tables_of_the_sections_it_did_not_redo(tmp_path, monkeypatch):
    """`make bench ARGS="--only overhead"` once rewrote tables.md with its own section alone."""
    import json
    import shutil

    import bench

    for section in ("epoch", "memory"):
        shutil.copy(bench.RESULTS / f"{section}.json", tmp_path)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    memory = json.loads((tmp_path / "memory.json").read_text())["lessons"]
    remeasured = {lesson: {**peak, "peak_rss_mib": peak["peak_rss_mib"] + 1} for lesson, peak in memory.items()}
    bench.write("memory", remeasured)
    tables = (tmp_path / "tables.md").read_text()
    assert "### Seconds per epoch on real MNIST" in tables and "### Peak memory" in tables
    assert json.loads((tmp_path / "memory.json").read_text())["lessons"] == remeasured
