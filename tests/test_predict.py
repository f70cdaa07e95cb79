"""zhcls.inference.classifier (Classifier), zhcls.inference.io and ``zhcls predict``: shapes and label order,
input order restored across length-sorted batches, the text rules, streaming files, and the
same numbers from the Python API in a fresh process and from the CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import SENTENCES, THUCNEWS, requires_thucnews
from predict_fixtures import head_checkpoint, sample_texts, trained_checkpoint
from zhcls.cli import main
from zhcls.inference.classifier import Classifier, InputTextError
from zhcls.inference.io import clip, display_width, iter_records


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_model, tiny_data):
    return trained_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, tiny_data)


@pytest.fixture(scope="module")
def clf(ckpt):
    return Classifier.load(ckpt, "cpu", batch_size=4)


def test_predict_proba_shape_order_and_labels(clf, ckpt):
    from zhcls.modeling.checkpoint import read_labels

    texts = sample_texts(10)
    probs = clf.predict_proba(texts)
    assert probs.shape == (10, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert clf.labels == read_labels(ckpt) == ["体育", "财经", "科技"]
    single = clf.predict_proba(texts[3])
    assert single.shape == (3,)
    np.testing.assert_allclose(single, probs[3], atol=1e-6)


def test_trained_model_fits_its_training_sentences(clf):
    texts = [t for label in SENTENCES for t in SENTENCES[label]]
    gold = [label for label in SENTENCES for _ in SENTENCES[label]]
    correct = sum(p.label_id == g for p, g in zip(clf.predict(texts), gold, strict=True))
    assert correct >= 15, f"{correct}/18 training sentences right; the fixture did not train"


def test_predict_matches_proba_and_ranks_top_k(clf):
    texts = sample_texts(12)
    probs = clf.predict_proba(texts)
    preds = clf.predict(texts, top_k=3)
    for pred, row in zip(preds, probs, strict=True):
        assert pred.label_id == int(row.argmax()) and pred.label == clf.labels[pred.label_id]
        assert pred.score == pytest.approx(float(row.max()), abs=1e-6)
        scores = [x.score for x in pred.top_k]
        assert scores == sorted(scores, reverse=True) and len(scores) == 3
        assert pred.top_k[0].label == pred.label
        assert [x.label for x in pred.top_k] == [clf.labels[j] for j in np.argsort(-row)]
    one = clf.predict(texts[0])
    assert one.top_k is None and one.label == preds[0].label
    assert set(one.to_dict()) == {"label", "label_id", "score"}


def test_input_order_restored_across_length_sorted_batches(clf):
    texts = sample_texts(23)  # lengths vary, batch_size 4 → 6 batches sorted by length
    together = clf.predict_proba(texts)
    alone = np.stack([clf.predict_proba(t) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    shuffled = np.random.default_rng(0).permutation(len(texts))
    np.testing.assert_allclose(clf.predict_proba([texts[i] for i in shuffled]),
                               together[shuffled], atol=1e-5)


def test_text_rules(clf):
    with pytest.raises(InputTextError, match="text 1: empty text"):
        clf.predict(["好", "   "])
    with pytest.raises(InputTextError, match="text 2: expected a string, found int"):
        clf.predict_proba(["a", "b", 3])
    with pytest.raises(InputTextError, match="expected a string or a list"):
        clf.predict_proba(42)
    with pytest.raises(InputTextError, match="found bytes; decode it first"):
        clf.predict("体育".encode())
    as_array = clf.predict_proba(np.array(["好", "中超联赛"]))  # any iterable of str works
    np.testing.assert_allclose(as_array, clf.predict_proba(("好", "中超联赛")), atol=1e-6)
    with pytest.raises(InputTextError, match="top_k must be an integer from 1 to 3"):
        clf.predict("好", top_k=4)
    assert clf.predict_proba([]).shape == (0, 3) and clf.predict([]) == []


def test_long_text_is_truncated_to_max_length(clf):
    head = "中超联赛第十轮主队逆转取胜" * 2  # 26 characters → 28 tokens
    long = head + "央行宣布下调存款准备金率" * 20
    ids = clf.encode([long])[0]
    assert len(ids) == clf.max_length == 32
    prefix = long[: clf.max_length - 2]
    np.testing.assert_allclose(clf.predict_proba(long), clf.predict_proba(prefix), atol=1e-6)
    strict = Classifier(clf.backend, clf.tokenizer, clf.labels, clf.max_length,
                        long_text="error")
    with pytest.raises(InputTextError, match="longer than the model's limit of 32 tokens"):
        strict.predict(["好", long])
    assert strict.predict(prefix).label == clf.predict(prefix).label


def test_untrained_head_checkpoints_load_and_predict(tmp_path_factory, tiny_model):
    path = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert_RCNN")
    clf = Classifier.load(path, "cpu")
    assert clf.head == "bert_RCNN" and clf.backend.name == "torch"
    assert clf.predict_proba(sample_texts(5)).shape == (5, 3)


def test_load_errors_are_clear(tmp_path, ckpt):
    from zhcls.errors import ZhclsError

    with pytest.raises(ZhclsError, match="checkpoint directory not found .the path does not exist"):
        Classifier.load(tmp_path / "missing")
    with pytest.raises(ZhclsError, match="quantized=True needs an ONNX export"):
        Classifier.load(ckpt, "cpu", quantized=True)
    with pytest.raises(ZhclsError, match="max_length 100000 is outside"):
        Classifier.load(ckpt, "cpu", max_length=100_000)


def test_display_width_and_clip():
    assert display_width("中文ab") == 6
    assert clip("中文" * 10, 9) == "中文中文…" and display_width(clip("中文" * 10, 9)) <= 9
    assert clip("a\tb\nc", 10) == "a b c"


def test_readers_by_suffix(tmp_path):
    from zhcls.errors import DataError

    (tmp_path / "a.txt").write_text("体育新闻\t0\n\n财经\n", encoding="utf-8")
    (tmp_path / "a.csv").write_text('id,text\n1,"体育, 新闻"\n2,财经\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"text": "体育"}\n"财经"\n', encoding="utf-8")
    assert [(r.text, r.line) for r in iter_records(tmp_path / "a.txt")] == [("体育新闻", 1),
                                                                            ("财经", 3)]
    assert [r.text for r in iter_records(tmp_path / "a.csv")] == ["体育, 新闻", "财经"]
    assert [r.text for r in iter_records(tmp_path / "a.jsonl")] == ["体育", "财经"]
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\n{"text": ""}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: empty text in the .text. field"):
        list(iter_records(tmp_path / "bad.jsonl"))
    (tmp_path / "bad.csv").write_text("id,body\n1,x\n", encoding="utf-8")
    with pytest.raises(DataError, match="must have a 'text' column"):
        list(iter_records(tmp_path / "bad.csv"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_streams_a_file_in_small_chunks(tmp_path, capsys, ckpt, clf):
    texts = sample_texts(41)
    src = tmp_path / "in.txt"
    src.write_text("".join(f"{t}\t0\n" for t in texts), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "predict", str(ckpt), "--file", str(src), "--format", "jsonl",
                           "--chunk-size", "8", "--probs", "--out", str(out), "--device", "cpu")
    assert code == 0 and "predicted 41 texts" in err and "texts/s" in err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == list(range(1, 42))
    assert [r["text"] for r in rows] == texts
    np.testing.assert_allclose([r["probs"] for r in rows], clf.predict_proba(texts), atol=1e-5)


def test_cli_formats(tmp_path, capsys, ckpt):
    texts = [SENTENCES[0][1], SENTENCES[1][0]]
    code, table, _ = run_cli(capsys, "predict", str(ckpt), *texts, "--top-k", "2")
    assert code == 0
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["#", "label", "score"] and "top-k" in lines[0]
    assert lines[1].split()[1] == "体育" and texts[0] in lines[1]
    code, tsv, _ = run_cli(capsys, "predict", str(ckpt), *texts, "--format", "tsv")
    rows = list(csv.reader(io.StringIO(tsv), delimiter="\t"))
    assert rows[0] == ["line", "label", "score", "text"] and rows[2][1] == "财经"
    code, out, _ = run_cli(capsys, "predict", str(ckpt), "--format", "csv", "--top-k", "3",
                           *texts)  # texts after options work too
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["label"] for r in rows] == ["体育", "财经"] and rows[0]["top_k"].count(";") == 2


def test_cli_errors_exit_2_without_a_traceback(tmp_path, capsys, ckpt):
    bad = tmp_path / "bad.csv"
    bad.write_text("text\n好\n\"\"\n", encoding="utf-8")
    code, _, err = run_cli(capsys, "predict", str(ckpt), "--file", str(bad))
    assert code == 2
    code, out, _ = run_cli(capsys, "predict", str(ckpt), "好", " ")
    assert code == 2 and out == ""  # nothing written before the error
    code, _, _ = run_cli(capsys, "predict", str(ckpt), "好", "--top-k", "9")
    assert code == 2


@pytest.mark.slow
def test_fresh_python_session_matches_cli_exactly(tmp_path, capsys, ckpt):
    """Acceptance 1: the API in a new interpreter and ``zhcls predict`` give identical
    labels and scores (same texts, same batches → bit-identical float32)."""
    texts = sample_texts(9)
    script = ("import json, sys\nfrom zhcls import Classifier\n"
              f"clf = Classifier.load({str(ckpt)!r}, 'cpu')\ntexts = {texts!r}\n"
              "print(json.dumps({'one': clf.predict(texts[0]).to_dict(), "
              "'all': [p.to_dict() for p in clf.predict(texts, top_k=2)], "
              "'proba': clf.predict_proba(texts).tolist()}))\n")
    api = json.loads(subprocess.run([sys.executable, "-c", script], capture_output=True,
                                    text=True, check=True).stdout)
    src = tmp_path / "texts.txt"
    src.write_text("\n".join(texts) + "\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "predict", str(ckpt), "--file", str(src), "--format",
                           "jsonl", "--top-k", "2", "--probs", "--device", "cpu")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0
    assert [{k: r[k] for k in ("label", "label_id", "score", "top_k")} for r in rows] == api["all"]
    assert [r["probs"] for r in rows] == api["proba"]
    assert api["one"]["label"] == api["all"][0]["label"]


@requires_thucnews
def test_cli_streams_the_shared_10000_line_test_file(tmp_path, capsys, ckpt):
    """Acceptance 2: the shared test file (text<TAB>label) streams to JSONL with a throughput
    line; one row per input line, in order."""
    src = THUCNEWS / "test.txt"
    out = tmp_path / "test.jsonl"
    code, _, err = run_cli(capsys, "predict", str(ckpt), "--file", str(src), "--format", "jsonl",
                           "--out", str(out), "--device", "cpu", "--chunk-size", "1500")
    assert code == 0 and "predicted 10000 texts in" in err and "texts/s" in err
    first_texts = [line.split("\t")[0] for line in src.read_text(encoding="utf-8").splitlines()]
    with out.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 10000 and [r["line"] for r in rows] == list(range(1, 10001))
    assert [r["text"] for r in rows[::997]] == first_texts[::997]


INVISIBLE = ["\u200b", "\ufeff", "\u200b \ufeff\u2060", "\x00\x07", " \u3000\t", "\u200d\u200c"]


@pytest.mark.parametrize("text", INVISIBLE)
def test_text_empty_after_normalisation_is_rejected_with_its_index(clf, text):
    with pytest.raises(InputTextError, match="text 1: empty text") as info:
        clf.predict(["好", text])
    assert info.value.index == 1
    with pytest.raises(InputTextError, match="text 2: empty text"):
        list(clf.predict_iter(["好", "中超", text], chunk_size=2))
    with pytest.raises(InputTextError):
        clf.predict_proba(text)


def test_text_the_tokenizer_drops_entirely_is_rejected(clf):
    with pytest.raises(InputTextError, match="text 0: empty text after normalisation"):
        clf.predict("\u0301\u0301")  # combining accents only: stripped by the tokenizer


def test_all_unknown_tokens_get_a_warning(clf, tmp_path, capsys, caplog, ckpt):
    rare = "ꙮ🙂ᚠ"
    assert set(clf.tokenizer.tokenize(rare)) == {clf.tokenizer.unk_token}
    pred, normal = clf.predict([rare, "中超联赛"])
    assert "[UNK]" in pred.warning and pred.to_dict()["warning"] == pred.warning
    assert normal.warning is None and "warning" not in normal.to_dict()
    (first,) = [p for p, _ in clf.predict_iter([rare])]
    assert first.warning == pred.warning
    src = tmp_path / "in.txt"
    src.write_text(f"中超联赛\n{rare}\n", encoding="utf-8")
    code, out, _ = run_cli(capsys, "predict", str(ckpt), "--file", str(src), "--format",
                           "jsonl", "--device", "cpu")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and "warning" not in rows[0] and "[UNK]" in rows[1]["warning"]
    assert f"{src}:2: every token is [UNK]" in caplog.text


def test_readers_reject_lines_empty_after_normalisation(tmp_path):
    from zhcls.errors import DataError

    (tmp_path / "z.txt").write_text("体育\n\u200b\u200b\t1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"z.txt:2: empty text after normalisation .*U\+200B"):
        list(iter_records(tmp_path / "z.txt"))
    (tmp_path / "z.jsonl").write_text('{"text": "a"}\n{"text": "\\ufeff"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"z.jsonl:2: empty text after normalisation"):
        list(iter_records(tmp_path / "z.jsonl"))
    (tmp_path / "z.csv").write_text("text\n好\n\x07\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"z.csv:3: empty text after normalisation"):
        list(iter_records(tmp_path / "z.csv"))


def test_gbk_file_reads_with_encoding_and_errors_without(tmp_path):
    from zhcls.errors import DataError

    src = tmp_path / "gbk.txt"
    src.write_bytes("体育新闻\n财经\n".encode("gbk"))
    with pytest.raises(DataError, match=r"gbk.txt:1: not valid utf-8 .*--encoding gbk"):
        list(iter_records(src))
    assert [r.text for r in iter_records(src, encoding="gbk")] == ["体育新闻", "财经"]


def test_service_answers_422_with_the_index_of_an_invisible_text(clf):
    """``zhcls serve`` checks each request with the same text rules (serve.app.check_request)."""
    from zhcls.serve.app import PredictRequest, ServeSettings, check_request

    response = check_request(PredictRequest(texts=["好", "\u200b\ufeff"]), clf, ServeSettings())
    assert response.status_code == 422
    assert json.loads(response.body)["error"].startswith("texts[1]: empty text after")


def test_jsonl_piped_on_stdin_is_read_as_jsonl(monkeypatch, caplog):
    """`head -3 test.jsonl | zhcls predict CKPT --file -` used to classify each JSON line
    (braces, keys and all) as the text."""
    import io
    import logging
    import sys

    from zhcls.inference.io import iter_records

    jsonl = '{"text": "央行宣布降准", "labels": ["财经"]}\n\n{"text": "中超联赛开打"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(jsonl.encode()), "utf-8"))
    with caplog.at_level(logging.INFO):
        texts = [r.text for r in iter_records("-")]
    assert texts == ["央行宣布降准", "中超联赛开打"] and "read as JSONL" in caplog.text
    plain = "央行宣布降准\n{不是 JSON\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(plain.encode()), "utf-8"))
    assert [r.text for r in iter_records("-")] == ["央行宣布降准", "{不是 JSON"]
