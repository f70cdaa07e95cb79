"""Bad input and bad settings through ``zhcls.cli.main`` in one process: every case exits
with code 2 and a one-line message naming the file:line or the flag (never a traceback).

Each case is ``(id, files, argv, needles)``: ``files`` maps names (relative to a fresh dataset
directory ``D``) to contents, ``argv`` is the command line after ``zhcls`` with ``{D}``,
``{MODEL}`` and ``{OUT}`` placeholders, and every needle must appear in the logged error.
"""

from __future__ import annotations

import logging
import re

import pytest

from conftest import CLASSES, REPO
from zhcls.cli import main

GOOD_CLASSES = "\n".join(CLASSES) + "\n"
GOOD = "".join(f"{t}\t{i % 3}\n" for i, t in enumerate(
    ["男篮亚洲杯小组赛再胜一场", "央行宣布下调存款准备金率", "新款智能手机搭载自研芯片"] * 4))
NUMERIC = "".join(f"{i}\n" for i in range(1, 11))
P_OK = "[0.8, 0.1, 0.1]"


def good(**extra) -> dict[str, str]:
    """A valid dataset, with ``extra`` files replacing or adding to it."""
    files = {"class.txt": GOOD_CLASSES, "train.txt": GOOD, "dev.txt": GOOD}
    files.update({k.replace("__", "."): v for k, v in extra.items()})
    return files


def kd(train: str) -> dict[str, str]:
    """A KD dataset whose train.txt is ``train`` (teacher columns included)."""
    return good(train__txt=train)


TRAIN = ["train", "--config", str(REPO / "configs" / "tiny.yaml"), "--model.pretrained", "{MODEL}",
         "--data", "{D}", "--out", "{OUT}", "--train.max_steps", "2", "--train.batch_size", "4",
         "--train.tensorboard", "false", "--train.report", "false", "--model.num_filters", "8",
         "--train.precision", "fp32"]
KD = [*TRAIN, "--objective.name", "kd"]

CASES = [
    # -- labels ------------------------------------------------------------------------------
    ("numeric-class-names-ambiguous", good(class__txt=NUMERIC, train__txt="文本\t0\n文本\t1\n"),
     TRAIN, ["train.txt:2:", "ambiguous", "data.label_format id", "name"]),
    ("label-format-id-with-names", good(train__txt="文本\t体育\n"),
     [*TRAIN, "--data.label_format", "id"], ["train.txt:1:", "not an integer id"]),
    ("label-format-name-with-ids", good(class__txt=NUMERIC, train__txt="文本\t0\n"),
     [*TRAIN, "--data.label_format", "name"], ["train.txt:1:", "not a class name"]),
    ("label-out-of-range", good(train__txt="文本\t0\n文本\t7\n"), TRAIN,
     ["train.txt:2:", "label id 7 out of range"]),
    ("label-unknown-name", good(train__txt="文本\t汽车\n"), TRAIN,
     ["train.txt:1:", "'汽车' is neither an integer id nor a class name"]),
    ("ambiguous-not-skipped", good(class__txt=NUMERIC, train__txt="文本\t0\n文本\t1\n"),
     [*TRAIN, "--data.on_bad_line", "skip"], ["train.txt:2:", "ambiguous"]),
    # -- lines and files ----------------------------------------------------------------------
    ("tsv-wrong-columns", good(train__txt="文本\t0\n只有一列\n"), TRAIN,
     ["train.txt:2:", "expected 2 or 3 tab-separated columns", "found 1"]),
    ("jsonl-broken-json", {"class.txt": GOOD_CLASSES, "dev.txt": GOOD,
                           "train.jsonl": '{"text": "文本", "label": 0}\n{"text": \n'},
     TRAIN, ["train.jsonl:2:", "invalid JSON"]),
    ("csv-empty-text-cell", {"class.txt": GOOD_CLASSES, "dev.txt": GOOD,
                             "train.csv": "text,label\n文本,0\n,1\n"},
     TRAIN, ["train.csv:3:", "empty text"]),
    ("csv-empty-label-cell", {"class.txt": GOOD_CLASSES, "dev.txt": GOOD,
                              "train.csv": "text,label\n文本,0\n文本,\n"},
     TRAIN, ["train.csv:3:", "empty label"]),
    ("csv-extra-column", {"class.txt": GOOD_CLASSES, "dev.txt": GOOD,
                          "train.csv": "text,label\n文本,0\n文本,1,多余\n"},
     TRAIN, ["train.csv:3:", "expected 2 comma-separated columns", "found 3"]),
    ("skip-leaves-nothing", good(train__txt="只有一列\n也只有一列\n"),
     [*TRAIN, "--data.on_bad_line", "skip"], ["train.txt:", "no usable examples"]),
    ("train-txt-and-train-csv", good(train__csv="text,label\n文本,0\n"), TRAIN,
     ["train.txt and train.csv both exist"]),
    ("missing-data-dir-close-match", {}, [*TRAIN[:6], "{D}/../THUCNEWS", *TRAIN[7:]],
     ["THUCNEWS: dataset directory does not exist", "--data", "did you mean"]),
    ("no-class-txt", {"train.txt": GOOD, "dev.txt": GOOD}, TRAIN,
     ["class.txt not found in", "nor in"]),
    ("data-stats-missing-dir", {}, ["data-stats", "{D}/nope", "--no-plots"],
     ["nope: dataset directory does not exist"]),
    ("data-stats-two-formats", good(dev__jsonl='{"text": "文本", "label": 0}\n'),
     ["data-stats", "{D}", "--no-plots"], ["dev.txt and dev.jsonl both exist"]),
    # -- settings -----------------------------------------------------------------------------
    ("lr-nan", good(), [*TRAIN, "--train.lr", "nan"], ["train.lr: expected a finite number"]),
    ("warmup-nan", good(), [*TRAIN, "--train.warmup_ratio", ".nan"], ["train.warmup_ratio"]),
    ("temperature-inf", good(), [*TRAIN, "--objective.temperature", "inf"],
     ["objective.temperature: expected a finite number"]),
    ("dropout-inf", good(), [*TRAIN, "--model.dropout", "-inf"], ["model.dropout"]),
    ("negative-seed", good(), [*TRAIN, "--train.seed", "-1"], ["train.seed", ">= 0"]),
    ("negative-max-grad-norm", good(), [*TRAIN, "--train.max_grad_norm", "-1"],
     ["train.max_grad_norm", "0 (no clipping)"]),
    ("tolerance-out-of-range", good(), [*TRAIN, "--data.teacher_negative_tolerance", "1.5"],
     ["data.teacher_negative_tolerance"]),
    ("label-format-unknown", good(), [*TRAIN, "--data.label_format", "index"],
     ["data.label_format: expected one of auto, id, name"]),
    # -- max_length ---------------------------------------------------------------------------
    ("max-length-too-long", good(), [*TRAIN, "--data.max_length", "100000"],
     ["--data.max_length 100000", "position limit of 512"]),
    ("max-length-2-bert", good(), [*TRAIN, "--model.head", "bert", "--data.max_length", "2"],
     ["--data.max_length 2", "minimum of 3"]),
    ("max-length-cnn-kernel", good(), [*TRAIN, "--data.max_length", "5"],  # kernels 2,3,4
     ["--data.max_length 5", "minimum of 6", "bert_CNN"]),
    ("max-length-dpcnn", good(), [*TRAIN, "--model.head", "bert_DPCNN", "--data.max_length", "4"],
     ["--data.max_length 4", "minimum of 5", "bert_DPCNN"]),
    # -- the teacher column -------------------------------------------------------------------
    ("probs-fed-as-logits", kd(f"文本\t0\t{P_OK}\n文本\t1\t[0.1, 0.8, 0.1]\n"),
     [*KD, "--objective.teacher_input", "logits"], ["objective.teacher_input", "probs_as_logits"]),
    ("probs-fed-as-logits-with-a-dirty-row",
     kd(f"文本\t0\t{P_OK}\n文本\t1\t[0.1, 0.8, 0.1]\n文本\t2\t[0.1, 0.1, 0.8]\n"
        "文本\t0\t[0.9, 0.2, 0.086]\n"),
     [*KD, "--objective.teacher_input", "logits", "--data.teacher_policy", "normalize"],
     ["3 of 4 teacher rows are probability vectors", "objective.teacher_input"]),
    ("small-negative", kd("文本\t0\t[0.8, 0.205, -0.005]\n"), KD,
     ["train.txt:1:", "-0.005", "data.teacher_negative clip"]),
    ("negative-beyond-tolerance", kd("文本\t0\t[0.8, 0.3, -0.1]\n"),
     [*KD, "--data.teacher_negative", "clip"], ["train.txt:1:", "teacher_negative_tolerance"]),
    ("entry-above-one-error", kd(f"文本\t0\t{P_OK}\n文本\t0\t[0.91, 40, 760]\n"),
     [*KD, "--data.teacher_policy", "normalize", "--data.teacher_invalid", "error"],
     ["train.txt:2:", "not a probability vector", "data.teacher_invalid"]),
    ("entry-above-one-default-policy", kd(f"文本\t0\t{P_OK}\n文本\t0\t[3.0, 0.5, 0.2]\n"), KD,
     ["train.txt:2:", "entry 3 > 1", "not a probability vector", "data.teacher_policy skip"]),
    ("sum-off-policy-error", kd("文本\t0\t[0.9, 0.2, 0.086]\n"), KD,
     ["train.txt:1:", "sum to 1.186", "data.teacher_policy"]),
    ("teacher-wrong-length", kd("文本\t0\t[0.5, 0.5]\n"), KD,
     ["train.txt:1:", "2 values but class.txt names 3"]),
    ("every-teacher-dropped", kd("文本\t0\t[0.9, 0.2, 0.086]\n文本\t1\t[0.91, 40, 760]\n"),
     [*KD, "--data.teacher_policy", "skip"], ["train.txt:", "dropped as invalid"]),
    ("teacher-missing-on-some-lines", kd(f"文本\t0\t{P_OK}\n文本\t1\n"), KD,
     ["train.txt:", "1 training lines have no teacher column", "data.teacher_missing"]),
    ("kd-without-teacher", good(), KD, ["train.txt:", "no training line has one"]),
    # -- divergence ---------------------------------------------------------------------------
    ("loss-becomes-nan", good(), [*TRAIN, "--train.lr", "1e30", "--train.max_steps", "6",
                                  "--train.logging_steps", "1"],
     ["training diverged", "nan", "--train.lr"]),
    # -- run directories, settings and config files -------------------------------------------
    ("out-not-empty", good(**{"OUT/metrics.json": "{}"}), TRAIN,
     ["out", "--train.resume true", "--overwrite"]),
    ("resume-and-overwrite", good(), [*TRAIN, "--train.resume", "true", "--overwrite"],
     ["train.resume and train.overwrite"]),
    ("unknown-optimizer", good(), [*TRAIN, "--train.optimizer", "sgd"],
     ["train.optimizer", "adamw", "bertadam"]),
    ("unknown-head", good(), [*TRAIN, "--model.head", "bert_LSTM"], ["model.head", "bert_CNN"]),
    ("misspelt-key", good(), [*TRAIN, "--train.lrr", "1e-3"], ["--train.lrr", "--train.lr"]),
    ("config-not-yaml", good(**{"bad.yaml": "train: [1, 2\n"}),
     ["train", "--config", "{D}/bad.yaml", "--data", "{D}"], ["bad.yaml:2:1: invalid YAML"]),
    ("config-unknown-section", good(**{"bad.yaml": "trainer:\n  lr: 1\n"}),
     ["train", "--config", "{D}/bad.yaml", "--data", "{D}"], ["bad.yaml", "unknown section"]),
]


@pytest.mark.parametrize("name,files,argv,needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_naming_where(name, files, argv, needles, tiny_model, tmp_path,
                                        caplog):
    data = tmp_path / "data"
    data.mkdir()
    for rel, content in files.items():
        target = tmp_path / "out" / rel[4:] if rel.startswith("OUT/") else data / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    (tmp_path / "thucnews").mkdir()  # the close match for THUCNEWS
    subs = {"{D}": str(data), "{MODEL}": str(tiny_model), "{OUT}": str(tmp_path / "out")}
    args = [re.sub("|".join(map(re.escape, subs)), lambda m: subs[m.group()], a) for a in argv]
    with caplog.at_level(logging.INFO):
        assert main(args) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert "\n" not in message, f"not one line: {message!r}"
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"
    assert not (tmp_path / "out" / "best").exists()


def test_there_are_enough_cases():
    assert len(CASES) >= 40


def test_a_mistyped_command_gets_the_closest_commands(capsys):
    assert main(["trian", "--data", "x"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'trian'; did you mean train or pretrain?" in err
    assert "Traceback" not in err and "sweep" in err  # and every command is listed
    assert main(["-v", "evalute"]) == 2
    assert "did you mean evaluate?" in capsys.readouterr().err
    assert main(["xyz"]) == 2
    assert "unknown command 'xyz' (`zhcls --help`" in capsys.readouterr().err
