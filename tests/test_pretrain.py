"""``zhcls pretrain``: MLM on a tiny corpus learns, whole-word masking masks whole words, the
encoder it writes trains a classifier, bad input and changed resumes are refused (exit 2)."""

from __future__ import annotations

import json
import logging
import sys

import numpy as np
import pytest

from conftest import SENTENCES, tiny_config
from zhcls.cli import main
from zhcls.training.mlm_data import WholeWordMaskCollator


def write_corpus(path, segmented: bool = False):
    texts = [t for ts in SENTENCES.values() for t in ts]
    if segmented:  # two-character "words" (a fake segmentation is enough for masking)
        texts = [" ".join(t[i:i + 2] for i in range(0, len(t), 2)) for t in texts]
    path.write_text("\n".join(texts * 4) + "\n", encoding="utf-8")
    return path


def pretrain_args(model, out, *extra):
    return ["pretrain", "--model.pretrained", str(model), "--out", str(out),
            "--train.batch_size", "8", "--train.max_steps", "30", "--train.lr", "5e-3",
            "--train.logging_steps", "5", "--train.save_steps", "15", "--train.precision",
            "fp32", "--train.tensorboard", "false", "--corpus.max_length", "32", *extra]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("pretrain")
    corpus = write_corpus(root / "corpus.txt")
    out = root / "run"
    assert main(pretrain_args(tiny_model, out, "--corpus.text", str(corpus))) == 0
    return out, corpus


class FakeTokenizer:
    pad_token_id, mask_token_id = 0, 4

    def __len__(self):
        return 100


def test_whole_word_collator_masks_every_chosen_word_entirely():
    # [CLS] 中国 | 经济 | 增 | 长 速 度 | 快 [SEP]  ->  words 0 0 1 1 2 3 3 3 4
    word_ids = [-1, 0, 0, 1, 1, 2, 3, 3, 3, 4, -1]
    example = {"input_ids": list(range(10, 21)), "word_ids": word_ids}
    collator = WholeWordMaskCollator(FakeTokenizer(), rate=0.4, span_weights=[0.5, 0.5])
    import torch

    torch.manual_seed(0)
    for _ in range(50):
        batch = collator([example, example])
        for row in batch["labels"]:
            chosen = {i for i, v in enumerate(row.tolist()) if v != -100}
            assert chosen, "something is always predicted"
            assert len(chosen) <= round(0.4 * 9)
            assert 0 not in chosen and 10 not in chosen  # never [CLS] / [SEP]
            for word in set(word_ids) - {-1}:
                positions = {i for i, w in enumerate(word_ids) if w == word}
                assert positions <= chosen or not positions & chosen, (word, chosen)


def test_whole_word_collator_replaces_80_10_10():
    word_ids = [-1] + list(range(200)) + [-1]
    example = {"input_ids": [1] + [50] * 200 + [2], "word_ids": word_ids}
    collator = WholeWordMaskCollator(FakeTokenizer(), rate=0.5)
    import torch

    torch.manual_seed(1)
    batch = collator([example] * 20)
    picked = batch["labels"] != -100
    replaced = batch["input_ids"][picked]
    assert np.isclose((replaced == 4).float().mean().item(), 0.8, atol=0.04)
    assert np.isclose((replaced == 50).float().mean().item(), 0.1 + 0.01, atol=0.04)


def test_pretraining_lowers_the_mlm_loss(pretrained_run):
    out, _ = pretrained_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["global_step"] == 30
    assert metrics["last_logged_train_loss"] < metrics["first_logged_train_loss"] - 1.0
    assert {"config.json", "model.safetensors", "mlm_head.safetensors"} <= {
        p.name for p in (out / "encoder").iterdir()}


def test_the_encoder_trains_a_classifier(pretrained_run, tiny_data, tmp_path):
    from safetensors.torch import load_file

    from zhcls.training.train import train

    out, _ = pretrained_run
    result = train(tiny_config(out / "encoder", train__max_steps=2, train__evaluate_test="false"),
                   tiny_data, tmp_path / "cls")
    assert result.best_dir.is_dir()
    pre = load_file(str(out / "encoder" / "model.safetensors"))
    assert "pooler.dense.weight" in pre and not any(k.startswith("cls.") for k in pre)


def test_word_masking_on_a_segmented_corpus_runs(tiny_model, tmp_path, capsys):
    corpus = write_corpus(tmp_path / "seg.txt", segmented=True)
    args = pretrain_args(tiny_model, tmp_path / "run", "--corpus.segmented", str(corpus),
                         "--mask.unit", "word", "--mask.max_ngram", "2",
                         "--train.max_steps", "2")
    assert main(args) == 0
    # 2 steps < logging_steps 5: no loss was logged, and the summary says so (not "None")
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert "None" not in summary and "not logged" in summary and "train.logging_steps 5" in summary


def test_metrics_record_the_step_of_each_logged_loss(pretrained_run):
    out, _ = pretrained_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["first_logged_step"], metrics["last_logged_step"]) == (5, 30)


@pytest.mark.parametrize("case", ["missing", "empty", "unknown_masking", "no_corpus",
                                  "word_without_boundaries"])
def test_bad_input_exits_2_with_a_message(case, tiny_model, tmp_path, caplog):
    corpus = write_corpus(tmp_path / "c.txt")
    extra = {"missing": ["--corpus.text", str(tmp_path / "nope.txt")],
             "empty": ["--corpus.text", str(tmp_path / "empty.txt")],
             "unknown_masking": ["--corpus.text", str(corpus), "--mask.unit", "span"],
             "no_corpus": [],
             "word_without_boundaries": ["--corpus.text", str(corpus), "--mask.unit", "word"],
             }[case]
    (tmp_path / "empty.txt").write_text("\n \n\n", encoding="utf-8")
    with caplog.at_level(logging.ERROR):
        assert main(pretrain_args(tiny_model, tmp_path / "run", *extra)) == 2
    message = caplog.records[-1].getMessage()
    expected = {"missing": "not found", "empty": "no text", "unknown_masking": "mask.unit",
                "no_corpus": "--corpus.text", "word_without_boundaries": "mask.segmenter"}[case]
    assert expected in message


def test_missing_jieba_is_a_one_line_error(tiny_model, tmp_path, caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "jieba", None)  # import jieba raises ImportError
    corpus = write_corpus(tmp_path / "c.txt")
    with caplog.at_level(logging.ERROR):
        assert main(pretrain_args(tiny_model, tmp_path / "run", "--corpus.text", str(corpus),
                                  "--mask.unit", "word", "--mask.segmenter", "jieba")) == 2
    assert "pip install jieba" in caplog.records[-1].getMessage()


def test_rerun_and_resume_with_other_settings_are_refused(pretrained_run, tiny_model, caplog):
    out, corpus = pretrained_run
    args = pretrain_args(tiny_model, out, "--corpus.text", str(corpus))
    with caplog.at_level(logging.ERROR):
        assert main(args) == 2
    assert "--train.resume true" in caplog.records[-1].getMessage()
    with caplog.at_level(logging.ERROR):
        assert main([*args, "--train.resume", "true", "--mask.rate", "0.3"]) == 2
    message = caplog.records[-1].getMessage()
    assert "mask.rate" in message and "0.15" in message and "0.3" in message


def test_resume_with_the_same_settings_continues_from_the_checkpoint(pretrained_run, tiny_model,
                                                                     tmp_path, caplog):
    import shutil

    out, corpus = pretrained_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    for name in ("metrics.json", "history.json"):  # a killed run has not written these yet
        (copy / name).unlink()
    shutil.rmtree(copy / "encoder")
    (copy / "checkpoints" / "checkpoint-30").rename(copy / "checkpoints" / "checkpoint-15x")
    shutil.rmtree(copy / "checkpoints" / "checkpoint-15x")  # the newest one is gone: resume at 15
    with caplog.at_level(logging.INFO):
        assert main([*pretrain_args(tiny_model, copy, "--corpus.text", str(corpus)),
                     "--train.resume", "true"]) == 0
    assert any("checkpoint-15" in r.getMessage() for r in caplog.records)
    assert json.loads((copy / "metrics.json").read_text())["global_step"] == 30
    assert (copy / "encoder" / "model.safetensors").is_file()
