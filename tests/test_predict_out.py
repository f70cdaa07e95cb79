"""``zhcls predict --out``: the format follows the suffix, a contradicting ``--format`` is
refused, and no path inside the checkpoint is written; ``--file DIR`` names the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from predict_fixtures import head_checkpoint
from test_cli_errors_predict import run  # (exit code, the ERROR lines) of a CLI call
from zhcls.cli import main


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model) -> Path:
    return head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")


@pytest.mark.parametrize("name, fmt", [("p.csv", "jsonl"), ("p.jsonl", "table"),
                                       ("p.json", "tsv"), ("p.tsv", "csv"), ("P.CSV", "tsv")])
def test_a_format_contradicting_the_out_suffix_is_refused(tmp_path, caplog, ckpt, name, fmt):
    out = tmp_path / name
    code, message = run(caplog, ["predict", str(ckpt), "好", "--format", fmt, "--out", str(out),
                                 "--device", "cpu"])
    assert code == 2 and "--format" in message and "--out" in message, message
    assert "\n" not in message and not out.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, check", [
    ("p.jsonl", lambda s: json.loads(s.splitlines()[0])["text"] == "好"),
    ("p.json", lambda s: json.loads(s.splitlines()[0])["text"] == "好"),
    ("p.tsv", lambda s: s.splitlines()[0].split("\t")[:2] == ["line", "label"]),
    ("p.csv", lambda s: s.splitlines()[0].split(",")[:2] == ["line", "label"]),
    ("p.txt", lambda s: s.splitlines()[0].split()[:2] == ["#", "label"]),  # table
])
def test_without_format_the_out_suffix_chooses_it(tmp_path, caplog, ckpt, name, check):
    out = tmp_path / name
    code, message = run(caplog, ["predict", str(ckpt), "好", "--out", str(out), "--device", "cpu"])
    assert code == 0, message
    assert check(out.read_text(encoding="utf-8"))


def test_an_agreeing_format_and_suffix_predict(tmp_path, caplog, ckpt):
    out = tmp_path / "p.csv"
    code, message = run(caplog, ["predict", str(ckpt), "好", "--format", "csv", "--out", str(out),
                                 "--device", "cpu"])
    assert code == 0 and out.read_text(encoding="utf-8").startswith("line,label"), message


def test_help_says_the_suffix_chooses_the_format(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "suffix" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("inside", ["model.safetensors", "labels.json", "pred.jsonl",
                                    "sub/pred.jsonl"])
def test_out_inside_the_checkpoint_is_refused_and_the_checkpoint_kept(tmp_path, caplog, ckpt,
                                                                      inside):
    import shutil

    copy = Path(shutil.copytree(ckpt, tmp_path / "ckpt"))
    before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
    spelled = tmp_path / "." / "ckpt" / inside  # another spelling of the same place
    code, message = run(caplog, ["predict", str(copy), "好", "--out", str(spelled),
                                 "--format", "jsonl", "--device", "cpu"])
    assert code == 2 and "--out" in message and "checkpoint" in message, message
    assert "\n" not in message
    assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before
    assert not (copy / "sub").exists()


def test_out_through_a_symlink_into_the_checkpoint_is_refused(tmp_path, caplog, ckpt):
    import shutil

    copy = Path(shutil.copytree(ckpt, tmp_path / "ckpt"))
    before = (copy / "model.safetensors").read_bytes()
    (tmp_path / "link").symlink_to(copy)
    code, message = run(caplog, ["predict", str(copy), "好", "--out",
                                 str(tmp_path / "link" / "model.safetensors"), "--device", "cpu"])
    assert code == 2 and "--out" in message and "\n" not in message, message
    assert (copy / "model.safetensors").read_bytes() == before


def test_file_naming_a_directory_says_so(tmp_path, caplog, ckpt):
    code, message = run(caplog, ["predict", str(ckpt), "--file", str(tmp_path), "--device", "cpu"])
    assert code == 2 and "--file" in message and "directory" in message, message
    assert "not found" not in message and "\n" not in message


def test_iter_records_of_a_directory_says_so(tmp_path):
    from zhcls.errors import DataError
    from zhcls.inference.io import iter_records

    with pytest.raises(DataError, match="directory"):
        list(iter_records(tmp_path))
