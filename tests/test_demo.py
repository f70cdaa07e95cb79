"""``zhcls demo``: the shipped dataset is sane, the shipped config matches configs/demo.yaml,
and a quick end-to-end run really learns (far above chance) and writes every output."""

from __future__ import annotations

import json
import re
import unicodedata

import pytest

from conftest import REPO, THUCNEWS, requires_thucnews
from zhcls.errors import ZhclsError
from zhcls.workflows.demo import (
    CONFIG_FILE,
    DATA_FILES,
    DEMO_SENTENCES,
    ENCODER,
    MARKER,
    QUICK_EPOCHS,
    copy_dataset,
    demo_config,
    demo_resource,
    prepare_out_dir,
    run_demo,
)

SPLIT_SIZES = {"train": 70, "dev": 15, "test": 15}  # per class


def read_lines(name: str) -> list[tuple[str, int]]:
    rows = []
    for line in demo_resource(name).read_text(encoding="utf-8").splitlines():
        text, label = line.split("\t")
        rows.append((text, int(label)))
    return rows


def class_names() -> list[str]:
    return demo_resource("class.txt").read_text(encoding="utf-8").split()


# ---- the shipped dataset ----------------------------------------------------------------


def test_dataset_sizes_classes_and_lengths(tmp_path):
    from zhcls.data.formats import read_class_names, read_split

    names = class_names()
    assert len(names) == 5 and len(set(names)) == 5
    assert all(unicodedata.name(ch).startswith("CJK UNIFIED") for n in names for ch in n)
    for split, per_class in SPLIT_SIZES.items():
        rows = read_lines(f"{split}.txt")
        counts = [sum(1 for _, label in rows if label == c) for c in range(len(names))]
        assert counts == [per_class] * len(names), (split, counts)
        assert all(10 <= len(text) <= 30 for text, _ in rows), split
        assert all(text == text.strip() and "\t" not in text for text, _ in rows)
    # The library's reader (strict mode) accepts every line of the copy run_demo makes.
    data = copy_dataset(tmp_path / "data")
    assert read_class_names(data / "class.txt") == names
    for split in SPLIT_SIZES:
        assert len(read_split(data / f"{split}.txt", names).examples) == 5 * SPLIT_SIZES[split]


def test_dataset_has_no_duplicates_within_or_across_splits():
    seen: dict[str, str] = {}
    for split in SPLIT_SIZES:
        for text, _ in read_lines(f"{split}.txt"):
            assert text not in seen, f"{text!r} in {split} and {seen[text]}"
            seen[text] = split
    assert len(seen) == 500
    for text, expected in DEMO_SENTENCES:
        assert text not in seen, f"demo sentence {text!r} is in the dataset"
        assert expected in class_names()


def test_dataset_is_not_one_keyword_per_class():
    # The class name itself appears in few sentences of its class, so the task needs more
    # than one keyword.
    names = class_names()
    rows = read_lines("train.txt")
    for c, name in enumerate(names):
        texts = [t for t, label in rows if label == c]
        assert sum(name in t for t in texts) < len(texts) // 5, name


@requires_thucnews
def test_dataset_shares_no_sentence_with_thucnews():
    ours = {text for split in SPLIT_SIZES for text, _ in read_lines(f"{split}.txt")}
    theirs = set()
    for split in ("train", "dev", "test"):
        with (THUCNEWS / f"{split}.txt").open(encoding="utf-8") as f:
            theirs.update(line.split("\t")[0].strip() for line in f)
    assert not ours & theirs


def test_character_tokenizer_covers_the_data(tmp_path):
    from zhcls.modeling.encoder import load_tokenizer, unk_rate
    from zhcls.modeling.tiny import init_tiny

    data = copy_dataset(tmp_path / "data")
    assert sorted(p.name for p in data.iterdir()) == sorted(DATA_FILES)
    tok = load_tokenizer(str(init_tiny(tmp_path / "enc", vocab_from=data, layers=1, hidden=16,
                                       heads=2)))
    texts = {s: [t for t, _ in read_lines(f"{s}.txt")] for s in SPLIT_SIZES}
    assert unk_rate(tok, texts["train"]) == 0.0
    # dev/test hold some characters the 350 training sentences never use (~6-7%).
    assert unk_rate(tok, texts["dev"]) < 0.08
    assert unk_rate(tok, texts["test"]) < 0.08
    assert unk_rate(tok, [t for t, _ in DEMO_SENTENCES]) < 0.05


# ---- the shipped config -----------------------------------------------------------------


def test_packaged_config_is_configs_demo_yaml():
    from zhcls.config import load_config

    documented = REPO / "configs" / CONFIG_FILE
    assert demo_resource(CONFIG_FILE).read_bytes() == documented.read_bytes()
    config = demo_config("/some/encoder")
    assert config.model.pretrained == "/some/encoder"
    assert load_config(documented).train == config.train
    quick = demo_config("/some/encoder", quick=True)
    assert quick.train.epochs == QUICK_EPOCHS < config.train.epochs


def test_config_header_documents_the_encoder_shape():
    text = (REPO / "configs" / CONFIG_FILE).read_text(encoding="utf-8")
    match = re.search(r"init-tiny .*--layers (\d+) --hidden (\d+) --heads (\d+)", text)
    assert match, "configs/demo.yaml must show the init-tiny command of the demo encoder"
    assert dict(zip(("layers", "hidden", "heads"), map(int, match.groups()),
                    strict=True)) == ENCODER


# ---- the output directory ---------------------------------------------------------------


def test_foreign_non_empty_out_dir_is_refused_untouched(tmp_path):
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ZhclsError, match="not written by `zhcls demo`"):
        prepare_out_dir(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_earlier_demo_output_is_replaced_but_other_files_kept(tmp_path):
    prepare_out_dir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "old.txt").write_text("x", encoding="utf-8")
    (tmp_path / "keep.txt").write_text("y", encoding="utf-8")
    prepare_out_dir(tmp_path)
    assert not (tmp_path / "run").exists()
    assert (tmp_path / "keep.txt").is_file() and (tmp_path / MARKER).is_file()


# ---- end to end -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return run_demo(tmp_path_factory.mktemp("demo") / "out", quick=True)


def test_demo_writes_every_output(demo):
    out = demo.out_dir
    ckpt = demo.outputs["checkpoint"]
    assert ckpt == out / "run" / "best"
    for name in ("model.safetensors", "labels.json", "zhcls.yaml", "tokenizer.json"):
        assert (ckpt / name).is_file(), name
    for name in ("confusion_matrix", "confusion_matrix_normalized", "per_class",
                 "training_curves"):
        png = demo.outputs[name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert json.loads((ckpt / "labels.json").read_text(encoding="utf-8"))["labels"] == \
        class_names()
    assert list(demo.outputs["tensorboard"].rglob("events.out.tfevents.*"))
    for name, path in demo.outputs.items():
        assert path.exists(), name
    summary = json.loads(demo.outputs["summary"].read_text(encoding="utf-8"))
    assert summary["quick"] is True and summary["test"]["accuracy"] == \
        demo.test_metrics["accuracy"]


def test_demo_learns_far_above_chance(demo):
    assert demo.num_classes == 5 and demo.chance == pytest.approx(0.2)
    # 75 test / 75 dev sentences: a chance-level model reaches 0.5 with p < 1e-6.
    assert demo.test_metrics["accuracy"] >= 0.6, demo.test_metrics
    assert demo.dev_metrics["accuracy"] >= 0.6, demo.dev_metrics
    metrics = json.loads(demo.outputs["metrics"].read_text(encoding="utf-8"))
    assert metrics["test"]["accuracy"] == demo.test_metrics["accuracy"]
    wrong = demo.outputs["wrong_samples"].read_text(encoding="utf-8").splitlines()
    assert len(wrong) == round(75 * (1 - demo.test_metrics["accuracy"]))
    assert all(json.loads(w)["gold"] in class_names() for w in wrong)


def test_demo_predicts_the_new_sentences(demo):
    names = class_names()
    assert [p.text for p in demo.predictions] == [t for t, _ in DEMO_SENTENCES]
    for p in demo.predictions:
        assert list(p.probabilities) == names and p.label in names
        assert sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-3)
        assert p.score == pytest.approx(max(p.probabilities.values()), abs=1e-4)
    assert sum(p.correct for p in demo.predictions) >= 3, demo.predictions
    rows = demo.outputs["predictions"].read_text(encoding="utf-8").splitlines()
    assert [json.loads(r)["label"] for r in rows] == [p.label for p in demo.predictions]


def test_cli_summary_names_accuracy_predictions_and_paths(demo):
    from zhcls.cli import build_parser
    from zhcls.cli.demo import format_summary

    args = build_parser().parse_args(["demo", "--out", "x", "--quick"])
    assert args.quick and args.out == "x" and args.func.__module__ == "zhcls.cli.demo"
    text = format_summary(demo)
    assert f"test accuracy {demo.test_metrics['accuracy']:.4f}" in text
    for text_in, _ in DEMO_SENTENCES:
        assert text_in in text
    for path in demo.outputs.values():
        assert str(path) in text
