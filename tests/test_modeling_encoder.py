"""Encoder loading: HF directory, the research repos' legacy layout, and offline hub names."""

from __future__ import annotations

import json
import time

import pytest
import torch
from transformers import BertModel

from zhcls.errors import CheckpointError
from zhcls.modeling.encoder import load_encoder, load_tokenizer


def test_legacy_layout_loads_same_weights(tmp_path, tiny_model):
    ref = BertModel.from_pretrained(str(tiny_model))
    state = {f"bert.{k}".replace("LayerNorm.weight", "LayerNorm.gamma")
             .replace("LayerNorm.bias", "LayerNorm.beta"): v for k, v in ref.state_dict().items()}
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "bert_config.json").write_text(json.dumps(ref.config.to_diff_dict()), "utf-8")
    load_tokenizer(str(tiny_model)).save_pretrained(tmp_path)
    legacy = load_encoder(str(tmp_path))
    ids = torch.tensor([[101, 704, 1290, 102]]) % ref.config.vocab_size
    with torch.no_grad():
        a = ref(input_ids=ids).last_hidden_state
        b = legacy(input_ids=ids).last_hidden_state
    torch.testing.assert_close(a, b)


def test_legacy_layout_without_weights_is_clear(tmp_path):
    (tmp_path / "bert_config.json").write_text("{}", "utf-8")
    with pytest.raises(CheckpointError, match="pytorch_model.bin is missing"):
        load_encoder(str(tmp_path))


def test_directory_without_config(tmp_path):
    with pytest.raises(CheckpointError, match="expected config.json"):
        load_encoder(str(tmp_path))


def test_unreachable_hub_name_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="init-tiny") as info:
        load_encoder("bert-base-chinese-not-cached")
    assert time.monotonic() - start < 10
    assert "local directory" in str(info.value)
