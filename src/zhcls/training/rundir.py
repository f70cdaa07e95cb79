"""The run directory (``zhcls train --out DIR``): what may be in it, when it may be reused, how
a resume is checked to continue *the same run*, and atomic Trainer checkpoints.

Rules (docs/design.md, "Run directories and resume"):

* A new or empty directory starts a run. A non-empty one is refused unless the user asks to
  resume it (``train.resume``) or to overwrite it (``train.overwrite`` / ``--overwrite``);
  overwrite removes only what zhcls writes (:data:`RUN_OUTPUTS`) and refuses when other files
  are there, naming them.
* ``zhcls-run.json`` in the run directory and in every Trainer checkpoint holds the resolved
  config and the run's fingerprint: every config key that changes the result (all but
  :data:`NEUTRAL_KEYS`), the size and SHA-256 of the data files and of a local encoder's
  files, and the number of processes. A resume whose fingerprint differs is refused, naming
  each key with both values.
* Trainer checkpoints are written into ``checkpoints/.staging/checkpoint-N`` and renamed to
  ``checkpoints/checkpoint-N`` when complete; a resume skips (and removes) incomplete
  checkpoints and leftover staging directories with a warning and continues from the
  newest complete one.
* A finished run (its ``metrics.json``, written last, is there) is not resumed: the refusal
  says so, since training its last steps again would only replace its results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zhcls.config import Config
from zhcls.errors import CheckpointError, ConfigError
from zhcls.utils import atomic_write_json, replace_dir

logger = logging.getLogger(__name__)

RUN_FILE = "zhcls-run.json"
RUN_FORMAT = 1
#: Everything ``zhcls train`` (and its report) writes at the top of a run directory.
RUN_OUTPUTS = ("best", "eval_dev", "eval_test", "checkpoints", "tensorboard", "report", "metrics.json",
               "history.json", RUN_FILE)
#: ``zhcls report RUN OTHER``'s default output in RUN (a directory holding report.json).
COMPARISON_PREFIX = "report_vs_"
#: Temporary names of atomic writes (a kill -9 may leave them behind).
TEMP_PREFIXES = (".best.", ".metrics.json.", ".history.json.", f".{RUN_FILE}.")
STAGING = ".staging"
#: Config keys that do not change the trained model or its metrics: they may differ on resume.
NEUTRAL_KEYS = frozenset({
    "train.output_dir", "train.resume", "train.overwrite", "train.eval_batch_size",
    "train.logging_steps", "train.num_workers", "train.threads", "train.save_total_limit",
    "train.tensorboard", "train.evaluate_test", "train.report", "train.report_max_points",
    "data.dir", "data.cache_dir",
})
#: What ``zhcls train`` and ``zhcls pretrain`` write last: a run directory holding it is finished.
FINISHED_FILE = "metrics.json"
#: Files a Trainer checkpoint needs to be resumed from.
CHECKPOINT_FILES = ("model.safetensors", "trainer_state.json", "optimizer.pt", "scheduler.pt",
                    RUN_FILE)


# ----------------------------------------------------------------------------- fingerprint
def file_digest(path: Path) -> str:
    """``"size N, sha256 HEX"`` of one file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return f"size {path.stat().st_size}, sha256 {h.hexdigest()}"


def _data_files(data_dir: Path) -> dict[str, str]:
    from zhcls.data.formats import find_split_file

    files = [data_dir / "class.txt"]
    for split in ("train", "dev", "test"):
        try:
            files.append(find_split_file(data_dir, split))
        except Exception:  # noqa: BLE001 - a missing split is reported by the reader
            continue
    return {p.name: file_digest(p) for p in files if p.is_file()}


def _model_files(pretrained: str) -> dict[str, str]:
    """Digests of a local encoder directory's files (a hub name is identified by its name)."""
    root = Path(pretrained)
    if not root.is_dir():
        return {}
    return {p.name: file_digest(p) for p in sorted(root.iterdir())
            if p.is_file() and not p.name.startswith(".")}


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    else:
        out[prefix] = value


def run_fingerprint(config: Config, data_dir: str | Path) -> dict[str, Any]:
    """Everything that changes the result of a run, flat ``key: value``."""
    flat: dict[str, Any] = {}
    _flatten("", config.to_dict(), flat)
    fp = {k: v for k, v in flat.items() if k not in NEUTRAL_KEYS}
    for name, digest in _data_files(Path(data_dir)).items():
        fp[f"data.files.{name}"] = digest
    for name, digest in _model_files(config.model.pretrained).items():
        fp[f"model.files.{name}"] = digest
    fp["processes"] = int(os.environ.get("WORLD_SIZE", "1"))
    return fp


def run_record(config: Config, fingerprint: dict[str, Any]) -> dict[str, Any]:
    return {"format": RUN_FORMAT, "config": config.to_dict(), "fingerprint": fingerprint}


def fingerprint_differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"key: A (stored) vs B (now)"`` for every result-changing key that differs."""
    missing = "(absent)"
    keys = sorted(k for k in set(stored) | set(current) if k not in NEUTRAL_KEYS)
    return [f"{k}: {stored.get(k, missing)!r} in the run vs {current.get(k, missing)!r} now"
            for k in keys if stored.get(k, missing) != current.get(k, missing)]


def read_record(path: Path) -> dict[str, Any] | None:
    """The ``zhcls-run.json`` in ``path`` (a run directory or a checkpoint), None when absent."""
    file = path / RUN_FILE
    if not file.is_file():
        return None
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: unreadable ({exc}); this run cannot be verified, so it "
                              "cannot be resumed: pass --overwrite to train it anew") from None
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{file}: expected run-file format {RUN_FORMAT}, found "
                              f"{record.get('format') if isinstance(record, dict) else record!r}"
                              "; resume it with the zhcls version that wrote it, or --overwrite")
    return record


# ----------------------------------------------------------------------------- run directory
@dataclass
class RunDirPlan:
    """What :func:`inspect_run_dir` decided; :meth:`apply` does it (main process only)."""

    out: Path
    record: dict[str, Any]
    resume_from: Path | None = None
    remove: list[Path] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)

    def apply(self) -> None:
        for path in self.remove:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.out / RUN_FILE, self.record)


def _is_comparison_report(entry: Path) -> bool:
    """``report_vs_*`` holding what ``zhcls report RUN OTHER`` writes, or ``baseline/`` holding
    train.baseline's model (its meta.json says kind baseline): checked by content, not name."""
    if entry.name == "baseline":
        from zhcls.modeling.ngram import is_baseline_dir

        try:
            return is_baseline_dir(entry)
        except Exception:  # noqa: BLE001 - an unreadable meta.json is not ours to delete
            return False
    return entry.name.startswith(COMPARISON_PREFIX) and (entry / "comparison.json").is_file()


def _is_temp(name: str) -> bool:
    return name.startswith(TEMP_PREFIXES)


def inspect_run_dir(out: Path, config: Config, fingerprint: dict[str, Any],
                    outputs: tuple[str, ...] = RUN_OUTPUTS) -> RunDirPlan:
    """Check ``out`` against the run-directory rules (read only; see the module docstring).
    ``config`` is any config with ``train.resume`` / ``train.overwrite`` (``zhcls pretrain``'s
    too); ``outputs`` are the names that command writes (what overwrite may remove)."""
    t = config.train
    plan = RunDirPlan(out, run_record(config, fingerprint))
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file; pass a new or empty directory")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    if not entries:
        if t.resume:
            logger.warning("train.resume: %s holds no run; starting from scratch", out)
        return plan
    names = [e.name for e in entries]
    unknown = [e.name for e in entries if e.name not in outputs and not _is_temp(e.name)
               and not (outputs is RUN_OUTPUTS and _is_comparison_report(e))]
    if t.overwrite:
        if unknown:
            raise ConfigError(f"--overwrite: {out} holds files zhcls did not write: "
                              f"{', '.join(unknown[:10])}; move them away or pass another --out "
                              "(nothing was removed)")
        logger.warning("--overwrite: removing the earlier run's outputs in %s: %s", out,
                       ", ".join(names))
        plan.remove = entries
        return plan
    if not t.resume:
        kind = "a zhcls run" if RUN_FILE in names or "best" in names else "files"
        raise ConfigError(
            f"--out {out} is not empty (it holds {kind}: {', '.join(names[:8])}); pass "
            "--train.resume true to continue that run, --overwrite (train.overwrite true) to "
            "remove its outputs and train anew, or a new --out directory")
    return _plan_resume(plan, entries, fingerprint)


def _plan_resume(plan: RunDirPlan, entries: list[Path], fingerprint: dict[str, Any]) -> RunDirPlan:
    out = plan.out
    stored = read_record(out)
    if stored is None:
        raise ConfigError(
            f"--train.resume: {out} has no {RUN_FILE}, so it is not a run this zhcls can "
            f"verify (it holds {', '.join(e.name for e in entries[:8])}); pass a new --out, or "
            "--overwrite to train anew there")
    _refuse_differences(out / RUN_FILE, stored["fingerprint"], fingerprint)
    if (out / FINISHED_FILE).is_file():
        raise ConfigError(
            f"--train.resume: {out} is a finished run (its {FINISHED_FILE}, written when "
            "training ends, is there): there is nothing to continue, and training its last "
            "steps again would replace its results. Use it as it is, or pass --overwrite / a "
            "new --out to train another run")
    plan.remove = [e for e in entries if _is_temp(e.name)]
    ckpt_root = out / "checkpoints"
    if (ckpt_root / STAGING).exists():
        logger.warning("train.resume: removing %s (a checkpoint save that was interrupted)",
                       ckpt_root / STAGING)
        plan.remove.append(ckpt_root / STAGING)
    for ckpt in trainer_checkpoints(ckpt_root):
        problem = checkpoint_problem(ckpt)
        if problem:
            logger.warning("train.resume: skipping incomplete checkpoint %s (%s)", ckpt, problem)
            plan.remove.append(ckpt)
            continue
        record = read_record(ckpt)
        _refuse_differences(ckpt / RUN_FILE, record["fingerprint"], fingerprint)
        if plan.resume_from is None:
            plan.resume_from = ckpt
            plan.epoch_steps = _epoch_steps(ckpt, record)
    if plan.resume_from is None:
        logger.warning("train.resume: no complete checkpoint in %s; training this run from "
                       "the start", ckpt_root)
        plan.remove += [e for e in entries if e.name != RUN_FILE and not _is_temp(e.name)]
    else:
        logger.info("train.resume: continuing %s from %s", out, plan.resume_from)
    return plan


def _epoch_steps(ckpt: Path, record: dict[str, Any]) -> list[int]:
    """Epoch boundaries up to ``ckpt``: the Trainer saves a checkpoint at an epoch's last step
    before that epoch ends, so a checkpoint at a whole epoch adds its own step."""
    steps = [int(s) for s in record.get("epoch_steps", [])]
    state = json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    epoch, step = float(state.get("epoch") or 0.0), int(state.get("global_step", 0))
    if epoch >= 1 and abs(epoch - round(epoch)) < 1e-6 and step not in steps:
        steps.append(step)
    return steps


def _refuse_differences(where: Path, stored: dict[str, Any], current: dict[str, Any]) -> None:
    diffs = fingerprint_differences(stored, current)
    if diffs:
        raise ConfigError(
            f"--train.resume: {where} was trained with other settings that change the result: "
            + "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
            + ". Resume with the same settings, or pass --overwrite / a new --out to start "
            "another run")


def trainer_checkpoints(root: Path) -> list[Path]:
    """``root/checkpoint-N`` directories, newest (highest N) first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and p.name.removeprefix("checkpoint-").isdigit()]
    return sorted(found, key=lambda p: int(p.name.removeprefix("checkpoint-")), reverse=True)


def checkpoint_problem(ckpt: Path) -> str | None:
    """Why ``ckpt`` cannot be resumed from (None when it is complete)."""
    missing = [f for f in CHECKPOINT_FILES if not (ckpt / f).is_file()]
    if not list(ckpt.glob("rng_state*.pth")):
        missing.append("rng_state.pth")
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return f"trainer_state.json unreadable: {exc}"
    return None


# ----------------------------------------------------------------------------- atomic saves
@contextmanager
def staged_trainer_checkpoint(trainer, trial=None) -> Iterator[None]:
    """Make the Trainer's ``_save_checkpoint`` write into ``checkpoints/.staging`` and, once
    every file (all ranks' RNG states included) is there, add ``zhcls-run.json`` and rename
    the checkpoint into place; then rotate old checkpoints as the Trainer would."""
    from transformers.trainer_utils import rotate_checkpoints

    run_dir = Path(trainer._get_output_dir(trial))
    staging = run_dir / STAGING
    name = f"checkpoint-{trainer.state.global_step}"
    limit = trainer.args.save_total_limit
    trainer._get_output_dir = lambda trial=None: str(staging)  # instance attribute, undone below
    trainer.args.save_total_limit = None  # rotation happens after the rename, on run_dir
    try:
        yield
    finally:
        del trainer._get_output_dir
        trainer.args.save_total_limit = limit
    trainer.accelerator.wait_for_everyone()
    if trainer.args.should_save:
        best = trainer.state.best_model_checkpoint
        if best and Path(best).parent == staging:
            trainer.state.best_model_checkpoint = str(run_dir / Path(best).name)
        trainer.state.save_to_json(str(staging / name / "trainer_state.json"))
        record = dict(getattr(trainer, "run_record", None) or {})
        record["epoch_steps"] = next((list(cb.epoch_steps) for cb in trainer.callback_handler.callbacks
                                      if hasattr(cb, "epoch_steps")), [])
        atomic_write_json(staging / name / RUN_FILE, record)
        replace_dir(staging / name, run_dir / name)
        shutil.rmtree(staging, ignore_errors=True)
        rotate_checkpoints(str(run_dir), save_total_limit=limit,
                           best_model_checkpoint=trainer.state.best_model_checkpoint,
                           use_mtime=False)
    trainer.accelerator.wait_for_everyone()
