"""Checks of ``zhcls predict``'s ``--file`` / ``--out`` / ``--format`` made before the model is
loaded, so a user mistake is one line naming the flag and nothing is written:

* the output format follows the ``--out`` suffix (``.jsonl`` / ``.json`` → jsonl, ``.tsv`` →
  tsv, ``.csv`` → csv) when ``--format`` is not given; a ``--format`` that contradicts such a
  suffix is refused; any other suffix (``.txt``, none) gets ``--format`` or the table;
* ``--file`` is an existing regular file (a directory is named as such);
* ``--out`` is not the ``--file`` being read, not a directory, and not inside the checkpoint
  directory being used (renaming the output over ``model.safetensors`` would destroy it).
"""

from __future__ import annotations

import os
from pathlib import Path

from zhcls.errors import ConfigError, DataError

SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".tsv": "tsv", ".csv": "csv"}
DEFAULT_FORMAT = "table"


def _is_file_path(out: str | None) -> bool:
    return out not in (None, "-")


def output_format(fmt: str | None, out: str | None) -> str:
    """The format to write: ``fmt`` (the ``--format`` given, or None) checked against the
    suffix of ``out``, or the suffix's format, or the table."""
    implied = SUFFIX_FORMATS.get(Path(out).suffix.lower()) if _is_file_path(out) else None
    if fmt is None:
        return implied or DEFAULT_FORMAT
    if implied is not None and fmt != implied:
        raise ConfigError(f"--format {fmt} contradicts --out {out}, whose suffix "
                          f"{Path(out).suffix} means {implied}: drop --format (the suffix "
                          f"chooses it), or give --out a {_suffix_for(fmt)} path")
    return fmt


def _suffix_for(fmt: str) -> str:
    if fmt == "table":
        return ".txt"
    return next(s for s, f in SUFFIX_FORMATS.items() if f == fmt)


def check_input_file(file: str | None) -> None:
    """``--file`` is ``-`` (stdin), absent, or an existing file."""
    if file in (None, "-"):
        return
    path = Path(file)
    if path.is_dir():
        raise DataError("is a directory; --file takes a text / TSV / CSV / JSONL file (or - for "
                        "stdin)", path)
    if not path.is_file():
        raise DataError("input file not found (--file)", path)


def check_out(out: str | None, file: str | None, checkpoint: str | None) -> None:
    """``--out`` is a file path that destroys neither the input nor the checkpoint."""
    if not _is_file_path(out):
        return
    target = Path(out)
    if target.is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file path (e.g. {out}/pred.jsonl)")
    if file not in (None, "-") and target.exists() and os.path.samefile(file, out):
        raise ConfigError(f"--out {out} is the --file being read; writing it would destroy the "
                          "input: give --out another path")
    if checkpoint is not None and _inside(target, Path(checkpoint)):
        raise ConfigError(f"--out {out} is inside the checkpoint {checkpoint} being used; "
                          "writing there could destroy it: give --out a path outside it")


def _inside(target: Path, checkpoint: Path) -> bool:
    """``target`` (existing or not; symlinks followed) is ``checkpoint`` or lies under it."""
    if not checkpoint.exists():
        return False
    if target.exists() and os.path.samefile(target, checkpoint):
        return True
    resolved, root = target.resolve(), checkpoint.resolve()
    return resolved == root or (checkpoint.is_dir() and root in resolved.parents)
