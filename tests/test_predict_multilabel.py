"""Multi-label inference: ``thresholds.json`` in the checkpoint, ``Classifier`` label sets and
sigmoid scores, ``zhcls predict`` outputs, ``zhcls serve`` responses and schema, ONNX export
parity and per-label explanations. The checkpoint is the tiny BERT trained a few dozen BCE
steps on toy multi-label data (sentences of one class, and pairs of two), so the scores are
far from random."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import CLASSES, SENTENCES, tiny_config
from predict_fixtures import ServerProcess, sample_texts
from zhcls.cli import main
from zhcls.errors import CheckpointError
from zhcls.evaluation.metrics import apply_thresholds
from zhcls.inference.classifier import Classifier
from zhcls.modeling.checkpoint import read_thresholds, save_checkpoint

THRESHOLDS = [0.5, 0.4, 0.6]
SPORT, FINANCE, TECH = (SENTENCES[i][0] for i in range(3))
PAIR = f"{SENTENCES[0][1]}，{SENTENCES[1][1]}"  # sport + finance


def toy_multilabel() -> tuple[list[str], np.ndarray]:
    """Every sentence with its class, and sentence pairs of two classes with both."""
    texts, gold = [], []
    for c, sentences in SENTENCES.items():
        for s in sentences:
            texts.append(s)
            gold.append([int(j == c) for j in range(3)])
    for a, b in ((0, 1), (1, 2), (0, 2)):
        for i in range(6):
            texts.append(f"{SENTENCES[a][i]}，{SENTENCES[b][(i + 1) % 6]}")
            gold.append([int(j in (a, b)) for j in range(3)])
    return texts, np.array(gold, dtype=np.float32)


def build_multilabel_checkpoint(out: Path, tiny_model: Path, steps: int = 80) -> Path:
    import torch

    from zhcls.data.dataset import encode_texts
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.forward import pad_batch
    from zhcls.modeling.model import build_model

    config = tiny_config(tiny_model, "bert", data__task="multi_label")
    torch.manual_seed(0)
    tokenizer = load_tokenizer(str(tiny_model))
    model = build_model(load_encoder(str(tiny_model)), config, len(CLASSES))
    texts, gold = toy_multilabel()
    ids, mask = pad_batch(encode_texts(tokenizer, texts, config.data.max_length),
                          tokenizer.pad_token_id, "cpu")  # (N, T)
    target = torch.from_numpy(gold)  # (N, C)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn(model(input_ids=ids, attention_mask=mask).logits, target)  # (N, C)
        loss.backward()
        optimizer.step()
    model.eval()
    return save_checkpoint(out, model, tokenizer, config, CLASSES, thresholds=THRESHOLDS)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model):
    return build_multilabel_checkpoint(tmp_path_factory.mktemp("ml") / "ckpt", tiny_model)


@pytest.fixture(scope="module")
def clf(ckpt):
    return Classifier.load(ckpt, "cpu", batch_size=4)


# ---- checkpoint ----------------------------------------------------------------------------

def test_thresholds_json_written_and_read(ckpt):
    data = json.loads((ckpt / "thresholds.json").read_text("utf-8"))
    assert data["task"] == "multi_label" and data["tuned_on"] == "dev"
    assert data["thresholds"] == dict(zip(CLASSES, THRESHOLDS, strict=True))
    assert data["default"] == 0.5 and data["at_least_one"] is False
    th, at_least_one = read_thresholds(ckpt, CLASSES)
    np.testing.assert_array_equal(th, THRESHOLDS)
    assert at_least_one is False
    assert json.loads((ckpt / "meta.json").read_text("utf-8"))["task"] == "multi_label"


@pytest.mark.parametrize("content, match", [
    (None, "not found, but zhcls.yaml says data.task multi_label"),
    ("{oops", "not valid UTF-8 JSON"),
    ('{"task": "multi_label", "thresholds": [0.5]}', "expected .*thresholds"),
    ('{"thresholds": {"体育": 0.5, "财经": 0.5, "汽车": 0.5}}',
     r"missing \['科技'\], unknown \['汽车'\]"),
    ('{"thresholds": {"体育": 0.5, "财经": 1.5, "科技": 0.5}}',
     "threshold of '财经' must be a number in"),
    ('{"thresholds": {"体育": 0.5, "财经": 0.5, "科技": 0.5}, "at_least_one": "yes"}',
     "at_least_one"),
])
def test_damaged_thresholds_are_one_line_checkpoint_errors(ckpt, tmp_path, content, match):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(ckpt, broken)
    if content is None:
        (broken / "thresholds.json").unlink()
    else:
        (broken / "thresholds.json").write_text(content, encoding="utf-8")
    with pytest.raises(CheckpointError, match=match) as err:
        read_thresholds(broken, CLASSES)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=match):
        Classifier.load(broken, "cpu")


def test_single_label_checkpoint_has_no_thresholds(tmp_path_factory, tiny_model, tmp_path):
    import shutil

    from predict_fixtures import head_checkpoint

    path = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    assert not (path / "thresholds.json").exists()
    assert read_thresholds(path, CLASSES) is None
    assert Classifier.load(path, "cpu").task == "single_label"
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "thresholds.json").write_text('{"thresholds": {}}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="zhcls.yaml says data.task single_label"):
        read_thresholds(copy, CLASSES, task="single_label")


# ---- Python API ----------------------------------------------------------------------------

def test_predict_proba_is_per_class_sigmoid(clf):
    texts = sample_texts(9)
    probs = clf.predict_proba(texts)
    assert clf.task == "multi_label" and probs.shape == (9, 3) and probs.dtype == np.float32
    logits = clf.predict_logits(texts)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert not np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    np.testing.assert_allclose(clf.predict_proba(texts[2]), probs[2], atol=1e-6)


def test_trained_model_predicts_label_sets(clf):
    texts, gold = toy_multilabel()
    preds = clf.predict(texts)
    got = np.array([[int(any(x.label_id == j for x in p.labels)) for j in range(3)]
                    for p in preds])
    assert (got == gold).all(axis=1).mean() >= 0.8, "the fixture did not learn the toy sets"
    assert {x.label for x in clf.predict(PAIR).labels} == {"体育", "财经"}


def test_prediction_is_the_shared_decision_and_json_form(clf):
    texts = sample_texts(15)
    probs = clf.predict_proba(texts)
    decided = apply_thresholds(probs, np.array(THRESHOLDS), False)
    for pred, row, on in zip(clf.predict(texts), probs, decided, strict=True):
        assert sorted(x.label_id for x in pred.labels) == list(np.flatnonzero(on))
        assert [x.score for x in pred.labels] == sorted((x.score for x in pred.labels),
                                                        reverse=True)
        assert list(pred.scores) == CLASSES
        np.testing.assert_allclose(list(pred.scores.values()), row, atol=0)
        if pred.labels:
            assert (pred.label, pred.label_id, pred.score) == (
                pred.labels[0].label, pred.labels[0].label_id, pred.labels[0].score)
        else:
            assert pred.label is None and pred.label_id is None
        d = pred.to_dict()
        assert set(d) == {"labels", "scores"}
        assert d["labels"] == [{"label": x.label, "label_id": x.label_id, "score": x.score}
                               for x in pred.labels]
        json.dumps(d)


def test_top_k_ranks_scores_regardless_of_threshold(clf):
    pred = clf.predict(SPORT, top_k=3)
    ranked = [x.score for x in pred.top_k]
    assert ranked == sorted(ranked, reverse=True) and len(ranked) == 3
    assert {x.label for x in pred.top_k} == set(CLASSES)
    assert "top_k" in pred.to_dict() and clf.predict(SPORT).top_k is None


def test_at_least_one_and_threshold_overrides(ckpt):
    strict = Classifier.load(ckpt, "cpu")
    strict.thresholds = np.ones(3)  # nothing reaches 1.0
    assert strict.predict(SPORT).labels == ()
    strict.at_least_one = True
    pred = strict.predict(SPORT)
    assert [x.label for x in pred.labels] == ["体育"]


def test_save_pretrained_keeps_the_decision(ckpt, tmp_path):
    clf = Classifier.load(ckpt, "cpu")
    clf.thresholds = np.array([0.3, 0.4, 0.9])
    clf.at_least_one = True
    again = Classifier.load(clf.save_pretrained(tmp_path / "copy"), "cpu")
    assert again.task == "multi_label" and again.at_least_one is True
    np.testing.assert_array_equal(again.thresholds, [0.3, 0.4, 0.9])
    data = json.loads((tmp_path / "copy" / "thresholds.json").read_text("utf-8"))
    assert data["tuned_on"] == "dev"


# ---- CLI -----------------------------------------------------------------------------------

def test_cli_jsonl_table_csv_show_label_sets(ckpt, clf, capsys):
    texts = [SPORT, PAIR, TECH]
    preds = clf.predict(texts)
    assert main(["predict", str(ckpt), *texts, "--format", "jsonl", "--device", "cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["labels"] for r in rows] == [p.to_dict()["labels"] for p in preds]
    assert [r["scores"] for r in rows] == [p.scores for p in preds]
    assert main(["predict", str(ckpt), *texts, "--format", "csv", "--device", "cpu"]) == 0
    table = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert table[0] == ["line", "labels", *(f"p_{n}" for n in CLASSES), "text"]
    for row, pred, text in zip(table[1:], preds, texts, strict=True):
        assert row[1] == ",".join(x.label for x in pred.labels) and row[-1] == text
        np.testing.assert_allclose([float(v) for v in row[2:5]], list(pred.scores.values()))
    assert main(["predict", str(ckpt), *texts, "--device", "cpu", "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "labels" in lines[0] and "体育" in lines[1] and "财经" in lines[2]
    assert f"{preds[1].labels[0].score:.3f}" in lines[2]


# ---- service -------------------------------------------------------------------------------

def test_serve_returns_label_sets_and_documents_them(ckpt, clf, tmp_path):
    server = ServerProcess(ckpt, tmp_path / "serve.log", "--device", "cpu")
    try:
        texts = [SPORT, PAIR, FINANCE]
        r = httpx.post(server.url + "/predict", json={"texts": texts, "probs": True}, timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        expected = [p.to_dict() for p in clf.predict(texts)]
        assert [{k: v for k, v in p.items() if k != "probs"} for p in body["predictions"]] \
            == expected
        assert body["labels"] == CLASSES
        top = httpx.post(server.url + "/predict", json={"texts": [SPORT], "top_k": 3}).json()
        assert len(top["predictions"][0]["top_k"]) == 3
        labels = httpx.get(server.url + "/labels").json()
        assert labels["task"] == "multi_label"
        assert labels["thresholds"] == dict(zip(CLASSES, THRESHOLDS, strict=True))
        assert httpx.get(server.url + "/health").json()["task"] == "multi_label"
        spec = httpx.get(server.url + "/openapi.json").json()["components"]["schemas"]
        item = spec["MultiLabelPredictionOut"]
        assert {"labels", "scores"} <= set(item["required"])
        assert "threshold" in item["properties"]["labels"]["description"]
    finally:
        server.stop()


# ---- ONNX / HF export ----------------------------------------------------------------------

def test_onnx_export_keeps_the_decision_with_parity(ckpt, clf, tmp_path):
    pytest.importorskip("onnxruntime")
    from zhcls.inference.export import export_onnx

    out = export_onnx(ckpt, tmp_path / "onnx").out_dir
    assert json.loads((out / "export.json").read_text("utf-8"))["task"] == "multi_label"
    assert read_thresholds(out, CLASSES)[0].tolist() == THRESHOLDS
    onnx_clf = Classifier.load(out, "cpu")
    assert onnx_clf.task == "multi_label" and onnx_clf.backend.name == "onnxruntime"
    texts = sample_texts(60) + [PAIR]
    diff = np.abs(onnx_clf.predict_proba(texts) - clf.predict_proba(texts)).max()
    assert diff < 1e-5, f"max |score_onnx - score_torch| = {diff:.2e} on {len(texts)} texts"
    sets = [[x.label for x in p.labels] for p in clf.predict(texts)]
    assert [[x.label for x in p.labels] for p in onnx_clf.predict(texts)] == sets
    assert len({tuple(x) for x in sets}) > 2, "every text got the same set: parity proves little"


def test_hf_export_is_multi_label_for_the_pipeline(ckpt, clf, tmp_path):
    from transformers import pipeline

    from zhcls.inference.export_hf import export_hf

    out = export_hf(ckpt, tmp_path / "hf").out_dir
    config = json.loads((out / "config.json").read_text("utf-8"))
    assert config["problem_type"] == "multi_label_classification"
    pipe = pipeline("text-classification", model=str(out), top_k=None, device="cpu")
    got = {d["label"]: d["score"] for d in pipe([PAIR])[0]}
    expected = clf.predict(PAIR).scores
    assert set(got) == set(CLASSES)
    np.testing.assert_allclose([got[n] for n in CLASSES], [expected[n] for n in CLASSES],
                               atol=1e-5)


# ---- explanations --------------------------------------------------------------------------

def test_explain_each_predicted_label(clf):
    from zhcls.inference.explain import explain_texts

    pred = clf.predict(PAIR)
    expl = explain_texts(clf, [PAIR], steps=8)[0]
    assert expl.task == "multi_label"
    assert expl.targets == [x.label_id for x in pred.labels]
    d = expl.to_dict()
    assert [e["label"] for e in d["explained"]] == [x.label for x in pred.labels]
    for e in d["explained"]:
        assert len(e["ig"]) == len(d["tokens"])
        assert sum(abs(s) for s in e["ig"]) == pytest.approx(1.0, abs=1e-5)
    sport, finance = (np.array(e["ig"]) for e in d["explained"][:2])
    assert not np.allclose(sport, finance), "every label got the same attribution"
    first = len(SENTENCES[0][1])  # the sport sentence comes first in PAIR
    by_label = {e["label"]: np.array(e["ig"]) for e in d["explained"]}
    assert by_label["体育"][:first].sum() > by_label["体育"][first:].sum()
    one = explain_texts(clf, [PAIR], target="科技", steps=8)[0]
    assert [e["label"] for e in one.to_dict()["explained"]] == ["科技"]


def test_explain_with_an_empty_set_explains_the_best_class(ckpt):
    from zhcls.inference.explain import explain_texts

    strict = Classifier.load(ckpt, "cpu")
    strict.thresholds = np.ones(3)
    expl = explain_texts(strict, [SPORT], steps=4)[0]
    assert expl.predicted == [] and expl.to_dict()["labels"] == []
    assert expl.targets == [int(np.argmax(expl.probs))] == [0]


def test_constructor_checks_the_decision(clf):
    from zhcls.errors import ConfigError

    with pytest.raises(ValueError, match="thresholds must be 3 numbers in"):
        Classifier(clf.backend, clf.tokenizer, clf.labels, 32, task="multi_label",
                   thresholds=[0.5, 0.5])
    with pytest.raises(ConfigError, match="task must be one of"):
        Classifier(clf.backend, clf.tokenizer, clf.labels, 32, task="multi")
    default = Classifier(clf.backend, clf.tokenizer, clf.labels, 32, task="multi_label")
    assert default.thresholds.tolist() == [0.5, 0.5, 0.5]


def test_explain_cli_png_and_json(ckpt, tmp_path, capsys):
    png = tmp_path / "ml.png"
    assert main(["explain", str(ckpt), PAIR, "--device", "cpu", "--steps", "4",
                 "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    out = capsys.readouterr().out
    assert "ig 体育 top:" in out and "ig 财经 top:" in out and "predicted " in out
    assert main(["explain", str(ckpt), PAIR, "--format", "json", "--device", "cpu",
                 "--steps", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "multi_label"
