"""What training does with data that is fine to train on: dirty teacher columns under ``ce``,
the research layout ``DIR/data/``, teacher rows dropped by ``teacher_policy: skip``, classes
missing from train."""

from __future__ import annotations

import logging

import pytest

from conftest import CLASSES, REPO, SENTENCES
from zhcls.cli import main
from zhcls.config import load_config
from zhcls.training.train import check_teacher_coverage, prepare, read_dataset

DIRTY = ["[0.9, 0.2, 0.086]", "[0.91, 40, 760]", "[0.8, 0.205, -0.005]", "not json"]


def write(root, teacher=None, drop_class=None):
    """train/dev/class.txt; train rows cycle through ``teacher`` columns when given."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    rows = [(t, label) for label, ts in SENTENCES.items() for t in ts if label != drop_class]
    train = []
    for i, (text, label) in enumerate(rows):
        col = f"\t{teacher[i % len(teacher)]}" if teacher else ""
        train.append(f"{text}\t{label}{col}")
    (root / "train.txt").write_text("\n".join(train) + "\n", encoding="utf-8")
    dev = [f"{t}\t{label}" for label, ts in SENTENCES.items() for t in ts[:2]]
    (root / "dev.txt").write_text("\n".join(dev) + "\n", encoding="utf-8")
    return root


def config(**over):
    args = []
    for k, v in over.items():
        args += [f"--{k.replace('__', '.')}", str(v)]
    return load_config(None, args)


def argv(model, data, out, *extra):
    return ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--model.pretrained",
            str(model), "--data", str(data), "--out", str(out), "--train.max_steps", "2",
            "--train.batch_size", "8", "--train.tensorboard", "false", "--train.report", "false",
            "--train.evaluate_test", "false", "--model.num_filters", "8", *extra]


def test_ce_ignores_a_dirty_teacher_column(tmp_path, caplog):
    data = write(tmp_path / "d", teacher=DIRTY)
    with caplog.at_level(logging.INFO):
        splits = read_dataset(config(), data)
        check_teacher_coverage(config(), splits["train"])
    assert not splits["train"].has_teacher and splits["train"].teacher_rows == 18
    assert "teacher column present on 18 training lines, not read (objective ce" in caplog.text
    with pytest.raises(Exception, match="sum to 1.186"):
        read_dataset(config(objective__name="kd"), data)


def test_skip_says_the_column_was_present_and_dropped(tmp_path, caplog):
    data = write(tmp_path / "d", teacher=["[0.8, 0.1, 0.1]", *DIRTY])
    cfg = config(objective__name="kd", data__teacher_policy="skip")
    splits = read_dataset(cfg, data)
    check_teacher_coverage(cfg, splits["train"])  # no error: the user asked to skip them
    assert "14 training lines had a teacher column that was dropped as invalid" in caplog.text
    assert "have no teacher column" not in caplog.text


def test_train_warns_about_classes_missing_from_train(tiny_model, tmp_path, caplog):
    from zhcls.modeling.encoder import load_tokenizer

    data = write(tmp_path / "d", drop_class=2)
    prepare(config(), data, load_tokenizer(str(tiny_model)))
    assert "no training examples of 1 of 3 classes: 科技" in caplog.text
    assert "dev has examples of classes that train has none of: 科技" in caplog.text


@pytest.mark.slow
def test_research_layout_and_dirty_teacher_train_with_ce(tiny_model, tmp_path):
    root = tmp_path / "THUCNews"
    write(root / "data", teacher=DIRTY)
    assert main(argv(tiny_model, root, tmp_path / "run")) == 0
    assert (tmp_path / "run" / "best").is_dir()


def test_no_best_checkpoint_after_divergence(tiny_model, tmp_path):
    data = write(tmp_path / "d")
    rc = main(argv(tiny_model, data, tmp_path / "run", "--train.lr", "1e30", "--train.max_steps",
                   "6", "--train.logging_steps", "1", "--train.eval_steps", "2",
                   "--train.precision", "fp32"))
    assert rc == 2 and not (tmp_path / "run" / "best").exists()
