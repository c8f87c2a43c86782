"""The pictures people look at instead of reading numbers, drawn with matplotlib off-screen."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402


def confusion_matrix_figure(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], title: str):
    figure, axes = plt.subplots(figsize=(5.5, 5), dpi=100)
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=range(len(classes)), display_labels=classes,
                                            ax=axes, colorbar=False, cmap="Blues")
    axes.set_title(title)
    figure.tight_layout()
    return figure


def image_grid(images: np.ndarray, captions: list[str], title: str, columns: int = 8):
    """A grid of (N, C, H, W) uint8 images with one caption each, e.g. the misclassified test digits."""
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.5 * rows + 0.4), dpi=100, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, caption in zip(axes.flat, images, captions):
        picture = image.transpose(1, 2, 0)
        ax.imshow(picture.squeeze(-1) if picture.shape[-1] == 1 else picture, cmap="gray")
        ax.set_title(caption, fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    return figure
