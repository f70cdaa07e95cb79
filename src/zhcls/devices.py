"""Device selection shared by every command."""

from __future__ import annotations

import torch

from zhcls.errors import ZhclsError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; an unavailable CUDA request is an error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ZhclsError(f"device {device!r} requested but CUDA is not available; use cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise ZhclsError(f"unknown device {device!r}: {exc}") from None
