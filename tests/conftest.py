"""Shared fixtures: a tiny random BERT with the real (or a character) Chinese vocabulary, and
small THUCNews-format datasets written on the fly. Nothing here downloads anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
THUCNEWS = SHARED / "thucnews"
VOCAB = SHARED / "bert-base-chinese-vocab.txt"

CLASSES = ["体育", "财经", "科技"]
SENTENCES = {
    0: ["男篮亚洲杯小组赛再胜一场", "中超联赛第十轮主队逆转取胜", "网球公开赛女单决赛今晚开打",
        "马拉松比赛吸引三万名跑者参加", "国家队公布世界杯预选赛名单", "乒乓球世锦赛男团夺得冠军"],
    1: ["央行宣布下调存款准备金率", "一季度国内生产总值同比增长", "银行理财产品收益率继续下滑",
        "人民币汇率中间价小幅上调", "多家上市公司发布年度财报", "保险行业保费收入稳步增长"],
    2: ["新款智能手机搭载自研芯片", "人工智能大模型开放公众测试", "科学家发现新的系外行星",
        "量子计算机实现关键技术突破", "电动汽车电池续航再创新高", "卫星互联网完成组网发射"],
}


@pytest.fixture(scope="session", autouse=True)
def _rank_digests():
    """Test instrumentation: trainers built under $ZHCLS_RANK_DIGEST_DIR record digests."""
    import rank_digest

    rank_digest.install()


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    os.environ["ZHCLS_CACHE"] = str(tmp_path_factory.mktemp("zhcls-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_dataset(root: Path, repeat: int = 4, teacher: bool = False) -> Path:
    """Write train/dev/test + class.txt (no trailing newline, as in the original)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    for split, n in (("train", repeat), ("dev", 1), ("test", 1)):
        lines = []
        for label, texts in SENTENCES.items():
            for text in texts * n:
                row = f"{text}\t{label}"
                if teacher:
                    probs = [0.1] * len(CLASSES)
                    probs[label] = 0.8
                    row += "\t[" + ", ".join(f"{p:.2f}" for p in probs) + "]"
                lines.append(row)
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_multilabel(root, repeat: int = 3, teacher: bool = False):
    """JSONL splits: single sentences (one label) and pairs of sentences of two classes (both
    labels), plus a line with no label; class.txt as in conftest."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    rows = []
    for label, texts in SENTENCES.items():
        for i, text in enumerate(texts):
            rows.append({"text": text, "labels": [CLASSES[label]]})
            other = (label + 1) % len(CLASSES)
            pair = sorted({label, other})
            rows.append({"text": text + "，" + SENTENCES[other][i],
                         "labels": [CLASSES[j] for j in pair]})
    rows.append({"text": "今天天气不错", "labels": []})
    if teacher:
        for row in rows:
            row["teacher_probs"] = [0.9 if c in row["labels"] else 0.05 for c in CLASSES]
    for split, n in (("train", repeat), ("dev", 1), ("test", 1)):
        lines = [json.dumps(r, ensure_ascii=False) for r in rows * n]
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_kd_data(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("kd-data"), teacher=True)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tiny_data) -> Path:
    """A 1-layer, hidden-32 BERT; real bert-base-chinese vocab when ../shared is present."""
    from zhcls.modeling.tiny import init_tiny

    out = tmp_path_factory.mktemp("tiny-model")
    if VOCAB.is_file():
        return init_tiny(out, vocab=VOCAB, layers=1, hidden=32, heads=2)
    # Without the shared vocab: a character vocab from the test sentences, the shipped demo
    # dataset (500 headlines) and digits, so the tests' own texts never hit [UNK].
    from importlib.resources import files

    vocab_data = tmp_path_factory.mktemp("vocab-data")
    (vocab_data / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    demo = files("zhcls") / "resources" / "demo" / "train.txt"
    texts = [t for ts in SENTENCES.values() for t in ts] + ["第0123456789期"]
    texts += [ln.split("\t")[0] for ln in demo.read_text("utf-8").splitlines() if ln.strip()]
    (vocab_data / "train.txt").write_text("".join(f"{t}\t0\n" for t in texts), encoding="utf-8")
    return init_tiny(out, vocab_from=vocab_data, layers=1, hidden=32, heads=2)


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, tiny_data) -> Path:
    """A `zhcls baseline` checkpoint fitted on tiny_data (needs skops)."""
    pytest.importorskip("skops", reason="baseline checkpoints are saved with skops")
    from zhcls.workflows.baseline import train_baseline

    out = tmp_path_factory.mktemp("baseline")
    train_baseline(tiny_data, out)
    return out


def tiny_config(pretrained: Path, head: str = "bert", **train):
    from zhcls.config import load_config

    overrides = ["--model.pretrained", str(pretrained), "--model.head", head,
                 "--model.num_filters", "8", "--model.rnn_hidden", "16",
                 "--model.dpcnn_filters", "8", "--model.attention_dim", "8",
                 "--train.batch_size", "8", "--train.eval_batch_size", "32",
                 "--train.max_steps", "6", "--train.eval_steps", "3", "--train.logging_steps", "2",
                 "--train.lr", "1e-3", "--train.tensorboard", "false", "--train.report", "false"]
    for key, value in train.items():
        overrides += [f"--{key.replace('__', '.')}", str(value)]
    return load_config(REPO / "configs" / "tiny.yaml", overrides)


requires_thucnews = pytest.mark.skipif(
    not (THUCNEWS / "train.txt").is_file(),
    reason=f"shared THUCNews data not found at {THUCNEWS} (it lives beside the repo root)",
)
requires_vocab = pytest.mark.skipif(
    not VOCAB.is_file(), reason=f"bert-base-chinese vocab not found at {VOCAB}"
)
