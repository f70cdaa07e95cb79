"""zhcls.utils: atomic writes leave either the old or the new file, never a partial one."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from zhcls.utils import atomic_write_json, atomic_write_text, is_cjk, replace_dir


def test_atomic_write_json_roundtrip_keeps_chinese_and_numpy(tmp_path):
    path = atomic_write_json(tmp_path / "a" / "m.json", {"名": np.float32(0.5), "x": np.arange(2)})
    assert json.loads(path.read_text(encoding="utf-8")) == {"名": 0.5, "x": [0, 1]}
    assert "名" in path.read_text(encoding="utf-8")


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "m.json", "old")
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


@pytest.mark.parametrize("char, expected", [("中", True), ("㐀", True), ("𠀀", True),
                                            ("a", False), ("，", False), ("の", False)])
def test_is_cjk(char, expected):
    assert is_cjk(char) is expected


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


UMASKS = [pytest.param(0o022, 0o644, id="umask022"), pytest.param(0o077, 0o600, id="umask077"),
          pytest.param(0o002, 0o664, id="umask002")]


@pytest.mark.parametrize("mask, expected", UMASKS)
def test_atomic_writes_get_the_permissions_of_a_normal_open(tmp_path, mask, expected):
    with umask(mask):
        text = atomic_write_text(tmp_path / "a.txt", "文本")
        data = atomic_write_json(tmp_path / "b.json", {"x": 1})
        atomic_write_text(text, "again")  # replacing a file: the same rule
        assert os.umask(mask) == mask  # the call left the process umask as it was
    assert (mode(text), mode(data)) == (expected, expected)


@pytest.mark.parametrize("mask, expected", UMASKS)
def test_replace_dir_gives_staged_files_the_permissions_of_a_normal_open(tmp_path, mask,
                                                                         expected):
    import torch
    from safetensors.torch import save_file

    staged = tmp_path / ".ckpt.tmp"
    (staged / "sub").mkdir(parents=True)
    with umask(mask):
        save_file({"w": torch.zeros(2)}, str(staged / "model.safetensors"))  # 0600 itself
        (staged / "sub" / "plain.txt").write_text("x")
        final = replace_dir(staged, tmp_path / "ckpt")
    assert mode(final / "model.safetensors") == expected
    assert mode(final / "sub" / "plain.txt") == expected


def test_a_saved_checkpoint_and_labelled_data_are_readable_by_others(tmp_path, tiny_model,
                                                                    tiny_data):
    from conftest import CLASSES, tiny_config
    from zhcls.cli import main
    from zhcls.modeling.checkpoint import save_checkpoint
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model

    config = tiny_config(tiny_model)
    model = build_model(load_encoder(str(tiny_model)), config, len(CLASSES))
    with umask(0o022):
        best = save_checkpoint(tmp_path / "best", model, load_tokenizer(str(tiny_model)),
                               config, CLASSES)
        assert main(["label", "--teacher", str(best), "--data", str(tiny_data), "--out",
                     str(tmp_path / "kd"), "--device", "cpu"]) == 0
    written = [p for p in [*best.rglob("*"), *(tmp_path / "kd").rglob("*")] if p.is_file()]
    assert {"model.safetensors", "labels.json", "meta.json", "train.txt"} <= {
        p.name for p in written}
    assert {p.name: oct(mode(p)) for p in written if mode(p) != 0o644} == {}
