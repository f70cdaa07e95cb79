"""Small helpers every layer shares: atomic file writes, the CJK character test and the check
for optional extras.

Written here once so that every writer of a JSON/YAML file, and every check for Chinese text,
behaves the same."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from zhcls.errors import ConfigError, ZhclsError

# The optional extras of pyproject.toml: what each adds (module names as imported).
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "fastapi_offline", "uvicorn", "prometheus_client"),
    "export": ("onnx", "onnxscript", "onnxruntime"),
    "explain": ("captum",),
}


class MissingExtraError(ZhclsError, ImportError):
    """An optional dependency of a feature is not installed; the message has the pip command."""


def require_extra(extra: str, *modules: str) -> None:
    """Import ``modules`` (default: all of ``EXTRAS[extra]``) or raise a one-line
    :class:`MissingExtraError` naming the missing module and ``pip install 'zhcls[extra]'``."""
    for name in modules or EXTRAS[extra]:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingExtraError(
                f"{name} is not installed; it comes with the optional extra [{extra}]: "
                f"pip install 'zhcls[{extra}]'  (or 'zhcls[all]')") from None

# CJK Unified Ideographs with extensions A-F, compatibility ideographs and their supplement.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF), (0x2F800, 0x2FA1F), (0x30000, 0x3134F),
)


def is_cjk(char: str) -> bool:
    """True for one CJK ideograph (any of :data:`CJK_RANGES`)."""
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in CJK_RANGES)


def looks_like_local_path(name: str) -> bool:
    """True when ``name`` is meant as a local path rather than a hub id (``org/name``): it
    starts with ``/ . ~``, has a backslash or more than one separator, or its first component
    is an existing local directory (``runs/best`` when ``runs/`` exists)."""
    text = str(name)
    if text.startswith(("/", ".", "~")) or "\\" in text or text.count(os.sep) > 1:
        return True
    if os.altsep and os.altsep in text:
        return True
    return os.sep in text and Path(text.split(os.sep, 1)[0]).expanduser().is_dir()


def missing_path_message(path: str | Path, what: str = "path does not exist") -> str:
    """``'<path>: <what>'`` plus close matches (case-insensitive) found in the
    deepest existing parent directory, e.g. ``did you mean thucnews?`` for ``THUCNews``."""
    import difflib

    path = Path(path).expanduser()
    parent, missing = path.parent, path.name
    while not parent.is_dir() and parent != parent.parent:
        parent, missing = parent.parent, parent.name
    message = f"{path}: {what}"
    if not parent.is_dir():
        return message
    try:
        entries = sorted(p.name for p in parent.iterdir())
    except OSError:
        return message
    lowered = {e.lower(): e for e in entries}
    close = difflib.get_close_matches(missing.lower(), list(lowered), n=3, cutoff=0.6)
    if close:
        names = ", ".join(str(parent / lowered[c]) for c in close)
        message += f"; did you mean {names}?"
    elif missing != path.name:
        message += f" ({parent / missing} is missing)"
    return message


def current_umask() -> int:
    """The process umask, read without changing it where Linux shows it
    (``/proc/self/status``); elsewhere set to 0o077 for an instant and restored (a file another
    thread creates in that instant is private rather than world-writable)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _chmod_normal(path: Path, umask: int, executable: bool = False) -> None:
    """Give a file zhcls just created the permissions of a normal ``open()``:
    ``0o666 & ~umask`` (``0o777`` when ``executable``); where the file system refuses chmod
    (some network or FAT mounts) the file keeps what it has."""
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if executable else 0o666) & ~umask)


def check_at_least_one(args: Any, *flags: str) -> None:
    """Raise a one-line :class:`~zhcls.errors.ConfigError` naming the flag (``--batch-size
    must be >= 1, got 0``) when an integer option of ``args`` (an argparse namespace;
    ``flags`` are its attribute names, e.g. ``"batch_size"``) is below 1; None is allowed
    (the option's default). The CLI turns it into exit status 2."""
    for flag in flags:
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to a temporary file beside ``path``, fsync it, then rename it into
    place: a reader (or a kill -9) never sees a half-written file. The file gets the
    permissions a plain ``open(path, "w")`` gives (``0o666 & ~umask``), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        _chmod_normal(Path(tmp), current_umask())
        with os.fdopen(fd, "w", encoding=encoding, newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """:func:`atomic_write_text` of ``obj`` as UTF-8 JSON (non-ASCII kept, numpy floats as
    floats), ending in a newline."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent, default=_default)
    return atomic_write_text(path, text + "\n")


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fsync_tree(root: Path) -> None:
    """fsync every file under ``root`` and ``root`` itself; each file also gets the
    permissions of a normal ``open()`` (executables keep their x bits): writers such as
    safetensors >= 0.8 create 0600 files, and a staged directory holds nothing private."""
    umask = current_umask()
    for file in sorted(root.rglob("*")):
        if file.is_file():
            if not file.is_symlink():  # a link's target is not ours to change
                _chmod_normal(file, umask, executable=bool(file.stat().st_mode & 0o111))
            with file.open("rb") as f:
                os.fsync(f.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(staged: str | Path, final: str | Path) -> Path:
    """Move the fully written directory ``staged`` to ``final`` (a sibling), replacing an
    existing ``final`` only after ``staged`` is synced to disk. Its files get the permissions
    of a normal ``open()`` (``0o666 & ~umask``), whatever the library that wrote them chose."""
    staged, final = Path(staged), Path(final)
    _fsync_tree(staged)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


# Files that say whose a directory is: what ``describe_dir`` reports it as.
DIR_MARKERS: tuple[tuple[str, str], ...] = (
    ("zhcls-run.json", "a `zhcls train` run or checkpoint"),
    ("model.safetensors", "a model checkpoint"), ("pytorch_model.bin", "a model checkpoint"),
    ("model.onnx", "an ONNX export"), ("model.skops", "a `zhcls baseline` checkpoint"),
    ("label_report.json", "a `zhcls label` output"), ("class.txt", "a dataset"),
)
SPLIT_STEMS = ("train", "dev", "test")


def check_out_not_file(path: str | Path, flag: str = "--out") -> Path:
    """``path`` as a Path, or a one-line :class:`~zhcls.errors.ConfigError` (``--out f.csv:
    is a file; pass a new or empty directory``) when it exists and is not a directory. Call it
    before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path}: is a file; pass a new or empty directory")
    return path


def describe_dir(path: str | Path) -> str | None:
    """What ``path`` holds, by its files (``"a dataset (class.txt)"``), or None for a missing
    or empty directory, or one without any file of :data:`DIR_MARKERS` or a split file
    (``train.txt``, ``dev.jsonl``, ...)."""
    path = Path(path)
    if not path.is_dir():
        return None
    names = {p.name for p in path.iterdir()}
    for marker, what in DIR_MARKERS:
        if marker in names:
            return f"{what} ({marker})"
    splits = sorted(n for n in names if n.split(".", 1)[0] in SPLIT_STEMS and "." in n)
    return f"a dataset ({', '.join(splits[:3])})" if splits else None


def refuse_foreign_out(path: str | Path, found: str, own: str, flag: str = "--out") -> None:
    """Raise the one-line :class:`~zhcls.errors.ConfigError` for an ``--out`` that holds
    ``found`` (e.g. ``describe_dir``'s answer) rather than ``own`` (what this command writes
    and may replace)."""
    raise ConfigError(f"{flag} {path}: holds {found}, not {own}; writing there would replace "
                      "its files. Pass a new or empty directory")
