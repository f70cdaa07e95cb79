"""experiments/objectives.py: aggregation and table on fake numbers, the doc markers, argument
validation, and one miniature end-to-end run (teacher → labels → students → table → re-run
reuses every finished run)."""

from __future__ import annotations

import importlib.util
import json
import statistics
import sys

import pytest

from conftest import REPO, write_dataset

SCRIPT = REPO / "experiments" / "objectives.py"


@pytest.fixture(scope="module")
def objectives():
    spec = importlib.util.spec_from_file_location("objectives_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def fake_run(seed: int, acc: float, f1: float, dev: float, cpu: float = 10.0) -> dict:
    return {"seed": seed, "test": {"accuracy": acc, "macro_f1": f1}, "dev": {"accuracy": dev},
            "seconds": {"cpu": cpu}}


@pytest.fixture
def fake_results():
    return {
        "ce": [fake_run(1, 0.80, 0.79, 0.81), fake_run(2, 0.82, 0.81, 0.83),
               fake_run(3, 0.84, 0.83, 0.85)],
        # seeds deliberately out of order: the delta to ce must pair by seed, not position
        "kd": [fake_run(3, 0.85, 0.84, 0.86), fake_run(1, 0.83, 0.82, 0.84),
               fake_run(2, 0.82, 0.81, 0.83)],
    }


def test_mean_std_is_sample_std(objectives):
    assert objectives.mean_std([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1.0))
    assert objectives.mean_std([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        objectives.mean_std([])


def test_aggregate_means_and_paired_delta(objectives, fake_results):
    rows = {r.objective: r for r in objectives.aggregate(fake_results)}
    assert list(rows) == ["ce", "kd"]
    assert rows["ce"].test_acc == pytest.approx((0.82, 0.02))
    assert rows["ce"].delta_acc is None
    assert rows["kd"].test_acc[0] == pytest.approx(statistics.fmean([0.85, 0.83, 0.82]))
    # paired by seed: (0.83-0.80, 0.82-0.82, 0.85-0.84) = (0.03, 0.00, 0.01)
    assert rows["kd"].delta_acc == pytest.approx((0.04 / 3, statistics.stdev([0.03, 0.0, 0.01])))
    assert rows["kd"].test_f1[0] == pytest.approx(statistics.fmean([0.84, 0.82, 0.81]))
    assert rows["kd"].n == 3 and rows["kd"].seconds == pytest.approx(10.0)


def test_format_table(objectives, fake_results):
    teacher = {"test": {"accuracy": 0.9, "macro_f1": 0.89}, "dev": {"accuracy": 0.91}}
    table = objectives.format_table(objectives.aggregate(fake_results), teacher)
    lines = table.splitlines()
    assert lines[0].startswith("| objective |") and len(lines) == 5
    assert lines[2] == "| teacher (ce) | 1 | 90.00 | 89.00 | 91.00 | – | – |"
    assert lines[3].startswith("| ce | 3 | 82.00 ± 2.00 | 81.00 ± 2.00 | 83.00 ± 2.00 | – |")
    assert "| +1.33 ± 1.53 |" in lines[4]


def test_replace_section_appends_then_replaces(objectives):
    begin, _ = objectives.markers()
    doc = "# Experiments\n\nintro text\n"
    once = objectives.replace_section(doc, "table one")
    assert once.startswith(doc.rstrip()) and "table one" in once
    assert once.count(begin) == 1
    twice = objectives.replace_section(once + "\n## after\n", "table two")
    assert "table one" not in twice and "table two" in twice
    assert twice.count(begin) == 1 and twice.endswith("## after\n")
    with pytest.raises(ValueError, match="markers"):
        objectives.replace_section(begin + "\nno end\n", "x")


def test_sections_are_independent(objectives):
    doc = objectives.replace_section("", "main table")
    doc = objectives.replace_section(doc, "short budget", section="objectives-short")
    doc = objectives.replace_section(doc, "main table v2")
    assert "short budget" in doc and "main table v2" in doc and "main table\n" not in doc
    assert doc.index("main table v2") < doc.index("short budget")


def test_write_doc_creates_and_rewrites(objectives, tmp_path):
    doc = tmp_path / "docs" / "experiments.md"
    objectives.write_doc(doc, "first")
    objectives.write_doc(doc, "second")
    text = doc.read_text("utf-8")
    assert "second" in text and "first" not in text


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0"], "--seeds"),
    (["--steps", "0"], "--steps"),
    (["--steps", "-5"], "--steps"),
    (["--objectives", "ce,xent"], "--objectives"),
    (["--teacher-epochs", "0"], "--teacher-epochs"),
    (["--hidden", "0"], "--hidden"),
    (["--config", "nope.yaml"], "--config"),
    (["--section", "a b"], "--section"),
])
def test_argument_validation(objectives, tmp_path, capsys, extra, message):
    data = write_dataset(tmp_path / "data", repeat=1)
    with pytest.raises(SystemExit) as info:
        objectives.parse_args(["--data", str(data), "--out", str(tmp_path / "o"), *extra])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_data_dir_must_hold_the_splits(objectives, tmp_path, capsys):
    (tmp_path / "class.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        objectives.parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert "train.txt" in err and "test.txt" in err


def test_overrides_after_double_dash_reach_students(objectives, tmp_path):
    data = write_dataset(tmp_path / "data", repeat=1)
    args = objectives.parse_args(["--data", str(data), "--out", str(tmp_path / "o"),
                                  "--vocab-from", str(data), "--steps", "40", "--objectives",
                                  "kd, ce", "--", "--objective.representation", "mlp"])
    assert args.objectives == ["kd", "ce"] and args.vocab is None
    over = objectives.student_overrides(args, tmp_path / "init", "kd", 2)
    assert over[-2:] == ["--objective.representation", "mlp"]
    assert over[over.index("--train.max_steps") + 1] == "40"
    assert over[over.index("--train.seed") + 1] == "2"


@pytest.mark.slow
def test_end_to_end_miniature(objectives, tmp_path, capsys):
    data = write_dataset(tmp_path / "data", repeat=2)
    config = tmp_path / "mini.yaml"
    config.write_text(
        "model: {head: bert_CNN, num_filters: 8, dropout: 0.0}\n"
        "train: {lr: 5.0e-3, batch_size: 8, eval_batch_size: 32, epochs: 1, eval_steps: 3,\n"
        "        logging_steps: 2, tensorboard: false}\n", encoding="utf-8")
    doc = tmp_path / "experiments.md"
    argv = ["--data", str(data), "--out", str(tmp_path / "run"), "--seeds", "2", "--steps", "3",
            "--config", str(config), "--vocab-from", str(data), "--layers", "1", "--hidden", "32",
            "--teacher-layers", "1", "--teacher-hidden", "32", "--teacher-heads", "2",
            "--teacher-epochs", "1", "--teacher-batch-size", "8", "--objectives", "ce,kd+scl",
            "--doc", str(doc)]
    assert objectives.main(argv) == 0
    printed = capsys.readouterr().out
    run = tmp_path / "run"
    train_lines = (run / "kd_data" / "train.txt").read_text("utf-8").splitlines()
    assert len(train_lines) == 36 and all(line.count("\t") == 2 for line in train_lines)
    for objective in ("ce", "kd+scl"):
        for seed in (1, 2):
            metrics = json.loads((run / "students" / "steps3" / objective / f"seed{seed}" /
                                  "metrics.json").read_text("utf-8"))
            assert metrics["global_step"] == 3
    lines = doc.read_text("utf-8").splitlines()
    begin, end = objectives.markers()
    assert begin in lines and end in lines
    assert any(line.startswith("| kd+scl | 2 |") for line in lines)
    assert any(line.startswith("| teacher (ce) | 1 |") for line in lines)
    assert "| kd+scl | 2 |" in printed
    # re-run: everything is reused (no new weights written), the table is rebuilt identically
    weights = run / "students" / "steps3" / "ce" / "seed1" / "best" / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert objectives.main(argv) == 0
    assert weights.stat().st_mtime_ns == stamp
    assert doc.read_text("utf-8").count(begin) == 1
    assert capsys.readouterr().out == printed
    # an interrupted run (no metrics.json, Trainer checkpoints left) resumes instead of restarting
    resumed = run / "students" / "steps3" / "kd+scl" / "seed2"
    (resumed / "metrics.json").unlink()
    assert objectives.main(argv) == 0
    assert json.loads((resumed / "seconds.json").read_text("utf-8"))["resumed"] is True

    def without_cpu(text: str) -> list[str]:
        return [line.rsplit("|", 2)[0] for line in text.splitlines()]

    assert without_cpu(capsys.readouterr().out) == without_cpu(printed)
    assert weights.stat().st_mtime_ns == stamp
