"""The tokenisation cache is keyed on what determines the tokens only: three splits tokenised
twice give three cache files and the second run tokenises nothing."""

from __future__ import annotations

import pytest

from conftest import CLASSES, SENTENCES
from zhcls.data import dataset as ds
from zhcls.data.formats import read_class_names, read_split


@pytest.fixture
def three_splits(tmp_path):
    """train / dev / test with different texts (so three different cache keys)."""
    root = tmp_path / "data"
    root.mkdir()
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    for i, split in enumerate(("train", "dev", "test")):
        rows = [f"{t}\t{label}" for label, ts in SENTENCES.items() for t in ts[2 * i:2 * i + 2]]
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def _encode_all(data, tokenizer, cache, max_length=16):
    classes = read_class_names(data / "class.txt")
    return [ds.encode_split(read_split(data / f"{name}.txt", classes), tokenizer,
                            max_length, len(classes), cache) for name in ("train", "dev", "test")]


def test_three_splits_twice_give_three_cache_files(tiny_model, three_splits, tmp_path,
                                                   monkeypatch):
    from zhcls.modeling.encoder import load_tokenizer

    cache = tmp_path / "cache"
    calls = []
    real = ds.encode_texts
    monkeypatch.setattr(ds, "encode_texts", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = _encode_all(three_splits, load_tokenizer(str(tiny_model)), cache)
    assert len(calls) == 3 and len(list(cache.glob("*.pt"))) == 3
    second = _encode_all(three_splits, load_tokenizer(str(tiny_model)), cache)  # a new run
    assert len(calls) == 3, "the second run re-tokenised a split"
    assert len(list(cache.glob("*.pt"))) == 3
    assert [d.input_ids for d in first] == [d.input_ids for d in second]


def test_key_changes_with_what_changes_the_tokens(tiny_model, three_splits, tmp_path):
    from zhcls.modeling.encoder import load_tokenizer

    tok = load_tokenizer(str(tiny_model))
    base = ds.tokenizer_fingerprint(tok)
    tok("一句话", truncation=True, max_length=4)  # mutates the backend's truncation state
    assert ds.tokenizer_fingerprint(tok) == base
    _encode_all(three_splits, tok, tmp_path / "cache", max_length=16)
    _encode_all(three_splits, tok, tmp_path / "cache", max_length=8)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6
