"""The device and precision decisions of a training run, in one pure function (``plan``).

Why a pure function: the GPU choices (bf16 autocast, channels-last, cuDNN autotuning,
``torch.compile``) must be testable on a CPU-only CI machine, so the decision takes the
device type and capability flags as plain arguments and the torch queries live in
``plan_for``. ``autocast`` then applies a plan without any branching in the training loop.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Accel:
    """How one run uses its device.

    ``autocast_dtype``: the mixed-precision dtype of forward passes, None for plain float32;
    ``channels_last``: store 4-D (image) batches and conv weights as NHWC, what tensor cores want;
    ``compile``: wrap the model in ``torch.compile``; ``cudnn_benchmark``: let cuDNN time its
    algorithms (faster, but the chosen kernel, hence the bits, may differ between runs).
    """

    device_type: str
    autocast_dtype: torch.dtype | None = None
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False


def plan(device_type: str, *, bf16_supported: bool, image_inputs: bool, deterministic: bool,
         compile_requested: bool) -> Accel:
    """Decide the fast paths for a device.

    On CUDA: bf16 autocast when the GPU has it (no loss scaling needed, unlike float16, so
    no fp16 fallback: older GPUs train in float32), channels-last for image inputs, and
    cuDNN autotuning unless determinism was asked for. The CPU and MPS keep float32 and
    the default layout: at these model sizes bf16 on a CPU is slower, and bit-identical
    CPU runs are a promise of the project. ``torch.compile`` only when requested, on any
    device but MPS (where it is not supported).
    """
    cuda = device_type == "cuda"
    return Accel(
        device_type=device_type,
        autocast_dtype=torch.bfloat16 if cuda and bf16_supported else None,
        channels_last=cuda and image_inputs,
        compile=compile_requested and device_type != "mps",
        cudnn_benchmark=cuda and not deterministic,
    )


def plan_for(device: torch.device, *, image_inputs: bool, deterministic: bool = True,
             compile_requested: bool = False) -> Accel:
    """``plan`` with the capability flags asked of the installed torch and GPU."""
    bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return plan(device.type, bf16_supported=bf16, image_inputs=image_inputs, deterministic=deterministic,
                compile_requested=compile_requested)


def apply(accel: Accel, model: torch.nn.Module) -> torch.nn.Module:
    """Set the global backend switches of ``accel`` and return the module to call in the loop.

    The returned module may be a compiled wrapper; ``model`` itself stays the one whose
    ``state_dict`` is checkpointed and saved, so compiled and eager runs write the same keys.
    """
    if accel.device_type == "cuda":
        torch.backends.cudnn.benchmark = accel.cudnn_benchmark
        if accel.cudnn_benchmark:  # determinism was not asked for: allow the fast non-deterministic kernels
            torch.use_deterministic_algorithms(False)
    if accel.channels_last:
        model.to(memory_format=torch.channels_last)
    return torch.compile(model) if accel.compile else model


def prepare_batch(accel: Accel, x: torch.Tensor) -> torch.Tensor:
    """Lay an input batch out the way ``accel`` wants it (NHWC for 4-D images under channels-last)."""
    if accel.channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(accel: Accel) -> contextlib.AbstractContextManager:
    """The mixed-precision context of ``accel`` (a no-op when it trains in float32)."""
    if accel.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(accel.device_type, dtype=accel.autocast_dtype)
