"""Checkpoints for the prediction / serving / export / explanation tests, built once per
test session (shared by every test file that imports these helpers):

* :func:`trained_checkpoint`: the tiny BERT from ``conftest.tiny_model`` fine-tuned for 60
  steps on ``conftest.tiny_data`` with the real ``zhcls train``;
* :func:`head_checkpoint`: an untrained checkpoint for any head, saved with the real
  ``save_checkpoint``; its classifier weights are scaled up so probabilities are far from
  uniform (a parity test on near-uniform probabilities would prove little).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from conftest import SENTENCES, tiny_config

_BUILT: dict[tuple[str, str], Path] = {}

# Mixed lengths and scripts; the last ones are longer than max_length 32.
EXTRA_TEXTS = [
    "好", "新款iPhone搭载自研芯片，售价5999元起", "《英雄联盟》全球总决赛门票今日开售",
    "周杰伦新专辑首周销量破百万", "NBA Finals: 勇士4比2凯尔特人夺冠",
    "教育部：2024年高考报名人数达1342万 各地考点做好准备工作 考生须提前熟悉考场",
    "房价" * 30, "北京 上海 广州 深圳 一线城市二手房成交量环比上涨百分之十二点五",
]


def sample_texts(n: int) -> list[str]:
    """``n`` distinct texts of varied length built from the test sentences."""
    base = [t for texts in SENTENCES.values() for t in texts] + EXTRA_TEXTS
    out = []
    i = 0
    while len(out) < n:
        a, b = base[i % len(base)], base[(i * 7 + 3) % len(base)]
        out.append(a if i < len(base) else (a + "，" + b)[: 5 + (i * 13) % 60])
        i += 1
    return out


def trained_checkpoint(base: Path, tiny_model: Path, tiny_data: Path) -> Path:
    """A ``bert`` head fine-tuned for 60 steps (fits the 18 sentences); its ``best``
    checkpoint directory."""
    key = (str(base), "trained")
    if key not in _BUILT:
        from zhcls.training.train import train

        config = tiny_config(tiny_model, "bert", train__max_steps=60, train__eval_steps=60,
                             train__evaluate_test="false", train__lr="5e-3")
        _BUILT[key] = train(config, tiny_data, base / "trained-run").best_dir
    return _BUILT[key]


def head_checkpoint(base: Path, tiny_model: Path, head: str) -> Path:
    """An untrained checkpoint with ``head`` (classifier weights scaled to spread the
    probabilities)."""
    key = (str(base), head)
    if key not in _BUILT:
        import torch

        from conftest import CLASSES
        from zhcls.modeling.checkpoint import save_checkpoint
        from zhcls.modeling.encoder import load_encoder, load_tokenizer
        from zhcls.modeling.model import build_model

        config = tiny_config(tiny_model, head)
        torch.manual_seed(0)
        model = build_model(load_encoder(str(tiny_model)), config, len(CLASSES)).eval()
        with torch.no_grad():
            model.classifier.weight.mul_(20.0)
        _BUILT[key] = save_checkpoint(base / f"ckpt-{head}", model,
                                      load_tokenizer(str(tiny_model)), config, CLASSES)
    return _BUILT[key]


def onnx_export(base: Path, checkpoint: Path, name: str) -> Path:
    """``checkpoint`` exported with the real ``export_onnx`` (once per session and name)."""
    key = (str(base), f"onnx-{name}")
    if key not in _BUILT:
        from zhcls.inference.export import export_onnx

        _BUILT[key] = export_onnx(checkpoint, base / f"onnx-{name}").out_dir
    return _BUILT[key]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zhcls_command() -> list[str]:
    return [sys.executable, "-m", "zhcls"]


class ServerProcess:
    """``zhcls serve`` in a real child process on 127.0.0.1; stopped by :meth:`stop`."""

    def __init__(self, checkpoint: Path, log: Path, *extra: str, timeout: float = 120.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._log_file = log.open("w")
        self.proc = subprocess.Popen(
            [*zhcls_command(), "serve", str(checkpoint), "--host", "127.0.0.1", "--port",
             str(self.port), "--log-level", "warning", *extra],
            stdout=self._log_file, stderr=subprocess.STDOUT)
        self._wait(timeout)

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"zhcls serve exited with {self.proc.returncode}:\n"
                                   f"{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"zhcls serve did not answer /health in {timeout} s:\n"
                           f"{self.log.read_text()}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
