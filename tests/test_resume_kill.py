"""Acceptance: a real ``python -m zhcls train`` killed with SIGKILL at random steps (and once
inside a checkpoint save), resumed each time, ends with the weights, data order and metrics
of an uninterrupted run. Instrumentation (batch log, pause inside the save) lives in
tests/kill_hooks/sitecustomize.py."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import REPO

HOOKS = Path(__file__).parent / "kill_hooks"
STEPS, SAVE_EVERY = 24, 3
SEED = int(os.environ.get("ZHCLS_TEST_KILL_SEED", time.time_ns() % 1_000_000))


def argv(model, data, out, *extra) -> list[str]:
    return [sys.executable, "-m", "zhcls", "train", "--config", str(REPO / "configs" / "tiny.yaml"),
            "--data", str(data), "--out", str(out), "--model.pretrained", str(model),
            "--model.head", "bert", "--train.batch_size", "8", "--train.eval_batch_size", "32",
            "--train.max_steps", str(STEPS), "--train.eval_steps", str(SAVE_EVERY),
            "--train.logging_steps", str(SAVE_EVERY), "--train.lr", "1e-3",
            "--train.precision", "fp32", "--train.save_total_limit", "2",
            "--train.tensorboard", "false", "--train.report", "false", *extra]


def env(log: Path, **extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(HOOKS), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1", "ZHCLS_TEST_BATCH_LOG": str(log), **extra}


def logged_steps(log: Path) -> list[int]:
    if not log.is_file():
        return []
    return [int(line.split("\t")[0]) for line in log.read_text("utf-8").splitlines() if line]


def batch_order(log: Path) -> dict[int, str]:
    """Step -> digest of its batch; a step redone after a resume overwrites the killed try."""
    order: dict[int, str] = {}
    for line in log.read_text("utf-8").splitlines():
        step, digest = line.split("\t")
        order[int(step)] = digest
    return order


def run_until(cmd, environ, stop, timeout: float = 240.0) -> subprocess.Popen:
    """Start ``cmd``; SIGKILL it as soon as ``stop()`` is true. Fails if it ends first."""
    proc = subprocess.Popen(cmd, env=environ, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while not stop():
        if proc.poll() is not None:
            pytest.fail(f"(seed {SEED}) the run ended (rc {proc.returncode}) before it was "
                        f"killed:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"(seed {SEED}) timed out waiting for the kill point")
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return proc


def run_to_end(cmd, environ) -> None:
    done = subprocess.run(cmd, env=environ, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"(seed {SEED}) {done.stderr[-3000:]}"


@pytest.mark.slow
def test_kill_9_and_resume_equals_an_uninterrupted_run(tiny_model, tiny_data, tmp_path):
    rng = random.Random(SEED)
    ref_log, log = tmp_path / "reference.log", tmp_path / "killed.log"
    run_to_end(argv(tiny_model, tiny_data, tmp_path / "reference"), env(ref_log))

    out = tmp_path / "run"
    slow = env(log, ZHCLS_TEST_STEP_SLEEP="0.05")
    # 1. killed at a random step of the first half, before or after its first checkpoint
    first = rng.randrange(1, STEPS // 2)
    run_until(argv(tiny_model, tiny_data, out), slow, lambda: max(logged_steps(log), default=-1)
              >= first)
    # 2. resumed, then killed inside a checkpoint save (model written, trainer state not)
    marker = tmp_path / "saving"
    run_until(argv(tiny_model, tiny_data, out, "--train.resume", "true"),
              {**slow, "ZHCLS_TEST_SAVE_MARKER": str(marker)}, marker.is_file)
    step_in_save = int(marker.read_text("utf-8").split("\t")[0])
    assert (out / "checkpoints" / ".staging" / f"checkpoint-{step_in_save}").is_dir()
    assert not (out / "checkpoints" / f"checkpoint-{step_in_save}").exists()
    # 3. resumed, killed at a random later step
    second = rng.randrange(step_in_save + 1, STEPS - 1)
    run_until(argv(tiny_model, tiny_data, out, "--train.resume", "true"), slow,
              lambda: max(logged_steps(log), default=-1) >= second)
    # 4. resumed to the end
    run_to_end(argv(tiny_model, tiny_data, out, "--train.resume", "true"), slow)

    where = f"(seed {SEED}: killed at step >= {first}, in the save of step {step_in_save}, " \
            f"at step >= {second})"
    assert batch_order(log) == batch_order(ref_log), f"data order differs {where}"
    assert sorted(batch_order(log)) == list(range(STEPS))
    a = load_file(str(tmp_path / "reference" / "best" / "model.safetensors"))
    b = load_file(str(out / "best" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a), f"weights {where}"
    ref = json.loads((tmp_path / "reference" / "metrics.json").read_text("utf-8"))
    got = json.loads((out / "metrics.json").read_text("utf-8"))
    assert got["global_step"] == ref["global_step"] == STEPS
    for split in ("dev", "test"):
        for key in ("loss", "accuracy", "macro_f1"):
            assert got[split][key] == ref[split][key], f"{split} {key} {where}"
    history = [json.loads((d / "history.json").read_text("utf-8")) for d in
               (tmp_path / "reference", out)]
    curves = [[(h["step"], h.get("loss"), h.get("eval_loss"), h.get("eval_accuracy"))
               for h in hist["log_history"] if "loss" in h or "eval_loss" in h]
              for hist in history]
    assert curves[0] == curves[1], f"logged losses {where}"
    assert history[0]["epoch_steps"] == history[1]["epoch_steps"]
