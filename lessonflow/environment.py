"""What a lesson was trained on and with: the hardware and software versions its train log records.

Recorded at training time, so a model card states what trained the model, not what rendered
the card. Nothing here decides what a stage computes.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import numpy
import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_model() -> str:
    """The CPU's marketing name: Linux's ``model name`` line, else what the platform module says."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: str) -> dict[str, Any]:
    """Python, torch and numpy versions and the CPU; the GPU and CUDA version when ``device`` is ``cuda``."""
    facts: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                             "numpy": numpy.__version__, "cpu": cpu_model()}
    if device == "cuda":
        facts.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda)
    return facts
