"""zhcls.inference.export / zhcls.inference.onnx_backend: every head exports with dynamic batch and sequence axes,
``Classifier.load(DIR)`` runs it on onnxruntime with the same API, and on 200 texts the
probabilities match PyTorch within 1e-4; int8 quantisation; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import requires_vocab
from predict_fixtures import head_checkpoint, onnx_export, sample_texts, trained_checkpoint
from zhcls.cli import main
from zhcls.config import HEADS
from zhcls.errors import ZhclsError
from zhcls.inference.classifier import Classifier
from zhcls.inference.export import export_onnx

PARITY_TEXTS = 200


@pytest.fixture(scope="module")
def texts():
    return sample_texts(PARITY_TEXTS)


@requires_vocab  # with a small character vocab the random heads give near-uniform probabilities
@pytest.mark.parametrize("head", HEADS)
def test_every_head_exports_with_probability_parity(tmp_path_factory, tiny_model, texts, head):
    base = tmp_path_factory.getbasetemp()
    ckpt = head_checkpoint(base, tiny_model, head)
    out = onnx_export(base, ckpt, head)
    info = json.loads((out / "export.json").read_text())
    assert info["max_abs_prob_diff"] < 1e-4 and info["head"] == head
    torch_clf = Classifier.load(ckpt, "cpu", batch_size=32)
    onnx_clf = Classifier.load(out, "cpu", batch_size=32)
    assert onnx_clf.backend.name == "onnxruntime" and onnx_clf.labels == torch_clf.labels
    assert onnx_clf.head == head and onnx_clf.max_length == torch_clf.max_length
    p_torch = torch_clf.predict_proba(texts)  # (200, 3)
    p_onnx = onnx_clf.predict_proba(texts)
    assert p_torch.max(axis=1).mean() > 0.6, "probabilities near uniform: parity proves little"
    diff = float(np.abs(p_torch - p_onnx).max())
    assert diff < 1e-4, f"{head}: max |p_onnx - p_torch| = {diff:.2e} on {len(texts)} texts"
    assert [p.label for p in onnx_clf.predict(texts[:20])] == \
        [p.label for p in torch_clf.predict(texts[:20])]
    if head == "bert":
        one_thread = Classifier.load(out, "cpu", threads=1)
        np.testing.assert_allclose(one_thread.predict_proba(texts[:20]), p_onnx[:20], atol=1e-6)
        with pytest.raises(ZhclsError, match="threads must be >= 1"):
            Classifier.load(out, "cpu", threads=0)


def test_graph_has_dynamic_axes_and_side_files(tiny_model, tmp_path_factory):
    import onnx

    base = tmp_path_factory.getbasetemp()
    out = onnx_export(base, head_checkpoint(base, tiny_model, "bert_GRU_att"), "bert_GRU_att")
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in graph.input}
    assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
    assert [o.name for o in graph.output] == ["logits"]
    for name in ("tokenizer.json", "labels.json", "zhcls.yaml", "export.json"):
        assert (out / name).is_file(), name
    info = json.loads((out / "export.json").read_text())
    assert info["head"] == "bert_GRU_att" and info["model_path"] == "model.onnx"


def test_one_text_batches_of_any_size_and_short_cnn_input(tmp_path_factory, tiny_model):
    base = tmp_path_factory.getbasetemp()
    ckpt = head_checkpoint(base, tiny_model, "bert_CNN")
    onnx_clf = Classifier.load(onnx_export(base, ckpt, "bert_CNN"), "cpu", batch_size=64)
    torch_clf = Classifier.load(ckpt, "cpu")
    assert onnx_clf.backend.min_seq_len == 4  # widest kernel of filter_sizes [2, 3, 4]
    one = onnx_clf.predict_proba("好")  # [CLS] 好 [SEP]: shorter than the widest kernel
    np.testing.assert_allclose(one, torch_clf.predict_proba("好"), atol=1e-5)
    many = sample_texts(150)  # batches of 64, 64, 22
    np.testing.assert_allclose(onnx_clf.predict_proba(many), torch_clf.predict_proba(many),
                               atol=1e-5)


def test_int8_quantisation_via_cli(tmp_path, capsys, tiny_model, tiny_data, tmp_path_factory,
                                   texts):
    ckpt = trained_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)
    out = tmp_path / "q"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out),
                 "--quantize", "int8"]) == 0
    printed = capsys.readouterr().out
    assert "parity on" in printed and "top-1 agreement" in printed
    assert (out / "model.int8.onnx").stat().st_size < (out / "model.onnx").stat().st_size
    fp32 = Classifier.load(out, "cpu")
    int8 = Classifier.load(out, "cpu", quantized=True)
    assert int8.source.endswith("model.int8.onnx")
    p32, p8 = fp32.predict_proba(texts), int8.predict_proba(texts)
    assert (p32.argmax(1) == p8.argmax(1)).mean() >= 0.9
    assert 0 < float(np.abs(p32 - p8).max()) < 0.2  # quantised: close, but not identical
    assert main(["predict", str(out), "--quantized", "--format", "jsonl", texts[0]]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] == int8.predict(texts[0]).label


def test_export_errors(tmp_path, tmp_path_factory, tiny_model):
    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    with pytest.raises(ZhclsError, match="is the checkpoint itself"):
        export_onnx(ckpt, ckpt)
    with pytest.raises(ZhclsError, match="--quantize must be one of"):
        export_onnx(ckpt, tmp_path / "x", quantize="int4")
    with pytest.raises(ZhclsError, match="checkpoint directory not found"):
        export_onnx(tmp_path / "nothing", tmp_path / "y")
    import shutil

    plain = shutil.copytree(onnx_export(tmp_path_factory.getbasetemp(), ckpt, "bert"),
                            tmp_path / "plain")
    with pytest.raises(ZhclsError, match="model.int8.onnx not found"):
        Classifier.load(plain, quantized=True)
    (plain / "export.json").unlink()
    with pytest.raises(ZhclsError, match="export.json not found"):
        Classifier.load(plain)


def test_export_refuses_a_non_empty_out_and_replaces_only_an_earlier_export(
        tmp_path, tmp_path_factory, tiny_model, caplog):
    import logging

    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    data = tmp_path / "data"  # a dataset directory: nothing may be written among its files
    data.mkdir()
    (data / "train.txt").write_text("体育新闻\t0\n", encoding="utf-8")
    for fmt in ("onnx", "hf"):
        with caplog.at_level(logging.ERROR, logger="zhcls"):
            assert main(["export", str(ckpt), "--format", fmt, "--out", str(data)]) == 2
            assert main(["export", str(ckpt), "--format", fmt, "--out", str(data),
                         "--overwrite"]) == 2
        assert sorted(p.name for p in data.iterdir()) == ["train.txt"]
        assert "not empty" in caplog.text and "train.txt" in caplog.text
    out = tmp_path / "onnx"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    (out / "eval_test").mkdir()  # what an `evaluate` of the earlier export left there
    assert main(["export", str(ckpt), "--out", str(out)]) == 2
    assert main(["export", str(ckpt), "--out", str(out), "--overwrite"]) == 0
    assert not (out / "eval_test").exists() and (out / "export.json").is_file()
    (out / "NOTES.txt").write_text("mine", encoding="utf-8")  # not the export's: kept
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="zhcls"):
        assert main(["export", str(ckpt), "--out", str(out), "--overwrite"]) == 2
    assert "NOTES.txt" in caplog.text and (out / "NOTES.txt").read_text(encoding="utf-8") == "mine"


def test_a_failed_overwrite_keeps_the_earlier_export(tmp_path, tmp_path_factory, tiny_model,
                                                     monkeypatch):
    import zhcls.inference.export as export

    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    out = tmp_path / "onnx"
    export_onnx(ckpt, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(export, "_max_diff", lambda a, b: 1.0)  # the parity check fails
    with pytest.raises(ZhclsError, match="the export is wrong"):
        export_onnx(ckpt, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


@requires_vocab
def test_real_ernie_encoder_exports_with_parity(tmp_path, tiny_model, texts):
    """ERNIE checkpoints carry an ErnieModel encoder (task-type embeddings), not BERT."""
    import torch
    from transformers import ErnieConfig, ErnieModel

    from conftest import REPO
    from zhcls.config import load_config
    from zhcls.modeling.checkpoint import save_checkpoint
    from zhcls.modeling.encoder import load_tokenizer
    from zhcls.modeling.model import build_model

    tok = load_tokenizer(str(tiny_model))
    torch.manual_seed(0)
    encoder = ErnieModel(ErnieConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=64,
                                     use_task_id=True))
    config = load_config(REPO / "configs" / "ERNIE.yaml", ["--model.pretrained", str(tiny_model)])
    model = build_model(encoder, config, 3).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    ckpt = save_checkpoint(tmp_path / "ernie", model, tok, config, ["a", "b", "c"])
    export_onnx(ckpt, tmp_path / "onnx")
    p_torch = Classifier.load(ckpt, "cpu").predict_proba(texts)
    p_onnx = Classifier.load(tmp_path / "onnx", "cpu").predict_proba(texts)
    assert p_torch.max(axis=1).mean() > 0.6
    assert float(np.abs(p_torch - p_onnx).max()) < 1e-4


def test_evaluate_accepts_an_onnx_export_with_the_checkpoints_numbers(tmp_path, capsys, caplog,
                                                                       tiny_model, tiny_data,
                                                                       tmp_path_factory):
    base = tmp_path_factory.getbasetemp()
    ckpt = trained_checkpoint(base, tiny_model, tiny_data)
    out = onnx_export(base, ckpt, "trained")  # (the name keys the session's exports)
    for model, where in ((ckpt, tmp_path / "torch"), (out, tmp_path / "onnx")):
        assert main(["evaluate", str(model), "--data", str(tiny_data), "--split", "dev",
                     "--out", str(where)]) == 0
    printed = capsys.readouterr().out
    assert "ONNX export" in printed and str(out) in printed  # says what was evaluated
    torch_m, onnx_m = (json.loads((tmp_path / d / "metrics.json").read_text("utf-8"))
                       for d in ("torch", "onnx"))
    assert onnx_m["accuracy"] == torch_m["accuracy"] and onnx_m["num_examples"] == torch_m["num_examples"] > 0
    assert onnx_m["loss"] == pytest.approx(torch_m["loss"], abs=1e-3)
    assert (tmp_path / "onnx" / "confusion_matrix.png").is_file()
    assert main(["evaluate", str(out), "--quantized", "--data", str(tiny_data)]) == 2
    assert "model.int8.onnx not found" in caplog.text
    assert main(["evaluate", str(ckpt), "--quantized", "--data", str(tiny_data)]) == 2
    assert "--quantized: " in caplog.text and "is not an ONNX export directory" in caplog.text
