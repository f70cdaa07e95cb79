"""zhcls label --teacher: a Hugging Face classifier as teacher reads texts at zhcls' data
max_length (not a fixed 128), so it labels exactly as the same model in zhcls form; its
progress bar is shown on a terminal only."""

from __future__ import annotations

import io
import sys

import numpy as np
import torch

from conftest import CLASSES
from predict_fixtures import head_checkpoint, sample_texts
from zhcls.inference.export_hf import export_hf
from zhcls.label.local import label_with_checkpoint, load_teacher
from zhcls.modeling.forward import forward_texts, softmax


def test_hf_teacher_uses_the_data_max_length(tmp_path_factory, tiny_model):
    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    hf_dir = tmp_path_factory.mktemp("hf-teacher")
    export_hf(ckpt, hf_dir)
    texts = [t for t in sample_texts(60) if len(t) > 40]  # longer than 32 tokens
    assert texts
    cpu = torch.device("cpu")
    probs = {}
    for name, source in (("zhcls", ckpt), ("hf", hf_dir)):
        model, tokenizer, max_length = load_teacher(source, CLASSES, cpu)
        assert max_length == 32, name
        probs[name] = softmax(forward_texts(model, tokenizer, texts, max_length).logits)
    np.testing.assert_allclose(probs["hf"], probs["zhcls"], atol=1e-5)
    assert load_teacher(hf_dir, CLASSES, cpu, max_length=64)[2] == 64
    assert load_teacher(hf_dir, CLASSES, cpu, max_length=10_000)[2] == 512  # position limit


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_checkpoint_teacher_draws_its_bar_on_a_terminal_only(tmp_path_factory, tiny_model,
                                                             tiny_data, capsys, monkeypatch):
    """A log file or a pipe got one "predicting" bar per call (every redraw written out)."""
    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    report = label_with_checkpoint(ckpt, tiny_data, "train", tmp_path_factory.mktemp("kd"))
    assert report.examples > 0
    assert "predicting" not in capsys.readouterr().err
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    label_with_checkpoint(ckpt, tiny_data, "train", tmp_path_factory.mktemp("kd-tty"))
    assert "predicting" in terminal.getvalue()
