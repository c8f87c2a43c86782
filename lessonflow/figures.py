"""The pictures people look at instead of reading numbers, drawn with matplotlib off-screen."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402


def confusion_matrix_figure(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], title: str):
    """Counts of (true, predicted) pairs, written in each cell.

    Drawn here rather than with scikit-learn's ConfusionMatrixDisplay, whose import alone
    would cost every evaluate stage more than drawing it.
    """
    n = len(classes)
    counts = np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)
    figure, axes = plt.subplots(figsize=(5.5, 5), dpi=100)
    axes.imshow(counts, cmap="Blues")
    dark = counts > counts.max() / 2
    for (row, column), count in np.ndenumerate(counts):
        axes.text(column, row, str(count), ha="center", va="center", fontsize=8 if n > 5 else 10,
                  color="white" if dark[row, column] else "black")
    axes.set(xticks=range(n), yticks=range(n), xticklabels=classes, yticklabels=classes,
             xlabel="Predicted label", ylabel="True label", title=title)
    if max(map(len, classes)) > 2:  # class names rather than digits
        plt.setp(axes.get_xticklabels(), rotation=45, ha="right")
    figure.tight_layout()
    return figure


def image_grid(images: np.ndarray, captions: list[str], title: str, columns: int = 8):
    """A grid of (N, C, H, W) uint8 images with one caption each, e.g. the misclassified test digits.

    Tiled into one picture on a single axes: a subplot per image (and the layout pass over
    them) made this the slowest part of an evaluate stage.
    """
    count, channels, height, width = images.shape
    rows = max(1, -(-count // columns))
    gap, caption_room = max(2, width // 7), max(8, height // 2)
    cell_h, cell_w = height + caption_room + gap, width + gap
    sheet = np.full((rows * cell_h, columns * cell_w, channels), 255, dtype=np.uint8)
    figure = plt.figure(figsize=(1.3 * columns, 1.5 * rows + 0.4), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1 - 0.4 / figure.get_figheight()))
    for index, (image, caption) in enumerate(zip(images, captions)):
        row, column = divmod(index, columns)
        top, left = row * cell_h + caption_room, column * cell_w + gap // 2
        sheet[top:top + height, left:left + width] = image.transpose(1, 2, 0)
        axes.text(left + width / 2, top - 1, caption, ha="center", va="bottom", fontsize=8)
    axes.imshow(sheet.squeeze(-1) if channels == 1 else sheet, cmap="gray", vmin=0, vmax=255,
                interpolation="nearest")
    axes.axis("off")
    figure.suptitle(title)
    return figure


def curve_panels(curves: dict[str, list[float]], title: str, xlabel: str = "epoch", ylabel: str = "loss"):
    """One panel per named curve, stacked on a shared x axis (e.g. the loss of each optimiser per epoch)."""
    figure, axes = plt.subplots(len(curves), 1, figsize=(6, 2.4 * len(curves) + 0.6), dpi=100,
                                sharex=True, squeeze=False)
    for ax, (name, values) in zip(axes[:, 0], curves.items()):
        ax.plot(np.arange(len(values)), values)
        ax.set_title(name)
        ax.set_ylabel(ylabel)
        ax.grid(True)
    axes[-1, 0].set_xlabel(xlabel)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def training_curves(panels: dict[str, dict[str, tuple[list[float], list[float]]]], title: str, columns: int = 3,
                    xlabel: str = "step (epoch)", bands: dict[str, dict[str, tuple[list, list, list]]] | None = None):
    """One panel per metric (loss, accuracy …), one line per split (train, val …) over the logged steps;
    ``bands`` shades a line's spread (steps, lows, highs) in its colour: the seeds' range of a revision's result."""
    rows = -(-len(panels) // columns)
    width = min(columns, len(panels))
    figure, axes = plt.subplots(rows, width, figsize=(4.2 * width, 3.2 * rows + 0.5), dpi=100, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (metric, lines) in zip(axes.flat, panels.items()):
        for split, (steps, values) in lines.items():
            drawn = ax.plot(steps, values, label=split, marker="o" if len(steps) <= 20 else None, markersize=3)
            if band := (bands or {}).get(metric, {}).get(split):
                ax.fill_between(band[0], band[1], band[2], color=drawn[0].get_color(), alpha=0.2,
                                label=f"{split}: seeds' range")
        ax.set_title(metric)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.4)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def accuracy_bars(rows: list[tuple[str, str, float]], title: str):
    """Horizontal bars of test accuracy, coloured by what each row is (member, ensemble, bound)."""
    colours = {"member": "#8da0cb", "ensemble": "#fc8d62", "bound": "#b3b3b3"}
    figure, axes = plt.subplots(figsize=(7, 0.42 * len(rows) + 1.2), dpi=100)
    positions = np.arange(len(rows))[::-1]
    values = [value for _, _, value in rows]
    axes.barh(positions, values, color=[colours.get(what, "#66c2a5") for what, _, _ in rows])
    axes.set_yticks(positions, [name for _, name, _ in rows])
    for position, value in zip(positions, values):
        axes.text(value, position, f" {value:.2%}", va="center", fontsize=8)
    low = max(0.0, min(values) - 0.1)
    axes.set_xlim(low, 1.08)
    axes.set_xlabel("test accuracy")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def code_scatter_3d(codes: np.ndarray, labels: np.ndarray, classes: list[str], title: str):
    """Points of a 3-D code space (an autoencoder's bottleneck), coloured by class, with a legend."""
    figure = plt.figure(figsize=(6.5, 5.5), dpi=100)
    axes = figure.add_subplot(projection="3d")
    colours = plt.get_cmap("tab10")
    for index, name in enumerate(classes):
        chosen = labels == index
        axes.scatter(*codes[chosen].T, s=6, color=colours(index % 10), label=name, depthshade=False)
    axes.set_xlabel("code 1")
    axes.set_ylabel("code 2")
    axes.set_zlabel("code 3")
    axes.legend(fontsize=7, markerscale=2, loc="upper left", ncols=2)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def class_histogram(shares: np.ndarray, classes: list[str], title: str, reference: float | None = None):
    """Bars of the share of samples given each class; ``reference`` draws the uniform share as a line."""
    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=100)
    axes.bar(range(len(classes)), shares, color="#8da0cb")
    axes.set_xticks(range(len(classes)), classes)
    if reference is not None:
        axes.axhline(reference, color="grey", linestyle="--", linewidth=1, label="uniform")
        axes.legend(fontsize=8)
    axes.set_ylabel("share of samples")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def heat_map(values: np.ndarray, rows: list[str], columns: list[str], title: str, xlabel: str, ylabel: str):
    """A matrix of shares in [0, 1] with its row and column labels, e.g. attention weights or next-step probabilities."""
    figure, axes = plt.subplots(figsize=(0.45 * len(columns) + 2.4, 0.4 * len(rows) + 1.6), dpi=100)
    image = axes.imshow(values, cmap="bone", vmin=0, vmax=1, aspect="auto")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(columns)), columns, rotation=90)
    axes.set_yticks(range(len(rows)), rows)
    axes.set(xlabel=xlabel, ylabel=ylabel, title=title)
    figure.tight_layout()
    return figure


def text_table(rows: list[list[str]], headers: list[str], title: str):
    """Rows of text (e.g. a source sentence, its reference and the model's output) as one picture for the report."""
    figure, axes = plt.subplots(figsize=(11, 0.22 * len(rows) + 0.7), dpi=100)
    axes.axis("off")
    table = axes.table(cellText=rows, colLabels=headers, loc="upper center", cellLoc="left", colLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    axes.set_title(title)
    figure.tight_layout()
    return figure


def minimum_curve(x: np.ndarray, y: np.ndarray, title: str, xlabel: str, ylabel: str):
    """A loss over one parameter, its minimum marked (the grid search over w)."""
    best = int(np.argmin(y))
    figure, ax = plt.subplots(figsize=(6, 4), dpi=100)
    ax.plot(x, y)
    ax.scatter([x[best]], [y[best]], color="red", zorder=3, label=f"minimum at {xlabel}={x[best]:.2f}")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(True)
    figure.tight_layout()
    return figure


def loss_surface(w: np.ndarray, b: np.ndarray, loss: np.ndarray, title: str, zlabel: str = "Loss (MSE)"):
    """A loss over two parameters (meshgrids ``w`` and ``b``) as a 3-D surface."""
    figure = plt.figure(figsize=(6.5, 5), dpi=100)
    ax = figure.add_subplot(projection="3d")
    ax.plot_surface(w, b, loss, cmap="viridis")
    ax.set_xlabel("w")
    ax.set_ylabel("b")
    ax.set_zlabel(zlabel)
    ax.set_title(title)
    figure.tight_layout()
    return figure


def fitted_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, *,
                  points: dict[str, tuple[np.ndarray, np.ndarray]] | None = None, xlabel: str = "x",
                  ylabel: str = "y", level: float | None = None):
    """Fitted curves (name -> (x, y)) over the points they were fitted to, or over a decision ``level``."""
    figure, ax = plt.subplots(figsize=(6, 4.2), dpi=100)
    for name, (x, y) in (points or {}).items():
        ax.scatter(x, y, s=12, alpha=0.7, zorder=3, label=name)
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name)
    if level is not None:
        ax.axhline(level, color="red", lw=1)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    ax.grid(True)
    figure.tight_layout()
    return figure


def predicted_against_actual(actual: np.ndarray, predicted: dict[str, np.ndarray], title: str):
    """One panel per model: predictions against the true values, the diagonal where they would be equal."""
    figure, axes = plt.subplots(1, len(predicted), figsize=(5 * len(predicted), 4.4), dpi=100, squeeze=False)
    low, high = float(actual.min()), float(actual.max())
    for ax, (name, values) in zip(axes[0], predicted.items()):
        ax.scatter(actual, values, s=10, alpha=0.7)
        ax.plot([low, high], [low, high], color="black", linewidth=1)
        ax.set(title=name, xlabel="actual", ylabel="predicted")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def date_axis(ax) -> None:
    """Short date labels that fit every panel without rotation."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def price_forecast(dates: np.ndarray, actual, predicted, persistence, title: str, zoom_days: int):
    """The whole test period, and its last ``zoom_days`` where the one-day lag of persistence is visible."""
    days = np.array(dates, dtype="datetime64[D]")
    figure, axes = plt.subplots(2, 1, figsize=(10, 7), dpi=100)
    for ax, part in ((axes[0], slice(None)), (axes[1], slice(-zoom_days, None))):
        ax.plot(days[part], actual[part], color="black", lw=1.2, label="actual close")
        ax.plot(days[part], predicted[part], color="tab:red", lw=1, label="model")
        ax.plot(days[part], persistence[part], color="tab:blue", lw=1, ls="--", label="persistence (today's close)")
        ax.grid(True)
        ax.set_ylabel("close")
        date_axis(ax)
    axes[0].set_title(f"{title}: test period")
    axes[1].set_title(f"last {zoom_days} test days")
    axes[0].legend()
    figure.tight_layout()
    return figure


def direction_forecast(dates: np.ndarray, probability_up, rose, title: str):
    """Predicted probability of a rise against what happened, and running accuracy against always-up."""
    days = np.array(dates, dtype="datetime64[D]")
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), dpi=100, sharex=True)
    top.scatter(days, probability_up, c=np.where(rose > 0.5, "tab:green", "tab:red"), s=6)
    top.axhline(0.5, color="gray", lw=0.8)
    top.set_ylabel("predicted P(up)")
    top.set_title(f"{title}: test period (green: the close rose, red: it fell)")
    steps = np.arange(1, len(rose) + 1)
    bottom.plot(days, np.cumsum((probability_up > 0.5) == (rose > 0.5)) / steps, color="tab:red", label="model")
    bottom.plot(days, np.cumsum(rose) / steps, color="tab:blue", ls="--", label="always up")
    bottom.set_ylabel("accuracy so far")
    bottom.grid(True)
    bottom.legend()
    date_axis(bottom)
    figure.tight_layout()
    return figure
