"""Choose the device and the compute dtype once."""
from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' -> the first CUDA GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for but no CUDA GPU is available")
    return device


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the non-quantised weights for a precision mode."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def set_threads(n: int | None) -> None:
    """Use `n` CPU threads in torch and OpenCV (None or 0: leave the libraries' defaults). On a busy
    2-core machine one thread was many times faster than two."""
    if n:
        import cv2

        torch.set_num_threads(n)
        cv2.setNumThreads(n)
