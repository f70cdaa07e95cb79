"""zhcls.inference.explain and ``zhcls explain``: integrated gradients for every head (completeness:
attributions add up to p(text) - p(baseline)), the bert_GRU_att attention weights, one score per
character, the PNG with Chinese drawn, JSON output, clear errors."""

from __future__ import annotations

import json
import logging
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


def _one_error(caplog) -> str:
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None, errors
    message = errors[0].getMessage()
    assert "\n" not in message, f"not one line: {message!r}"
    return message


def test_cli_json_out_writes_the_json_file(trained, tmp_path, capsys):
    """``--format json --out explain.json`` used to print the JSON, then fail in matplotlib
    (``Format 'json' is not supported``) with no file written."""
    out = tmp_path / "explain.json"
    assert main(["explain", str(trained), TEXT, "--format", "json", "--out", str(out),
                 "--steps", "4"]) == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["text"] == TEXT and data["methods"] == ["ig"]
    assert not list(tmp_path.glob("*.png")) and not list(tmp_path.glob(".*.tmp"))
    assert capsys.readouterr().out == ""  # the JSON went to the file
    several = tmp_path / "explain.jsonl"
    assert main(["explain", str(trained), TEXT, "中超联赛", "--format", "json", "--out",
                 str(several), "--steps", "4"]) == 0
    rows = [json.loads(line) for line in several.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in rows] == [TEXT, "中超联赛"]
    assert main(["explain", str(trained), TEXT, "中超联赛", "--format", "json", "--out",
                 str(out), "--steps", "4"]) == 0
    listed = json.loads(out.read_text(encoding="utf-8"))  # .json: one document, a list
    assert [r["text"] for r in listed] == [TEXT, "中超联赛"]


@pytest.mark.parametrize("fmt,out,needles", [
    ("png", "x.txt", ["--out", "x.txt", ".png", "--format json"]),
    ("json", "x.png", ["--out", "x.png", ".json", ".jsonl"]),
    ("json", "x.txt", ["--out", "x.txt", ".json"]),
])
def test_cli_out_the_format_cannot_write_is_refused_before_the_work(
        trained, tmp_path, caplog, monkeypatch, fmt, out, needles):
    """An --out suffix the format cannot write used to end in a matplotlib traceback after
    the integrated-gradients work."""
    import zhcls.inference.explain as explain_module

    def no_work(*args, **kwargs):
        raise AssertionError("explained before checking --out")

    monkeypatch.setattr(explain_module, "explain_texts", no_work)
    with caplog.at_level(logging.INFO):
        assert main(["explain", str(trained), TEXT, "--format", fmt, "--out",
                     str(tmp_path / out), "--steps", "4"]) == 2
    message = _one_error(caplog)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert not (tmp_path / out).exists()


def test_cli_summary_names_the_explained_label(trained, tmp_path, capsys):
    """With --target the summary used to print ``ig top: ...`` under ``predicted X``: the
    scores are of the target, and only the PNG title said so."""
    clf = Classifier.load(trained, "cpu")
    predicted = clf.predict(TEXT).label
    other = clf.labels[(clf.predict(TEXT).label_id + 1) % 3]
    assert main(["explain", str(trained), TEXT, "--target", other, "--out",
                 str(tmp_path / "t.png"), "--steps", "4"]) == 0
    printed = capsys.readouterr().out
    assert f"predicted {predicted} (" in printed and f"ig {other} top: " in printed
    assert main(["explain", str(trained), TEXT, "--out", str(tmp_path / "p.png"),
                 "--steps", "4"]) == 0
    assert f"ig {predicted} top: " in capsys.readouterr().out  # no --target: the predicted


def test_cli_numbers_texts_from_one(trained, caplog):
    """``zhcls explain CKPT ""`` used to say ``text 0: empty text``; files are 1-based."""
    with caplog.at_level(logging.INFO):
        assert main(["explain", str(trained), "", "--steps", "4"]) == 2
    message = _one_error(caplog)
    assert message.startswith("text 1: ") and "empty text" in message, message
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["explain", str(trained), TEXT, " ", "--steps", "4"]) == 2
    message = _one_error(caplog)
    assert message.startswith("text 2: ") and "empty text" in message, message


@pytest.fixture(scope="module")
def head_tail(tmp_path_factory, tiny_model):
    from conftest import CLASSES, tiny_config
    from zhcls.modeling.checkpoint import save_checkpoint
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model

    config = tiny_config(tiny_model, "bert", data__max_length=10, data__long_text="head_tail",
                         data__head_tokens=3)
    torch.manual_seed(0)
    model = build_model(load_encoder(str(tiny_model)), config, len(CLASSES)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    return Classifier.load(save_checkpoint(tmp_path_factory.mktemp("head-tail") / "ckpt", model,
                                           load_tokenizer(str(tiny_model)), config, CLASSES),
                           "cpu")


def test_head_tail_note_says_what_the_model_reads(head_tail):
    """The note used to say ``this head_tail model reads the whole text``: it reads the
    first data.head_tokens and the last max_length - 2 - head tokens."""
    text = "这款手机的屏幕非常清晰，电池续航也很好。" * 2  # 40 characters, one token each
    (expl,) = explain_texts(head_tail, [text], steps=4)
    probs = head_tail.predict_proba(text)
    best = head_tail.labels[int(probs.argmax())]
    assert expl.tokens == list(text[:8])
    assert expl.reading_note == (
        f"explained: the first 8 of the text's 40 tokens only; this head_tail model reads its "
        f"first 3 and last 5 tokens and predicts {best} {probs.max():.1%} (zhcls predict)")


def test_explaining_a_baseline_says_it_is_a_baseline(tmp_path, tiny_data, caplog):
    from zhcls.workflows.baseline import train_baseline

    baseline = train_baseline(tiny_data, tmp_path / "bl") and tmp_path / "bl"
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        assert main(["explain", str(baseline), "体育新闻"]) == 2
    message = caplog.records[-1].getMessage()
    assert "zhcls baseline" in message and "ONNX" not in message, message
