"""zhcls.utils: atomic writes leave either the old or the new file, never a partial one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zhcls.utils import atomic_write_json, atomic_write_text, is_cjk


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
