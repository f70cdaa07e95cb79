"""Long text (issue 13): head_tail / chunks windows, the chunk collator, exact window pooling,
bounded forward passes, the Classifier following the checkpoint, data-stats, export refusal."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import SHARED, tiny_config
from zhcls.data.dataset import Collator, LongTextSpec, collate_windows, encode_split
from zhcls.data.long_text import drop_stats, encode_long, spread, window_starts
from zhcls.modeling.chunks import ChunkPooler

REVIEWS = SHARED / "reviews" / "train.txt"
LONG = "这款手机的屏幕非常清晰，电池续航也很好。" * 12 + "但是售后服务太差了，再也不买了。"


@pytest.fixture(scope="module")
def tok(tiny_model):
    from zhcls.modeling.encoder import load_tokenizer

    return load_tokenizer(str(tiny_model))


def _plain(tok, texts):
    return tok(texts, add_special_tokens=False, verbose=False)["input_ids"]


def _reference_windows(tok, row, max_length, stride):
    content = max_length - 2
    return [[tok.cls_token_id, *row[s:s + content], tok.sep_token_id]
            for s in window_starts(len(row), content, stride)]


@pytest.mark.parametrize("max_length,stride", [(16, 7), (16, 14), (16, 1), (10, 3)])
def test_chunk_windows_cover_every_token_in_order(tok, max_length, stride):
    texts = [LONG, "短评", LONG[:40], LONG[:14]]
    got = encode_long(tok, texts, max_length, "chunks", head_tokens=2, stride=stride)
    for row, windows in zip(_plain(tok, texts), got, strict=True):
        assert windows == _reference_windows(tok, row, max_length, stride)
        assert all(len(w) <= max_length for w in windows)
        covered = set()
        for s in window_starts(len(row), max_length - 2, stride):
            covered |= set(range(s, min(s + max_length - 2, len(row))))
        assert covered == set(range(len(row)))  # every token, and the last window ends there


@pytest.mark.skipif(not REVIEWS.is_file(), reason=f"shared reviews data not found at {REVIEWS}")
def test_windows_match_a_full_tokenisation_on_real_reviews(tok):
    texts = [ln.split("\t")[0] for ln in REVIEWS.read_text("utf-8").splitlines()[:400]]
    rows = _plain(tok, texts)
    assert max(len(r) for r in rows) > 200  # real long texts are in the sample
    got = encode_long(tok, texts, 64, "chunks", head_tokens=15, stride=31)
    assert all(w == _reference_windows(tok, r, 64, 31) for r, w in zip(rows, got, strict=True))
    head = encode_long(tok, texts, 64, "head_tail", head_tokens=15, stride=31)
    for row, (ids,) in zip(rows, head, strict=True):
        kept = row if len(row) <= 62 else row[:15] + row[-47:]
        assert ids == [tok.cls_token_id, *kept, tok.sep_token_id]


def test_head_tail_keeps_head_and_tail_and_truncate_the_head(tok):
    row = _plain(tok, [LONG])[0]
    (ht,), = encode_long(tok, [LONG], 12, "head_tail", head_tokens=4, stride=5)
    assert ht[1:-1] == row[:4] + row[-6:]
    (all_head,), = encode_long(tok, [LONG], 12, "head_tail", head_tokens=10, stride=5)
    assert all_head[1:-1] == row[:10]  # tail 0 keeps no tail (not the whole text)
    (tr,), = encode_long(tok, [LONG], 12, "truncate", head_tokens=4, stride=5)
    assert tr[1:-1] == row[:10]


def test_max_chunks_spreads_windows_keeping_first_and_last(tok):
    every = encode_long(tok, [LONG], 16, "chunks", head_tokens=0, stride=7)[0]
    capped = encode_long(tok, [LONG], 16, "chunks", head_tokens=0, stride=7, max_chunks=4)[0]
    assert len(every) > 4 and len(capped) == 4
    assert capped[0] == every[0] and capped[-1] == every[-1]
    assert spread(10, 4) == [0, 3, 6, 9] and spread(3, 8) == [0, 1, 2] and spread(5, 1) == [0]


def test_drop_stats_counts_what_each_setting_loses(tok):
    texts = [LONG, "短评"]
    n = len(_plain(tok, [LONG])[0])
    stats = drop_stats(tok, texts, 16, head_tokens=3, stride=14, max_chunks=2)
    s = stats["settings"]
    assert s["truncate"]["dropped_tokens"] == s["head_tail"]["dropped_tokens"] == n - 14
    last = window_starts(n, 14, 14)[-1]  # first and last window kept, the last one short
    assert s["chunks"]["dropped_tokens"] == n - 14 - (n - last)
    assert s["truncate"]["texts_losing_text"] == 1 and stats["texts_over_max_length"] == 1
    every = drop_stats(tok, texts, 16, head_tokens=3, stride=7, max_chunks=None)
    assert every["settings"]["chunks"]["dropped_tokens"] == 0


def test_collator_stacks_windows_with_a_chunk_mask():
    items = [{"input_ids": [[1, 5, 6, 2], [1, 7, 2]], "labels": 0},
             {"input_ids": [[1, 8, 2]], "labels": 1}]
    batch = Collator(pad_token_id=0)(items)
    assert batch["input_ids"].shape == (3, 4) and batch["attention_mask"].sum() == 10
    assert batch["chunk_mask"].tolist() == [[True, True, False], [False, False, True]]
    assert batch["labels"].tolist() == [0, 1]
    ids, mask, chunk = collate_windows([[1, 5, 2], [1, 2]], 0)
    assert chunk is None and ids.shape == (2, 3)  # one window per text: no chunk mask


def test_cache_key_depends_on_long_text_settings(tok, tiny_data, tmp_path):
    from zhcls.data.dataset import _cache_key
    from zhcls.data.formats import read_split

    split = read_split(tiny_data / "train.txt", ["体育", "财经", "科技"])
    keys = {_cache_key(split, tok, 16, spec) for spec in (
        None, LongTextSpec("head_tail", 3, 7), LongTextSpec("head_tail", 4, 7),
        LongTextSpec("chunks", 3, 7), LongTextSpec("chunks", 3, 6),
        LongTextSpec("chunks", 3, 7, 2))}
    assert len(keys) == 6
    assert _cache_key(split, tok, 16, LongTextSpec()) == _cache_key(split, tok, 16)
    enc = encode_split(split, tok, 8, 3, tmp_path, long_text="chunks", stride=3, max_chunks=2)
    again = encode_split(split, tok, 8, 3, tmp_path, long_text="chunks", stride=3, max_chunks=2)
    assert enc.input_ids == again.input_ids and isinstance(enc.input_ids[0][0], list)
    assert max(len(w) for w in enc.input_ids) == 2


@pytest.mark.parametrize("kind", ["mean", "max", "attention"])
def test_pooler_is_exact_and_ignores_other_texts(kind):
    torch.manual_seed(0)
    pooler = ChunkPooler(kind, 6, 4)
    reps = torch.randn(5, 6)  # (W, R)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 1, 1, 1]], dtype=torch.bool)  # (B, W)
    both = pooler(reps, mask)
    alone = pooler(reps[2:], torch.ones(1, 3, dtype=torch.bool))
    torch.testing.assert_close(both[1:], alone, atol=1e-6, rtol=0)
    if kind == "mean":
        torch.testing.assert_close(both[0], reps[:2].mean(0))
    if kind == "max":
        torch.testing.assert_close(both[0], reps[:2].amax(0))
    huge = reps.clone()
    huge[2:] = 1e4  # another text's windows never leak into text 0
    torch.testing.assert_close(pooler(huge, mask)[0], both[0])
    assert (sum(p.numel() for p in pooler.parameters()) > 0) == (kind == "attention")


def _chunk_model(tiny_model, head="bert", pooling="mean", max_length=12):
    from zhcls.modeling.encoder import load_encoder
    from zhcls.modeling.model import build_model

    cfg = tiny_config(tiny_model, head, data__max_length=max_length, data__long_text="chunks",
                      data__chunk_pooling=pooling)
    torch.manual_seed(0)
    return build_model(load_encoder(str(tiny_model)), cfg, num_labels=3).eval(), cfg


@pytest.mark.parametrize("head,pooling", [("bert", "mean"), ("bert_CNN", "max"),
                                          ("bert_GRU_att", "attention"), ("bert_DPCNN", "mean")])
def test_a_text_in_windows_batched_with_others_equals_the_text_alone(tiny_model, tok, head,
                                                                       pooling):
    model, cfg = _chunk_model(tiny_model, head, pooling)
    texts = ["短评", LONG[:60], "央行宣布下调存款准备金率"]
    windows = encode_long(tok, texts, 12, "chunks", head_tokens=2, stride=5)
    assert len(windows[1]) > 3
    with torch.no_grad():
        ids, mask, chunk = (torch.from_numpy(x) for x in collate_windows(windows, 0))
        out = model(ids, mask, chunk_mask=chunk)
        ids1, mask1, chunk1 = (torch.from_numpy(x) for x in collate_windows(windows[1:2], 0))
        alone = model(ids1, mask1, chunk_mask=chunk1)
    assert out.logits.shape == (3, 3) and out.representation.shape[0] == 3
    torch.testing.assert_close(out.logits[1], alone.logits[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out.representation[1], alone.representation[0], atol=1e-5, rtol=0)
    # forward_ids in bounded window batches (2 at a time) gives the same numbers
    from zhcls.modeling.forward import forward_ids

    res = forward_ids(model, windows, 0, batch_size=2, with_representations=True)
    torch.testing.assert_close(torch.from_numpy(res.logits), out.logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.from_numpy(res.representations), out.representation,
                               atol=1e-5, rtol=0)


def test_forward_ids_never_runs_more_than_batch_size_windows(tiny_model, tok):
    model, _ = _chunk_model(tiny_model)
    seen = []
    original = model.window_representations

    def spy(input_ids, attention_mask, token_type_ids=None):
        seen.append(input_ids.shape[0])
        return original(input_ids, attention_mask, token_type_ids)

    model.window_representations = spy
    from zhcls.modeling.forward import forward_ids

    windows = encode_long(tok, [LONG * 3, "短评", LONG], 12, "chunks", head_tokens=2, stride=5)
    res = forward_ids(model, windows, 0, batch_size=4)
    assert res.logits.shape == (3, 3)
    assert max(seen) <= 4 and sum(seen) == sum(len(w) for w in windows)


def test_attention_pooling_parameters_only_when_configured(tiny_model):
    mean, _ = _chunk_model(tiny_model, pooling="mean")
    att, _ = _chunk_model(tiny_model, pooling="attention")
    assert not list(mean.chunk_pooler.parameters())
    assert list(att.chunk_pooler.parameters())


def _saved(tmp_path_factory, tiny_model, name, **data):
    """An untrained checkpoint (classifier weights scaled up) saved with save_checkpoint."""
    from conftest import CLASSES
    from zhcls.modeling.checkpoint import save_checkpoint
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model

    config = tiny_config(tiny_model, "bert", **{f"data__{k}": v for k, v in data.items()})
    torch.manual_seed(0)
    model = build_model(load_encoder(str(tiny_model)), config, len(CLASSES)).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    return save_checkpoint(tmp_path_factory.mktemp(name) / "ckpt", model,
                           load_tokenizer(str(tiny_model)), config, CLASSES)


@pytest.fixture(scope="module")
def chunks_ckpt(tmp_path_factory, tiny_model):
    return _saved(tmp_path_factory, tiny_model, "chunks", max_length=8, long_text="chunks",
                  chunk_stride=3, chunk_pooling="attention")


@pytest.fixture(scope="module")
def head_tail_ckpt(tmp_path_factory, tiny_model):
    return _saved(tmp_path_factory, tiny_model, "head-tail", max_length=10,
                  long_text="head_tail", head_tokens=3)


def test_classifier_follows_a_chunks_checkpoint(chunks_ckpt, tok):
    from zhcls.inference.classifier import Classifier, InputTextError
    from zhcls.modeling.checkpoint import load_checkpoint
    from zhcls.modeling.forward import forward_ids

    clf = Classifier.load(chunks_ckpt, "cpu", batch_size=2)
    assert clf.windows.mode == "chunks" and clf.windows.stride == 3
    ids = clf.encode([LONG, "好"])
    assert ids[0] == encode_long(tok, [LONG], 8, "chunks", head_tokens=1, stride=3)[0]
    assert len(ids[0]) > 50  # every window at prediction time (no training cap)
    fresh = load_checkpoint(chunks_ckpt, "cpu").model  # attention pooler saved and reloaded
    torch.testing.assert_close(fresh.chunk_pooler.state_dict(),
                               clf.checkpoint.model.chunk_pooler.state_dict())
    want = forward_ids(fresh, ids, tok.pad_token_id, batch_size=64).logits
    got = clf.predict_logits([LONG, "好"])
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(want), atol=1e-5, rtol=0)
    probs = clf.predict_proba([LONG, "好"])
    assert clf.predict(LONG).score == pytest.approx(float(probs[0].max()), abs=1e-6)
    strict = Classifier.load(chunks_ckpt, "cpu", long_text="error")
    with pytest.raises(InputTextError, match="longer than the model's limit of 8"):
        strict.predict(LONG)
    torch.testing.assert_close(torch.from_numpy(strict.predict_proba(["好"])),
                               torch.from_numpy(probs[1:]), atol=1e-5, rtol=0)


def test_head_tail_checkpoint_predicts_and_exports_with_parity(head_tail_ckpt, tok, tmp_path):
    from zhcls.inference.classifier import Classifier

    clf = Classifier.load(head_tail_ckpt, "cpu")
    row = _plain(tok, [LONG])[0]
    assert clf.encode([LONG]) == [[tok.cls_token_id, *row[:3], *row[-5:], tok.sep_token_id]]
    pytest.importorskip("onnxruntime")
    from zhcls.inference.export import export_onnx

    result = export_onnx(head_tail_ckpt, tmp_path / "onnx", check_texts=[LONG])
    assert result.max_abs_prob_diff < 1e-4
    onnx = Classifier.load(tmp_path / "onnx", "cpu")
    assert onnx.encode([LONG]) == clf.encode([LONG])
    torch.testing.assert_close(torch.from_numpy(onnx.predict_proba([LONG, "好"])),
                               torch.from_numpy(clf.predict_proba([LONG, "好"])), atol=1e-4,
                               rtol=0)


def test_chunks_checkpoint_exports_to_onnx_with_parity(chunks_ckpt, tok, tmp_path):
    pytest.importorskip("onnxruntime")
    from zhcls.errors import ZhclsError
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.export import export_onnx
    from zhcls.inference.export_hf import export_hf

    result = export_onnx(chunks_ckpt, tmp_path / "onnx", check_texts=[LONG, LONG[:30]],
                         quantize="int8")
    assert result.max_abs_prob_diff < 1e-4 and (tmp_path / "onnx" / "pool.onnx").is_file()
    onnx = Classifier.load(tmp_path / "onnx", "cpu", batch_size=3)
    torch_clf = Classifier.load(chunks_ckpt, "cpu", batch_size=64)
    texts = [LONG, "好", LONG[:25], "央行宣布下调存款准备金率"]
    assert onnx.encode(texts) == torch_clf.encode(texts)  # windows, from the config
    torch.testing.assert_close(torch.from_numpy(onnx.predict_proba(texts)),
                               torch.from_numpy(torch_clf.predict_proba(texts)), atol=1e-4,
                               rtol=0)
    assert Classifier.load(tmp_path / "onnx", "cpu", quantized=True).predict(LONG).label
    with pytest.raises(ZhclsError, match="data.long_text chunks"):
        export_hf(chunks_ckpt, tmp_path / "hf")


@pytest.mark.slow
def test_chunks_training_run_end_to_end(tmp_path, tiny_model, tiny_data):
    """``zhcls train`` with ``--data.long_text chunks`` (max_length 8: the tiny sentences make
    two to four windows each, at most 3 in training), then predict from its checkpoint."""
    from zhcls.inference.classifier import Classifier
    from zhcls.training.train import train

    config = tiny_config(tiny_model, "bert", data__max_length=8, data__long_text="chunks",
                         data__chunk_stride=3, data__max_chunks=3, train__max_steps=20,
                         train__eval_steps=10, train__evaluate_test="false", train__lr="5e-3")
    best = train(config, tiny_data, tmp_path / "run").best_dir
    clf = Classifier.load(best, "cpu")
    assert clf.windows.mode == "chunks" and len(clf.encode([LONG])[0]) > 50
    assert clf.predict(LONG).label in clf.labels


def test_data_stats_reports_what_each_setting_drops(tiny_data, tiny_model, capsys, caplog):
    import json

    from zhcls.cli import main

    argv = ["data-stats", str(tiny_data), "--tokenizer", str(tiny_model), "--no-plots",
            "--max-length", "8", "--chunk-stride", "3", "--max-chunks", "2"]
    assert main([*argv, "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)["long_text"]["train"]
    assert info["texts_over_max_length"] == info["texts"]  # every tiny sentence is > 6 tokens
    drops = {k: v["dropped_tokens"] for k, v in info["settings"].items()}
    assert drops["truncate"] == drops["head_tail"] == info["tokens"] - 6 * info["texts"]
    assert 0 < drops["chunks"] < drops["truncate"]
    assert main(argv) == 0
    assert "chunks    drops" in capsys.readouterr().out
    assert main([*argv, "--chunk-stride", "7"]) == 2  # more than max_length - 2
    assert "--chunk-stride 1 to 6" in caplog.text


def test_service_reads_every_window_of_a_chunks_checkpoint(chunks_ckpt):
    from fastapi.testclient import TestClient

    from zhcls.inference.classifier import Classifier
    from zhcls.serve.app import ServeSettings, create_app

    clf = Classifier.load(chunks_ckpt, "cpu", batch_size=4)
    texts = [LONG * 3, "好"]
    with TestClient(create_app(clf, ServeSettings())) as client:
        body = client.post("/predict", json={"texts": texts, "probs": True}).json()
    got = torch.tensor([p["probs"] for p in body["predictions"]])
    torch.testing.assert_close(got, torch.from_numpy(clf.predict_proba(texts)).float(),
                               atol=1e-5, rtol=0)


def test_training_loop_evaluation_runs_bounded_window_batches(tiny_model, tok):
    """The Trainer's evaluation collates every window of eval_batch_size texts into one batch
    (a sweep on reviews peaked at 7 GB RSS); the model then runs at most window_batch
    windows at a time, with the same logits as one call."""
    model, _ = _chunk_model(tiny_model, "bert_CNN", "attention")
    seen = []
    original = model.window_representations

    def spy(input_ids, attention_mask, token_type_ids=None):
        seen.append(input_ids.shape[0])
        return original(input_ids, attention_mask, token_type_ids)

    windows = encode_long(tok, [LONG * 3, "短评", LONG], 12, "chunks", head_tokens=2, stride=5)
    ids, mask, chunk = (torch.from_numpy(x) for x in collate_windows(windows, 0))
    with torch.no_grad():
        whole = model(ids, mask, chunk_mask=chunk)
        model.window_representations = spy
        bounded = model(ids, mask, chunk_mask=chunk, window_batch=4)
    assert max(seen) <= 4 and sum(seen) == ids.shape[0] > 4
    torch.testing.assert_close(bounded.logits, whole.logits, atol=1e-5, rtol=0)



def test_explaining_a_long_text_of_a_chunks_model_says_what_the_model_predicts(chunks_ckpt):
    """explain used to report the first window's probabilities as 'predicted', which could
    name another class than `zhcls predict` (which reads every window)."""
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.explain import explain_texts

    clf = Classifier.load(chunks_ckpt, "cpu")
    expl = explain_texts(clf, [LONG], steps=4)[0]
    full = clf.predict_proba(LONG)
    best = clf.labels[int(full.argmax())]
    assert expl.truncated and expl.reading_note is not None
    assert f"predicts {best} {full.max():.1%}" in expl.reading_note
    assert expl.to_dict()["reading_note"] == expl.reading_note
    short = explain_texts(clf, ["短评"], steps=4)[0]
    assert short.reading_note is None


def test_refusing_a_long_text_says_how_this_model_would_read_it(chunks_ckpt):
    """The refusal of a chunks model used to speak of 'the model's limit' and advise
    `--long-text truncate` as if the text would then be cut."""
    from zhcls.inference.classifier import Classifier, InputTextError

    clf = Classifier.load(chunks_ckpt, "cpu", long_text="error")
    with pytest.raises(InputTextError, match="chunks, which reads every window of it"):
        clf.predict(LONG)


def test_long_text_options_the_mode_ignores_are_named_at_train_start(tiny_model, tiny_data,
                                                                     tmp_path, caplog):
    from zhcls.training.train import train

    config = tiny_config(tiny_model, train__max_steps=1, train__eval_steps=1,
                         data__chunk_pooling="attention", data__max_chunks=4,
                         data__head_tokens=5, train__evaluate_test="false")
    assert config.data.unused_long_text_options() == [
        "data.head_tokens 5 (for head_tail)", "data.chunk_pooling attention (for chunks)",
        "data.max_chunks 4 (for chunks)"]
    with caplog.at_level(logging.WARNING, logger="zhcls"):
        train(config, tiny_data, tmp_path / "run")
    assert ("data.head_tokens 5 (for head_tail), data.chunk_pooling attention (for chunks), "
            "data.max_chunks 4 (for chunks): ignored, since this run's data.long_text is "
            "truncate" in caplog.text)
    chunks = tiny_config(tiny_model, data__long_text="chunks", data__max_chunks=4)
    assert chunks.data.unused_long_text_options() == []
