"""Errors that tell the user what was expected, what was found, where, and how to fix it."""

from __future__ import annotations

from pathlib import Path


class ZhclsError(Exception):
    """Base class of every error zhcls raises on purpose (bad input, bad config)."""


class ConfigError(ZhclsError, ValueError):
    """A configuration key or value is wrong; the message names the key (``--train.lr``)."""


class DataError(ZhclsError, ValueError):
    """A data file is malformed. Carries the file and the 1-based line number."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = str(path) if path is not None else None
        self.line = line
        where = ""
        if self.path is not None:
            where = f"{self.path}:{line}: " if line is not None else f"{self.path}: "
        super().__init__(f"{where}{message}")


class CheckpointError(ZhclsError, ValueError):
    """A checkpoint directory is missing files or does not match the config / dataset."""
