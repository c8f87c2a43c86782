"""Daily prices (Yahoo's OHLCV layout) as windows of past days, split in time order.

Sources, all written to ``data/raw/stock/prices.csv``: ``embedded`` and ``mirror``, the S&P 500
prices that ``arch`` ships; ``official``, Yahoo Finance through ``yfinance``; ``csv``, a local file.
:func:`validate_prices` stops the download on an empty answer, a missing column or a gap, naming
the file. Sample *i* is the ``window`` days before its target day; samples are split by target day
**in time order, never shuffled** (a random split lets the model see the future), and features are
standardised with the train days' statistics only, so nothing of the test period leaks in.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lessonflow.datasets import DatasetSpec, register
from lessonflow.datasets.fetch import DownloadError
from lessonflow.schema import ParamsError, describe

if TYPE_CHECKING:
    import pandas as pd

RAW_FILE = "prices.csv"
COLUMNS = ["Date", "Open", "High", "Low", "Close", "Adj Close", "Volume"]
PRICE_COLUMNS = COLUMNS[1:]
FeatureName = Literal["Open", "High", "Low", "Close", "Adj Close", "Volume"]
MIN_SAMPLES = 30  # target days; fewer cannot be split into meaningful train/validation/test parts
SPLITS = ("train", "val", "test")


class StockOptions(BaseModel):
    """``datasets.stock.options``: which prices to fetch and how to cut them into samples."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ticker: str = "^GSPC"  # official: the S&P 500 index, the same series as the embedded data
    start: dt.date = dt.date(1999, 1, 1)
    end: dt.date = dt.date(2019, 1, 1)
    path: str | None = None  # csv: the file, relative to the project root
    window: int = Field(20, gt=0, description="most past days a lesson may use as input")
    test_fraction: float = Field(0.2, gt=0, lt=1)
    features: list[FeatureName] = Field(default_factory=lambda: ["Open", "High", "Low", "Close", "Volume"],
                                        min_length=1)


def stock_options(params: Any) -> StockOptions:
    try:
        return StockOptions.model_validate(params.options)
    except ValidationError as err:
        raise ParamsError("; ".join(describe(err, StockOptions, ("datasets", "stock", "options")))) from None


def validate_prices(frame: pd.DataFrame | None, where: str, min_rows: int = 1) -> pd.DataFrame:
    """Check a price table from any source; return it with parsed dates and float columns.

    Raises ``ValueError`` naming ``where`` (the file or ticker) and the offending column.
    """
    import pandas as pd  # pandas and scikit-learn are imported where used: every stage imports this module
    if frame is None or len(frame) == 0:
        raise ValueError(f"{where}: no rows (an empty answer usually means a wrong ticker or date range, "
                         "or that Yahoo refused the request)")
    missing = [column for column in COLUMNS if column not in frame.columns]
    if missing:
        raise ValueError(f"{where}: missing column(s) {', '.join(map(repr, missing))}; "
                         f"expected Yahoo's layout: {', '.join(COLUMNS)}")
    table = pd.DataFrame({"Date": pd.to_datetime(frame["Date"], errors="coerce")})
    for column in PRICE_COLUMNS:
        table[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    for column in COLUMNS:
        bad = table[column].isna().to_numpy().nonzero()[0]
        if len(bad):
            raise ValueError(f"{where}: column {column!r} has {len(bad)} missing or non-numeric value(s), "
                             f"first in data row {bad[0] + 1} ({frame[column].iloc[bad[0]]!r})")
    dates = table["Date"]
    repeated = dates.duplicated().to_numpy().nonzero()[0]
    if len(repeated):
        raise ValueError(f"{where}: column 'Date' repeats {dates.iloc[repeated[0]].date()} "
                         f"(data row {repeated[0] + 1}); each day must appear once")
    backwards = (dates.diff() < pd.Timedelta(0)).to_numpy().nonzero()[0]
    if len(backwards):
        row = backwards[0]
        raise ValueError(f"{where}: column 'Date' is not in increasing order: {dates.iloc[row].date()} "
                         f"(data row {row + 1}) comes after {dates.iloc[row - 1].date()}; sort the file by date")
    if len(table) < min_rows:
        raise ValueError(f"{where}: {len(table)} rows; at least {min_rows} are needed "
                         f"(the input window plus {MIN_SAMPLES} days to predict)")
    return table.reset_index(drop=True)


def yahoo_prices(options: StockOptions) -> pd.DataFrame:
    """One ticker's daily prices from Yahoo; any failure is a ``DownloadError``, never an empty table."""
    import pandas as pd
    import yfinance as yf
    from yfinance.exceptions import YFException, YFRateLimitError

    what = f"yfinance {options.ticker} {options.start}..{options.end}"
    try:
        frame = yf.Ticker(options.ticker).history(start=options.start, end=options.end, interval="1d",
                                                  auto_adjust=False, actions=False, raise_errors=True)
    except YFRateLimitError as err:
        raise DownloadError(f"{what}: Yahoo is rate-limiting this machine ({err}); wait and rerun, "
                            "or use datasets.stock.source: csv with a downloaded file") from None
    except (YFException, OSError) as err:  # curl_cffi's connection and HTTP errors are OSErrors
        raise DownloadError(f"{what}: {type(err).__name__}: {err}") from None
    if frame is None or frame.empty:
        raise DownloadError(f"{what}: Yahoo returned no rows; check the ticker and the dates")
    frame = frame.copy()
    frame.index = pd.DatetimeIndex(frame.index).tz_localize(None).normalize()
    return frame.rename_axis("Date").reset_index()


def fetch(source: str, raw_dir: Path, params: Any) -> None:
    import pandas as pd

    options = stock_options(params)
    if source in ("embedded", "mirror"):
        from arch.data import sp500

        frame, where = sp500.load().rename_axis("Date").reset_index(), "arch.data.sp500"
    elif source == "official":
        frame, where = yahoo_prices(options), f"yfinance {options.ticker}"
    else:  # csv
        if not options.path:
            raise ParamsError("datasets.stock.options.path: source 'csv' needs the path of a price file")
        path = Path(options.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"datasets.stock.options.path: {path} is not a file")
        frame, where = pd.read_csv(path), str(path)
    table = validate_prices(frame, where, min_rows=options.window + MIN_SAMPLES)
    table.to_csv(raw_dir / RAW_FILE, index=False, date_format="%Y-%m-%d", float_format="%.10g")


def chronological_split(n_samples: int, val_fraction: float, test_fraction: float) -> dict[str, slice]:
    """Consecutive, non-overlapping index ranges: the oldest samples train, the newest test.

    Both fractions are shares of *all* samples (0.1 and 0.2 leave 70 % to train), unlike the
    image datasets' ``val_fraction``, which is carved out of a fixed training split.
    """
    n_test = max(1, round(n_samples * test_fraction))
    n_val = max(1, round(n_samples * val_fraction))
    n_train = n_samples - n_val - n_test
    if n_train < 1:
        raise ValueError(f"{n_samples} samples leave nothing to train on with val_fraction {val_fraction} "
                         f"and test_fraction {test_fraction}")
    return {"train": slice(0, n_train), "val": slice(n_train, n_train + n_val),
            "test": slice(n_train + n_val, n_samples)}


def scale_on_train(values: np.ndarray, n_train_rows: int) -> tuple[np.ndarray, Any]:
    """Standardise every row with the mean and deviation of the first ``n_train_rows`` rows only."""
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(values[:n_train_rows])
    return scaler.transform(values).astype(np.float32), scaler


def windows(values: np.ndarray, window: int) -> np.ndarray:
    """Sample ``i`` = rows ``i .. i+window-1``; its target is row ``i+window``. Shape (rows-window, window, F)."""
    view = np.lib.stride_tricks.sliding_window_view(values[:-1], window, axis=0)  # (N, F, window)
    return np.ascontiguousarray(view.transpose(0, 2, 1))


def persistence(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The naive forecast "tomorrow closes where today closed": (predictions, actuals) for days 1..n-1."""
    return close[:-1], close[1:]


def prepare_prices(table: pd.DataFrame, options: StockOptions, val_fraction: float) -> dict[str, Any]:
    window = options.window
    close = table["Close"].to_numpy()
    n_samples = len(table) - window
    parts = chronological_split(n_samples, val_fraction, options.test_fraction)
    train_rows = window + parts["train"].stop  # every day up to the last train target
    scaled, _ = scale_on_train(table[options.features].to_numpy(), train_rows)
    x = torch.from_numpy(windows(scaled, window))
    last_close, next_close = persistence(close)
    last_close, next_close = last_close[window - 1:], next_close[window - 1:]
    target_dates = table["Date"].dt.strftime("%Y-%m-%d").to_numpy()[window:]
    prepared: dict[str, Any] = {
        "classes": ["down", "up"], "features": list(options.features), "window": window,
    }
    for split, part in parts.items():
        prepared |= {
            f"x_{split}": x[part],
            f"y_{split}": torch.from_numpy(next_close[part].copy()),
            f"up_{split}": torch.from_numpy((next_close[part] > last_close[part]).astype(np.float32)),
            f"last_close_{split}": torch.from_numpy(last_close[part].copy()),
            f"dates_{split}": target_dates[part].tolist(),
        }
    return prepared


def decode(source: str, raw_dir: Path, params: Any) -> dict[str, Any]:
    """Windows (N, window, features) as float32; ``y_*`` next-day close and ``up_*`` 1.0 if it rose."""
    import pandas as pd

    options = stock_options(params)
    path = raw_dir / RAW_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run the download stage first (dvc repro)")
    table = validate_prices(pd.read_csv(path), str(path), min_rows=options.window + MIN_SAMPLES)
    return prepare_prices(table, options, params.val_fraction)


register(DatasetSpec("stock", ("embedded", "official", "csv", "mirror"), fetch, decode, live_sources=("official",)))
