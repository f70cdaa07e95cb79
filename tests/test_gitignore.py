"""Outputs that `zhcls demo` and run.py write inside the repo never show up in `git status`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import REPO

OUTPUTS = ["zhcls-demo/run/best/model.safetensors", "zhcls-demo/demo.json",
           "THUCNews/saved_dict/bert/best/model.safetensors",
           "mydata/saved_dict/bert_CNN/metrics.json", "runs/x/best/README.md"]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="not a git checkout")
@pytest.mark.parametrize("path", OUTPUTS)
def test_outputs_are_ignored(path):
    proc = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert proc.returncode == 0, f"{path} would show up in git status; add it to .gitignore"


def test_sources_are_not_ignored():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    for path in ("src/zhcls/cli/demo.py", "run.py", "configs/tiny.yaml"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 1
