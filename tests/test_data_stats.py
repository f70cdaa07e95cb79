"""data_stats / ``zhcls data-stats`` on a hand-made dataset and on the shared THUCNews data."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from zhcls.cli import main
from zhcls.errors import DataError
from zhcls.report import stats as st

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
THUCNEWS = SHARED / "thucnews"
VOCAB = SHARED / "bert-base-chinese-vocab.txt"
NO_SHARED = f"shared data not found at {SHARED} (tests read ../shared/data relative to the repo)"

CLASSES = ["财经", "体育", "娱乐"]
P_FIN, P_SPORT = "[0.8, 0.1, 0.1]", "[0.1, 0.7, 0.2]"
TRAIN = [  # text, label, teacher
    ("央行宣布下调存款准备金率", 0, P_FIN),
    ("股市午后震荡走高", 0, P_FIN),
    ("股市午后震荡走高", 0, P_FIN),       # duplicate, same label
    ("基金经理看好下半年行情", 0, P_SPORT),  # teacher disagrees with gold
    ("湖人客场击败勇士", 1, P_SPORT),
    ("湖人客场击败勇士", 0, P_FIN),        # duplicate, conflicting label
    ("中超联赛第五轮综述", 1, P_SPORT),
    ("NBA All-Star Game 2010", 1, P_SPORT),  # mostly non-CJK
    ("球迷", 1, P_SPORT),                  # very short
    ("国足\u200b备战世预赛", 1, P_SPORT),   # zero-width space (control / format char)
    ("某歌手新专辑发布", 2, "[0.1, 0.1, 0.8]"),
]
DEV = [("央行宣布下调存款准备金率", 0), ("女排夺得冠军", 1), ("电影节开幕", 2)]


def _write(path: Path, rows) -> None:
    path.write_text("".join("\t".join(map(str, row)) + "\n" for row in rows), encoding="utf-8")


@pytest.fixture
def small(tmp_path: Path) -> Path:
    d = tmp_path / "ds"
    d.mkdir()
    (d / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    _write(d / "train.txt", TRAIN)
    _write(d / "dev.txt", DEV)
    return d


def test_small_dataset_stats(small, tmp_path):
    result = st.data_stats(small, out_dir=tmp_path / "out")
    assert list(result["splits"]) == ["train", "dev"]  # no test split: skipped
    train = result["splits"]["train"]
    assert train["examples"] == len(TRAIN)
    assert train["classes"]["counts"] == {"财经": 5, "体育": 5, "娱乐": 1}
    assert train["classes"]["max_min_ratio"] == 5.0 and "imbalanced" in train["classes"]["warning"]
    dup = train["duplicates"]
    assert (dup["duplicate_texts"], dup["extra_rows"], dup["conflicting_labels"]) == (2, 2, 1)
    assert dup["examples"][0]["text"] == "湖人客场击败勇士"  # conflicting first
    assert dup["examples"][0]["labels"] == ["体育", "财经"] and dup["examples"][0]["lines"] == [5, 6]
    sus = train["suspicious"]
    assert sus["shorter_than_4_chars"]["examples"] == [{"line": 9, "text": "球迷"}]
    assert [e["line"] for e in sus["mostly_non_cjk"]["examples"]] == [8]
    assert [e["line"] for e in sus["control_chars"]["examples"]] == [10]
    teacher = train["teacher"]
    # the teacher argmax matches gold everywhere except line 4 (gold 财经, teacher 体育)
    assert teacher["rows_with_teacher"] == 11 and teacher["agreement"] == round(10 / 11, 4)
    assert teacher["mean_confidence"] == round((0.8 * 4 + 0.7 * 6 + 0.8) / 11, 4)
    assert result["splits"]["dev"]["teacher"] is None
    cross = result["cross_split"]
    assert cross["pairs"]["train/dev"]["shared_texts"] == 1
    assert cross["eval_rows_in_train"] == {"dev": 1}
    assert any("train/dev" in w for w in result["warnings"])
    assert any("imbalanced" in w for w in result["warnings"])
    for png in result["plots"]:
        assert Path(png).read_bytes()[:4] == b"\x89PNG"
    assert {Path(p).name for p in result["plots"]} == {"length_characters.png", "class_counts.png"}
    json.dumps(result, ensure_ascii=False)  # JSON-ready


def test_length_summary_and_coverage():
    values = list(range(1, 101))  # 1..100
    assert st.coverage_length(values, 95) == 95
    assert st.coverage_length([5, 5, 5, 40], 50) == 5
    s = st.length_summary(values, extra=2)
    assert (s["p50"], s["p99"], s["max"], s["max_length_95"], s["max_length_99"]) == (50, 99, 100, 97, 101)
    assert st.cjk_ratio("ABC中文") == pytest.approx(0.4)


def test_missing_dataset_errors(tmp_path):
    with pytest.raises(DataError, match="class.txt not found"):
        st.data_stats(tmp_path)
    (tmp_path / "class.txt").write_text("a\nb", encoding="utf-8")
    with pytest.raises(DataError, match="no split files found"):
        st.data_stats(tmp_path)


def test_cli_text_and_json(small, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["data-stats", str(small), "--format", "json"]) == 0
    parsed = json.loads(capsys.readouterr().out)
    assert parsed["splits"]["train"]["examples"] == len(TRAIN)
    assert (tmp_path / "data_stats" / "class_counts.png").is_file()  # default --out
    assert main(["data-stats", str(small), "--no-plots"]) == 0
    text = capsys.readouterr().out
    for needle in ("== train", "== across splits", "max_length", "湖人客场击败勇士", "teacher"):
        assert needle in text
    assert main(["data-stats", str(tmp_path / "missing")]) == 2


@pytest.fixture(scope="module")
def tokenizer():
    if not VOCAB.is_file():
        pytest.skip(NO_SHARED)
    return st.load_tokenizer(VOCAB)


@pytest.mark.shared_data
def test_tokenizer_from_real_vocab(tokenizer, small, tmp_path):
    assert len(tokenizer) == 21128
    result = st.data_stats(small, tokenizer=tokenizer, out_dir=tmp_path / "out")
    tokens = result["splits"]["train"]["length_tokens"]
    # one token per Chinese character; "NBA All-Star Game 2010" -> nba all - star game 2010
    assert tokens["max"] == 12 and tokens["max_length_99"] == 14
    assert (tmp_path / "out" / "length_tokens.png").is_file()
    if THUCNEWS.is_dir():
        heads = [ln.split("\t")[0] for ln in
                 (THUCNEWS / "dev.txt").read_text(encoding="utf-8").splitlines()[:2000]]
        _, info = st._token_ids(tokenizer, heads)
        assert info["unk_rate"] < 0.01, info


@pytest.mark.shared_data
def test_vocab_directory_loads(tmp_path):
    if not VOCAB.is_file():
        pytest.skip(NO_SHARED)
    (tmp_path / "vocab.txt").write_bytes(VOCAB.read_bytes())
    tok = st.load_tokenizer(tmp_path)
    assert tok.tokenize("股市午后震荡走高") == list("股市午后震荡走高")


@pytest.mark.shared_data
def test_shared_thucnews_duplicates():
    if not THUCNEWS.is_dir():
        pytest.skip(NO_SHARED)
    result = st.data_stats(THUCNEWS)
    texts = {}
    for split in ("train", "dev", "test"):
        rows = (THUCNEWS / f"{split}.txt").read_text(encoding="utf-8").splitlines()
        texts[split] = [r.split("\t")[0].strip() for r in rows if r.strip()]
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        expected = len(set(texts[a]) & set(texts[b]))
        assert result["cross_split"]["pairs"][f"{a}/{b}"]["shared_texts"] == expected > 0
    for split, values in texts.items():
        dup = result["splits"][split]["duplicates"]
        assert dup["extra_rows"] == len(values) - len(set(values))
    in_splits = Counter(t for values in texts.values() for t in set(values))
    several = sum(1 for n in in_splits.values() if n > 1)
    assert result["cross_split"]["texts_in_several_splits"] == several
    assert result["splits"]["train"]["classes"]["warning"] is None


def test_class_balance_flags_rare_class():
    from zhcls.data.formats import Example

    examples = [Example(text="x", label=0)] * 150 + [Example(text="y", label=1)] * 149 + [
        Example(text="z", label=2)]
    info = st.class_balance(examples, ["a", "b", "c"])
    assert info["rare"] == ["c"] and "under 1%: c" in info["warning"]
    info = st.class_balance(examples[:299], ["a", "b", "c"])
    assert info["max_min_ratio"] is None and "no examples of c" in info["warning"]


@pytest.mark.shared_data
def test_bad_vocab_file_is_a_clear_error(tokenizer, tmp_path):
    bad = tmp_path / "vocab.txt"
    bad.write_text("财经\n体育\n", encoding="utf-8")
    with pytest.raises(DataError, match="WordPiece"):
        st.load_tokenizer(bad)


def test_character_suggestion_counts_cls_and_sep(small, capsys):
    """The character line used to suggest max_length p95 (no [CLS]/[SEP]), 2 below the
    data.max_length it covers, while the token line added them."""
    result = st.data_stats(small)
    chars = result["splits"]["train"]["length_chars"]
    assert (chars["max_length_95"], chars["max_length_99"]) == (chars["p95"] + 2,
                                                                chars["p99"] + 2)
    assert main(["data-stats", str(small), "--no-plots"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines()
                if "length (characters)" in ln)
    assert f"-> max_length ~{chars['p95'] + 2} covers 95%" in line
    assert "incl. [CLS]/[SEP]" in line and "estimate from characters" in line


def test_out_inside_the_dataset_directory_is_refused(small, tmp_path, caplog, monkeypatch):
    """`cd DIR && zhcls data-stats .` used to write DIR/data_stats/ although --help promises
    never to write inside DIR."""
    import logging

    monkeypatch.chdir(small)
    with caplog.at_level(logging.INFO):
        assert main(["data-stats", "."]) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "--out" in errors[0] and "inside" in errors[0], errors
    assert not (small / "data_stats").exists()
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main(["data-stats", str(small), "--out", str(small / "sub" / "plots")]) == 2
    assert not (small / "sub").exists()
    assert main(["data-stats", ".", "--no-plots"]) == 0  # writes nothing: allowed
    assert main(["data-stats", ".", "--out", str(tmp_path / "elsewhere")]) == 0
    assert (tmp_path / "elsewhere" / "stats.json").is_file()
