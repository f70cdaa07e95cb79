"""Device and CPU thread selection shared by every command."""

from __future__ import annotations

import os

import torch

from zhcls.errors import ConfigError, ZhclsError


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


#: Environment variable giving the CPU thread count when no flag or config key sets one.
THREADS_ENV = "ZHCLS_THREADS"


def resolve_threads(threads: int | None, source: str = "--threads") -> int | None:
    """The CPU thread count to use: ``threads`` when given, else ``$ZHCLS_THREADS``, else
    None (the library default). 0 also means the library default. ``source`` names the
    flag or config key in error messages."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return None
        if not raw.isdigit():
            raise ConfigError(f"environment variable {THREADS_ENV}: expected a thread count "
                              f">= 0 (0 = library default), got {raw!r}; unset it or fix it")
        threads = int(raw)
    elif threads < 0:
        raise ConfigError(f"{source}: expected a thread count >= 0 (0 = library default), "
                          f"got {threads}")
    return threads or None


def apply_threads(threads: int | None, source: str = "--threads") -> int:
    """Set torch's intra-op CPU threads (process-wide) from :func:`resolve_threads`;
    returns the thread count now in use."""
    n = resolve_threads(threads, source)
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()
