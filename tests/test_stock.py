"""Stock prices: the checks every source's table passes, a split that never looks ahead,
scaling that knows only the train days, honest baselines, and the lessons trained for real."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import ROOT, dvc, killed_after_checkpoint, project_env, read_json

from lessonflow.contract import Checkpoint
from lessonflow.datasets import download_dataset, load_prepared, prepare_dataset
from lessonflow.datasets.fetch import DownloadError
from lessonflow.datasets.stock import (
    COLUMNS, StockOptions, chronological_split, fetch, persistence, prepare_prices, stock_options, validate_prices,
)
from lessonflow.kinds.stock import build_for, direction_report, inputs, price_report, train_net
from lessonflow.params import DatasetParams, ParamsError, load_params, parse_params
from lessonflow.paths import Layout
from lessonflow.runtime import make_deterministic
from stages.evaluate import evaluate as evaluate_stage
from stages.train import train as train_stage

STOCK_LESSONS = ["stock-mlp", "stock-lstm", "stock-updown", "stock-updown-lstm"]
ONE_THREAD = {"LESSONFLOW_THREADS": "1"}  # small models: one thread is fastest on a shared CPU


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    """The embedded S&P 500 days, as the embedded source writes them."""
    from arch.data import sp500

    return sp500.load().rename_axis("Date").reset_index()


@pytest.fixture
def prices() -> pd.DataFrame:
    """Sixty hand-made days in Yahoo's layout."""
    close = 100 + np.cumsum(np.where(np.arange(60) % 3 == 0, -1.0, 1.5))
    return pd.DataFrame({"Date": pd.bdate_range("2020-01-01", periods=60).strftime("%Y-%m-%d"),
                         "Open": close - 0.5, "High": close + 1, "Low": close - 1, "Close": close,
                         "Adj Close": close, "Volume": np.arange(60) * 1000.0 + 5000})


def test_a_yahoo_layout_table_passes_with_parsed_dates(prices):
    table = validate_prices(prices, "prices.csv", min_rows=50)
    assert list(table.columns) == COLUMNS and len(table) == 60
    assert table["Date"].dtype.kind == "M" and table["Volume"].dtype == np.float64


@pytest.mark.parametrize("breakage, message", [
    (lambda f: f.drop(columns=["Adj Close"]), "missing column(s) 'Adj Close'"),
    (lambda f: f.assign(Close=f["Close"].where(f.index != 7)), "column 'Close' has 1 missing"),
    (lambda f: f.assign(Volume=f["Volume"].astype(object).where(f.index != 3, "n/a")), "column 'Volume'"),
    (lambda f: f.assign(Date=f["Date"].where(f.index != 9, "not a day")), "column 'Date' has 1 missing"),
    (lambda f: f.iloc[[0, 2, 1, *range(3, 60)]], "column 'Date' is not in increasing order"),
    (lambda f: f.assign(Date=f["Date"].where(f.index != 5, f["Date"][4])), "column 'Date' repeats"),
    (lambda f: f.iloc[:40], "40 rows; at least 50 are needed"),
    (lambda f: f.iloc[:0], "no rows"),
])
def test_bad_tables_are_refused_naming_the_file_and_column(prices, breakage, message):
    with pytest.raises(ValueError) as err:
        validate_prices(breakage(prices), "/data/spy.csv", min_rows=50)
    assert str(err.value).startswith("/data/spy.csv: ") and message in str(err.value)


def test_the_empty_frame_yfinance_returns_when_yahoo_fails_is_refused(monkeypatch):
    """``yf.download`` answers an unreachable Yahoo with an empty table (the errors only logged): no dataset."""
    import yfinance as yf

    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens there: refused at once
    frame = yf.download("^GSPC", start="2020-01-01", end="2020-02-01", progress=False, auto_adjust=False,
                        multi_level_index=False, threads=False)
    assert frame.empty
    with pytest.raises(ValueError, match=r"yfinance \^GSPC: no rows"):
        validate_prices(frame.rename_axis("Date").reset_index(), "yfinance ^GSPC")


def test_official_source_without_yahoo_is_a_download_error_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    raw = tmp_path / "raw" / "stock"
    with pytest.raises(DownloadError, match=r"yfinance \^GSPC 1999-01-01..2019-01-01: ConnectionError"):
        download_dataset("stock", DatasetParams(source="official"), "full", raw)
    assert not raw.exists()


def test_csv_source_checks_the_file_and_keeps_yahoos_layout(prices, tmp_path):
    good, bad = tmp_path / "good.csv", tmp_path / "bad.csv"
    prices.to_csv(good, index=False)
    prices.drop(columns=["Volume"]).to_csv(bad, index=False)
    raw = tmp_path / "raw"
    raw.mkdir()
    fetch("csv", raw, DatasetParams(source="csv", options={"path": str(good)}))
    copied = pd.read_csv(raw / "prices.csv")
    assert list(copied.columns) == COLUMNS and np.allclose(copied["Close"], prices["Close"])
    with pytest.raises(ValueError, match=f"{bad}: missing column.*'Volume'"):
        fetch("csv", raw, DatasetParams(source="csv", options={"path": str(bad)}))
    with pytest.raises(FileNotFoundError, match="datasets.stock.options.path"):
        fetch("csv", raw, DatasetParams(source="csv", options={"path": str(tmp_path / "none.csv")}))


def test_a_misspelt_option_names_the_key_and_the_allowed_ones():
    with pytest.raises(ParamsError) as err:
        stock_options(DatasetParams(options={"windw": 5}))
    assert "datasets.stock.options.windw: unknown key" in str(err.value) and "window" in str(err.value)


def test_the_split_is_chronological_contiguous_and_never_overlaps(prices):
    parts = chronological_split(100, val_fraction=0.1, test_fraction=0.2)
    assert [(p.start, p.stop) for p in parts.values()] == [(0, 70), (70, 80), (80, 100)]
    prepared = prepare_prices(validate_prices(prices, "prices.csv"), StockOptions(window=5), 0.2)
    dates = [prepared[f"dates_{split}"] for split in ("train", "val", "test")]
    assert all(d == sorted(d) for d in dates)
    assert dates[0][-1] < dates[1][0] and dates[1][-1] < dates[2][0]  # every train day before every val day …
    assert sum(map(len, dates)) == len(set(sum(dates, []))) == 60 - 5  # … and no day in two parts
    # sample i: days i..i+4 as input, day i+5 as target; last_close is the day before the target
    assert prepared["y_train"][0].item() == prices["Close"][5]
    assert prepared["last_close_train"][0].item() == prices["Close"][4]
    assert torch.equal(prepared["up_test"], (prepared["y_test"] > prepared["last_close_test"]).float())


def test_scaling_uses_the_train_days_only(prices):
    table = validate_prices(prices, "prices.csv")
    options = StockOptions(window=5)
    before = prepare_prices(table, options, 0.2)
    test_changed = table.copy()
    test_changed.loc[len(table) - 3:, ["Open", "High", "Low", "Close", "Volume"]] *= 10  # a crash in the test days
    after = prepare_prices(test_changed, options, 0.2)
    assert torch.equal(before["x_train"], after["x_train"]) and torch.equal(before["x_val"], after["x_val"])
    assert not torch.equal(before["x_test"], after["x_test"])
    train_changed = table.copy()
    train_changed.loc[3, "Volume"] *= 10  # whereas one train day moves every scaled value
    assert not torch.equal(prepare_prices(train_changed, options, 0.2)["x_test"], before["x_test"])
    train_inputs = before["x_train"][:, -1, :].numpy()  # each train day once (as a window's last day)
    assert np.abs(train_inputs.mean(0)).max() < 0.25 and np.abs(before["x_test"].numpy().mean((0, 1))).max() > 1


def test_persistence_and_the_price_verdict_on_a_hand_made_series():
    close = np.array([10.0, 11.0, 9.0, 12.0])
    predicted_by_persistence, actual = persistence(close)
    assert predicted_by_persistence.tolist() == [10.0, 11.0, 9.0] and actual.tolist() == [11.0, 9.0, 12.0]
    good = price_report(actual + 0.5, actual, predicted_by_persistence)
    assert good["persistence_rmse"] == pytest.approx(math.sqrt((1 + 4 + 9) / 3), abs=1e-4)
    assert good["persistence_mae"] == pytest.approx(2.0) and good["test_mae"] == pytest.approx(0.5)
    assert good["beats_persistence"] is True and good["verdict"].startswith("beats persistence")
    bad = price_report(actual + 5, actual, predicted_by_persistence)
    assert bad["beats_persistence"] is False and bad["verdict"].startswith("does not beat persistence")
    tie = price_report(predicted_by_persistence + 0.01, actual, predicted_by_persistence)  # a hair better
    assert tie["test_rmse"] < tie["persistence_rmse"] and tie["beats_persistence"] is False
    assert tie["verdict"].startswith("no better than persistence")


def test_up_down_is_judged_against_always_up():
    rose = np.array([1.0, 1.0, 0.0, 1.0])
    copycat = direction_report(np.full(4, 0.9), rose)  # saying "up" every day only ties always-up
    assert copycat["test_accuracy"] == copycat["always_up_accuracy"] == 0.75
    assert copycat["beats_always_up"] is False and copycat["verdict"].startswith("no better than always-up")
    pessimist = direction_report(np.full(4, 0.1), rose)
    assert pessimist["test_accuracy"] == 0.25 and pessimist["verdict"].startswith("does not beat always-up")
    perfect = direction_report(np.array([0.8, 0.7, 0.2, 0.6]), rose)
    assert perfect["test_accuracy"] == 1.0 and perfect["beats_always_up"] is True


@pytest.fixture(scope="module")
def small_stock_project(sp500, tmp_path_factory):
    """The last 400 embedded days prepared by the pipeline's own function, beside the real lesson params."""
    root = tmp_path_factory.mktemp("stock")
    layout = Layout(root)
    raw = layout.raw("stock")
    raw.mkdir(parents=True)
    sp500.tail(400).to_csv(raw / "prices.csv", index=False, date_format="%Y-%m-%d")
    (raw / "SOURCE.json").write_text('{"dataset": "stock", "source": "embedded"}')
    real = load_params(ROOT / "params.yaml")
    lessons = {lesson: {**real.lessons[lesson].model_dump(), "epochs": 2} for lesson in STOCK_LESSONS}
    params = parse_params({"device": "cpu", "datasets": {"stock": real.datasets["stock"].model_dump()},
                           "lessons": lessons})
    prepare_dataset("stock", params.datasets["stock"], raw, layout.prepared("stock"))
    return params, layout


@pytest.mark.parametrize("lesson", STOCK_LESSONS)
def test_each_stock_lesson_trains_and_reports_beside_its_baseline(small_stock_project, lesson, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_THREADS", "1")
    params, layout = small_stock_project
    train_stage(lesson, params, layout)
    metrics = evaluate_stage(lesson, params, layout)
    assert metrics["epochs"] == 2 and metrics["data_source"] == "embedded" and metrics["test_days"] == 76
    if params.lessons[lesson].target == "close":
        assert isinstance(metrics["beats_persistence"], bool) and metrics["persistence_rmse"] > 0
        # anchored at today's close, an untrained-ish model is off by daily moves, not by the price level
        assert metrics["test_rmse"] < 10 * metrics["persistence_rmse"]
    else:
        assert isinstance(metrics["beats_always_up"], bool) and 0 <= metrics["test_accuracy"] <= 1
    baseline = "always-up" if params.lessons[lesson].target == "updown" else "persistence"
    assert metrics["verdict"].split(":")[0] in {f"beats {baseline}", f"does not beat {baseline}",
                                                f"no better than {baseline}"}
    assert (layout.eval_log(lesson) / "plots" / "images" / "predicted_vs_actual.png").stat().st_size > 10_000


def test_training_is_deterministic(small_stock_project, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_THREADS", "1")
    params, layout = small_stock_project
    train_stage("stock-mlp", params, layout)
    first = torch.load(layout.model("stock-mlp"), weights_only=True)
    assert not layout.checkpoint("stock-mlp").exists()
    train_stage("stock-mlp", params, layout)
    second = torch.load(layout.model("stock-mlp"), weights_only=True)
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_a_window_longer_than_the_prepared_one_is_refused_naming_the_option(small_stock_project):
    params, layout = small_stock_project
    lesson = params.lessons["stock-mlp"].model_copy(update={"window": 21})
    with pytest.raises(ValueError, match="windows of 20; raise datasets.stock.options.window"):
        inputs(lesson, load_prepared(layout.prepared("stock")), "train")


def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(small_stock_project, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONFLOW_THREADS", "1")
    params, layout = small_stock_project
    data = load_prepared(layout.prepared("stock"))
    lesson = params.lessons["stock-lstm"].model_copy(update={"epochs": 3})

    def fit_for(epochs, checkpoint):
        make_deterministic(lesson.seed)
        model = build_for(lesson, data)
        history, best = train_net(model, lesson.model_copy(update={"epochs": epochs}), data, device=torch.device("cpu"),
                                  checkpoint=Checkpoint(checkpoint, "same", "resume"))
        return model, best, history

    straight, straight_best, _ = fit_for(3, tmp_path / "straight.pt")
    with killed_after_checkpoint(tmp_path / "resumed.pt"):
        fit_for(3, tmp_path / "resumed.pt")
    killed = torch.load(tmp_path / "resumed.pt", weights_only=False)["history"]
    resumed, resumed_best, history = fit_for(3, tmp_path / "resumed.pt")
    assert history.epochs[0] == killed[0] and len(history.epochs) == 3  # epoch 1 came from the checkpoint
    assert straight_best.epoch == resumed_best.epoch and straight_best.val_loss == resumed_best.val_loss
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
        assert torch.equal(straight_best.weights[key], resumed_best.weights[key]), key


@pytest.mark.long  # the contributor's tier stays under 10 minutes (BENCHMARKS.md, test tiers)
def test_dvc_repro_builds_stock_mlp_with_its_verdict_and_plot(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["lessons"]["stock-mlp"]["epochs"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False, allow_unicode=True))
    dvc(project, "repro", "evaluate@stock-mlp", env=project_env(**ONE_THREAD))
    metrics = read_json(project / "results" / "stock-mlp" / "eval" / "metrics.json")
    assert metrics["data_source"] == "embedded" and metrics["test_start"] > "2014"
    assert {"test_rmse", "test_mae", "persistence_rmse", "persistence_mae", "beats_persistence", "verdict"} <= set(metrics)
    shown = yaml.safe_load(dvc(project, "metrics", "show", "--json").stdout)
    files = next(iter(shown.values()))["data"]
    assert files["results/stock-mlp/eval/metrics.json"]["data"]["verdict"] == metrics["verdict"]
    assert (project / "results" / "stock-mlp" / "eval" / "plots" / "images" / "predicted_vs_actual.png").is_file()
    assert (project / "results" / "stock-mlp" / "train" / "plots" / "metrics" / "val" / "loss.tsv").is_file()
