"""Every tokenizer path must read Chinese: the [UNK] rate on real text stays near zero.

transformers 5's ``BertTokenizer(vocab_file=...)`` silently ignores the file and builds a
5-token vocabulary; a model "trains" to ~29% with it. These tests fail whenever ordinary
Chinese text tokenizes to [UNK] on any path zhcls uses.
"""

from __future__ import annotations

import json
import shutil

import pytest
from transformers import BertTokenizer

from conftest import SENTENCES, THUCNEWS, VOCAB, requires_thucnews, requires_vocab
from zhcls.data.formats import read_class_names, read_split
from zhcls.errors import CheckpointError
from zhcls.modeling.encoder import check_tokenizer_knows_chinese, load_tokenizer, unk_rate
from zhcls.modeling.tiny import init_tiny


def real_texts() -> list[str]:
    if (THUCNEWS / "dev.txt").is_file():
        classes = read_class_names(THUCNEWS / "class.txt")
        return read_split(THUCNEWS / "dev.txt", classes).texts[:3000]
    return [t for texts in SENTENCES.values() for t in texts]


def test_vocab_file_constructor_trap_is_detected():
    trap = BertTokenizer(vocab_file=str(VOCAB) if VOCAB.is_file() else "vocab.txt")
    assert unk_rate(trap, ["中文文本分类"]) == 1.0  # the silent failure this guards against
    with pytest.raises(CheckpointError, match="knows only 0 Chinese characters.*maps 100% of common Chinese"):
        check_tokenizer_knows_chinese(trap, source="trap")


@requires_vocab
def test_init_tiny_real_vocab_path(tmp_path):
    out = init_tiny(tmp_path / "m", vocab=VOCAB, layers=1, hidden=32, heads=2)
    tok = load_tokenizer(str(out))
    assert len(tok) == 21128
    assert unk_rate(tok, real_texts()) < 0.01


@requires_vocab
def test_vocab_only_directory_legacy_path(tmp_path):
    shutil.copy(VOCAB, tmp_path / "vocab.txt")
    tok = load_tokenizer(str(tmp_path))
    assert len(tok) == 21128
    assert unk_rate(tok, real_texts()) < 0.01
    assert tok.tokenize("中华女子学院") == ["中", "华", "女", "子", "学", "院"]


def test_char_vocab_from_data_path(tmp_path, tiny_data):
    out = init_tiny(tmp_path / "m", vocab_from=tiny_data, layers=1, hidden=32, heads=2)
    tok = load_tokenizer(str(out))
    texts = [t for texts in SENTENCES.values() for t in texts]
    assert unk_rate(tok, texts) == 0.0


@requires_thucnews
def test_char_vocab_from_thucnews_covers_dev(tmp_path):
    out = init_tiny(tmp_path / "m", vocab_from=THUCNEWS, layers=1, hidden=32, heads=2)
    assert unk_rate(load_tokenizer(str(out)), real_texts()) < 0.01


def test_checkpoint_tokenizer_path(tmp_path, tiny_model):
    """A saved zhcls checkpoint reloads its tokenizer with the same ids."""
    tok = load_tokenizer(str(tiny_model))
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(str(tmp_path))
    texts = real_texts()[:200]
    assert again(texts)["input_ids"] == tok(texts)["input_ids"]
    assert unk_rate(again, texts) < 0.01


def test_non_chinese_vocab_is_rejected(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                   "the", "a", "news"]), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"\[UNK\]"):
        load_tokenizer(str(tmp_path))


@requires_vocab
def test_init_tiny_refuses_to_overwrite_a_directory_silently(tmp_path, capsys, caplog):
    from zhcls.cli import main

    out = tmp_path / "m"
    init_tiny(out, vocab=VOCAB, layers=1, hidden=32, heads=2)
    before = (out / "config.json").read_text(encoding="utf-8")
    args = ["init-tiny", "--vocab", str(VOCAB), "--layers", "2", "--hidden", "32", "--out", str(out)]
    assert main(args) == 2
    assert "already exists and is not empty; pass --overwrite" in caplog.text
    assert (out / "config.json").read_text(encoding="utf-8") == before  # nothing lost
    assert main([*args, "--overwrite"]) == 0
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no staging left behind
