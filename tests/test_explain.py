"""zhcls.inference.explain and ``zhcls explain``: integrated gradients for every head (completeness:
attributions add up to p(text) - p(baseline)), the bert_GRU_att attention weights, one score per
character, the PNG with Chinese drawn, JSON output, clear errors."""

from __future__ import annotations

import json
import struct
import warnings

import numpy as np
import pytest
import torch

from predict_fixtures import head_checkpoint, onnx_export, trained_checkpoint
from zhcls.cli import main
from zhcls.errors import ZhclsError
from zhcls.inference.classifier import Classifier
from zhcls.inference.explain import explain_texts, integrated_gradients, plot_explanation

TEXT = "央行宣布下调存款准备金率"


@pytest.fixture(scope="module")
def gru(tmp_path_factory, tiny_model):
    return Classifier.load(head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model,
                                           "bert_GRU_att"), "cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model, tiny_data):
    return trained_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)


def test_ig_scores_one_per_character_and_normalised(trained):
    clf = Classifier.load(trained, "cpu")
    (expl,) = explain_texts(clf, [TEXT], steps=32)
    assert expl.tokens == list(TEXT) and expl.spans[0] == (0, 1)
    assert list(expl.scores) == ["ig"]
    assert np.abs(expl.scores["ig"]).sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(expl.probs, clf.predict_proba(TEXT), atol=1e-5)
    assert expl.label == clf.predict(TEXT).label and expl.target_id == expl.label_id


def test_ig_completeness_attributions_sum_to_probability_change(trained):
    clf = Classifier.load(trained, "cpu")
    model, tok = clf.backend.model, clf.tokenizer
    ids = torch.tensor([tok(TEXT)["input_ids"]])  # (1, T)
    mask = torch.ones_like(ids)
    target = int(clf.predict(TEXT).label_id)
    _, delta = integrated_gradients(model, ids, mask, target, tok, steps=64)
    baseline = ids.clone()
    baseline[0, 1:-1] = tok.pad_token_id
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids, attention_mask=mask).logits, -1)[0, target]
        p0 = torch.softmax(model(input_ids=baseline, attention_mask=mask).logits, -1)[0, target]
    assert abs(float(p - p0)) > 0.05, "text and baseline predict alike: the check proves little"
    assert delta < 0.02 * max(abs(float(p - p0)), 0.05) + 1e-3


def test_gru_attention_matches_the_model_and_ig_is_added(gru):
    (expl,) = explain_texts(gru, [TEXT + "iPhone"], method="all", steps=16)
    assert list(expl.scores) == ["attention", "ig"]
    assert expl.tokens[-1].lower().startswith("ip") or "iPhone" in "".join(expl.tokens)
    enc = gru.tokenizer(TEXT + "iPhone", return_tensors="pt")
    with torch.no_grad():
        out = gru.backend.model(input_ids=enc["input_ids"],
                                attention_mask=enc["attention_mask"])
    weights = out.attention[0, 1:-1].numpy()  # without [CLS] / [SEP]
    np.testing.assert_allclose(expl.scores["attention"], weights, atol=1e-6)
    assert 0 < sum(expl.scores["attention"]) <= 1.0 + 1e-6
    assert "".join(expl.tokens) == TEXT + "iPhone"  # spans cover the original text


def test_method_errors(trained, gru, tmp_path):
    clf = Classifier.load(trained, "cpu")
    with pytest.raises(ZhclsError, match="has no attention weights"):
        explain_texts(clf, [TEXT], method="attention")
    with pytest.raises(ZhclsError, match="is not a label of this model"):
        explain_texts(clf, [TEXT], target="nope")
    with pytest.raises(ZhclsError, match="empty text"):
        explain_texts(gru, [" "])


def test_target_label_and_truncation_are_reported(trained):
    clf = Classifier.load(trained, "cpu")
    other = clf.labels[(clf.predict(TEXT).label_id + 1) % 3]
    (expl,) = explain_texts(clf, [TEXT * 5], target=other, steps=8)
    assert expl.labels[expl.target_id] == other and expl.truncated
    assert len(expl.tokens) == clf.max_length - 2
    data = expl.to_dict()
    assert data["target"] == other and data["truncated"] is True
    assert [t["token"] for t in data["tokens"]] == expl.tokens


def png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_png_draws_chinese_without_missing_glyphs(gru, tmp_path):
    from zhcls.report.fonts import current_cjk_font, setup_cjk_font

    (expl,) = explain_texts(gru, ["周杰伦新专辑首周销量破百万，演唱会门票一票难求" * 2], steps=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = plot_explanation(expl, tmp_path / "e.png")
    width, height = png_size(path)
    assert width > 600 and height > 200 and path.stat().st_size > 10_000
    setup_cjk_font()
    if current_cjk_font() is not None:
        assert [str(w.message) for w in caught if "missing from" in str(w.message)] == []


def test_cli_json_and_png(trained, tmp_path, capsys):
    code = main(["explain", str(trained), TEXT, "中超联赛", "--format", "json", "--steps", "8"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and [r["text"] for r in rows] == [TEXT, "中超联赛"]
    assert set(rows[0]["probs"]) == {"体育", "财经", "科技"} and rows[0]["methods"] == ["ig"]
    code = main(["explain", str(trained), TEXT, "--out", str(tmp_path / "x.png"),
                 "--steps", "8"])
    printed = capsys.readouterr().out
    assert code == 0 and "heatmap:" in printed and png_size(tmp_path / "x.png")[0] > 600


def test_cli_out_without_suffix_names_the_file_it_wrote(trained, tmp_path, capsys):
    """``--out DIR/expl`` used to print ``heatmap: DIR/expl`` while matplotlib wrote
    ``DIR/expl.png``."""
    assert main(["explain", str(trained), TEXT, "--out", str(tmp_path / "expl"),
                 "--steps", "4"]) == 0
    assert f"heatmap: {tmp_path / 'expl.png'}" in capsys.readouterr().out
    assert (tmp_path / "expl.png").is_file()


def test_cli_refuses_onnx_exports(tmp_path_factory, tiny_model):
    base = tmp_path_factory.getbasetemp()
    out = onnx_export(base, head_checkpoint(base, tiny_model, "bert"), "bert")
    assert main(["explain", str(out), TEXT]) == 2
