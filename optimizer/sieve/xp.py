"""The array-module switch: NumPy always, CuPy when it is importable and sees a GPU.

The sieve is written once against the NumPy API subset that CuPy implements too; this
module only decides which of the two modules the code receives (`WINOPT_DEVICE=cpu|gpu|
auto`, `auto` by default) and moves results back to host memory. Nothing else in winopt
imports CuPy, so a machine without it never pays for the import.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np

from winopt.contracts.errors import UserError

DEVICES = ("cpu", "gpu", "auto")
ENV_VAR = "WINOPT_DEVICE"


def _cupy_with_device() -> ModuleType | None:
    """CuPy when it imports and at least one CUDA device answers, else None."""
    try:
        import cupy  # type: ignore[import-not-found]
    except Exception:  # ImportError, or a broken CUDA install raising anything at import
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no driver, no device: CuPy raises its own CUDA errors
        return None
    return cupy


def requested_device(device: str | None = None) -> str:
    """`device`, else `$WINOPT_DEVICE`, else "auto"; an unknown name is a `UserError`."""
    choice = (device or os.environ.get(ENV_VAR) or "auto").strip().lower()
    if choice not in DEVICES:
        source = "device" if device else ENV_VAR
        raise UserError(f"{source}={choice!r} is not one of {', '.join(DEVICES)}")
    return choice


def array_module(device: str | None = None) -> ModuleType:
    """NumPy or CuPy for `device` ("cpu" | "gpu" | "auto", default from `$WINOPT_DEVICE`).

    "gpu" without a usable CuPy is an error rather than a silent fall-back: someone asked
    for it and would otherwise wait hours on a CPU without knowing why."""
    choice = requested_device(device)
    if choice == "cpu":
        return np
    cupy = _cupy_with_device()
    if cupy is not None:
        return cupy
    if choice == "gpu":
        raise UserError(
            "GPU requested but CuPy is not installed or sees no CUDA device "
            "(pip install 'winopt[gpu]', or set WINOPT_DEVICE=cpu)"
        )
    return np


def is_gpu(xp: ModuleType) -> bool:
    """Whether `xp` is CuPy (arrays live in device memory)."""
    return xp is not np


def to_host(array: Any) -> np.ndarray:
    """A NumPy array from a NumPy or CuPy array."""
    if isinstance(array, np.ndarray):
        return array
    return array.get()
