"""Hugging Face names on the Classifier: from_pretrained / save_pretrained round trip with the
model card; push_to_hub and Hub repo ids check their arguments and fail clearly offline (no
network is used here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from predict_fixtures import head_checkpoint, sample_texts
from zhcls import Classifier
from zhcls.errors import ZhclsError


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model):
    return head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert_RNN")


def test_save_pretrained_from_pretrained_round_trip(ckpt, tmp_path):
    clf = Classifier.from_pretrained(ckpt, "cpu")
    texts = sample_texts(20)
    out = clf.save_pretrained(tmp_path / "copy")
    again = Classifier.from_pretrained(str(out), "cpu")
    np.testing.assert_allclose(again.predict_proba(texts), clf.predict_proba(texts), atol=1e-6)
    assert again.labels == clf.labels and again.head == "bert_RNN"
    old = json.loads((ckpt / "meta.json").read_text())
    new = json.loads((out / "meta.json").read_text())
    assert new["command"] == old["command"], "the training command, not the saver's"
    assert (out / "README.md").read_text(encoding="utf-8").startswith("---\nlanguage:")
    with pytest.raises(ZhclsError, match="loaded from"):
        clf.save_pretrained(ckpt)


def test_unknown_hub_repo_offline_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZhclsError, match="HF_HUB_OFFLINE"):
        Classifier.from_pretrained("nobody-here/zhcls-missing", cache_dir=tmp_path)
    with pytest.raises(ZhclsError, match="neither a local directory nor a valid Hub repo id"):
        Classifier.from_pretrained("no/such/dir/here")


def test_push_to_hub_checks_arguments_before_any_network(ckpt, monkeypatch):
    clf = Classifier.load(ckpt, "cpu")
    with pytest.raises(ZhclsError, match="valid Hub repo id"):
        clf.push_to_hub("bad repo id!")
    with pytest.raises(ZhclsError, match="expected a Hub repo id"):
        clf.push_to_hub("")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ZhclsError, match="HF_HUB_OFFLINE is set"):
        clf.push_to_hub("someone/zhcls-news")
