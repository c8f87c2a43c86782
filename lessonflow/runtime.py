"""Where and how reproducibly a stage computes: the device it asks for and the seeded RNG.

Kept apart from the training loop so that lessons which train no torch model (the NumPy ones)
start the same way without depending on the loop's code.
"""

from __future__ import annotations

import os

import torch

THREADS_ENV = "LESSONFLOW_THREADS"


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU; an explicit request that cannot be met is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return torch.device(next(name for name, ok in available.items() if ok))
    if not available.get(requested, False):
        raise RuntimeError(f"device: {requested!r} was requested but is not available on this machine")
    return torch.device(requested)


def make_deterministic(seed: int) -> None:
    """Same seed, data and params on the CPU must give bit-identical weights.

    ``LESSONFLOW_THREADS`` caps the CPU threads so that stages run side by side do not
    oversubscribe the cores; it is an execution setting, not a param.
    """
    threads = int(os.environ.get(THREADS_ENV) or 0)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if torch.cuda.is_available():  # CPU kernels are deterministic already; the switch costs seconds of imports
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
