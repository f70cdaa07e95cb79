"""zhcls.report.run_report / errors / html: a real tiny ce and ce+scl run, their reports and
the side-by-side comparison; confused pairs on hand-made matrices."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from conftest import tiny_config
from zhcls.cli import main
from zhcls.data.formats import read_class_names
from zhcls.errors import CheckpointError, DataError, ZhclsError
from zhcls.report.errors import (
    ConfusedPair,
    attach_examples,
    confused_pairs,
    format_confused_pairs_md,
    read_wrong_samples,
)
from zhcls.report.html import config_differences
from zhcls.report.run_report import build_report, epoch_boundaries, run_names

RUN_FILES = ("curves.png", "confusion_matrix.png", "confusion_matrix_normalized.png",
             "per_class.png", "representation_map.png", "confused_pairs.json",
             "confused_pairs.md", "wrong_samples.jsonl", "metrics.json", "predictions.npz",
             "report.json", "report.html")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model, tiny_data) -> dict[str, Path]:
    from zhcls.workflows.pipeline import train_and_report as train

    root = tmp_path_factory.mktemp("report-runs")
    out = {}
    for name, objective in (("run_ce", "ce"), ("run_scl", "ce+scl")):
        config = tiny_config(tiny_model, objective__name=objective)
        out[name] = train(config, tiny_data, root / name).output_dir
    return out


@pytest.fixture(scope="module")
def single(runs) -> Path:
    return build_report([runs["run_ce"]])


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def image_sources(page: Path) -> list[Path]:
    parser = ImageSources()
    parser.feed(page.read_text(encoding="utf-8"))
    return [page.parent / unquote(src) for src in parser.sources]


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


# ----------------------------------------------------------------------------- one run
def test_single_report_writes_every_artefact(runs, single):
    report_dir = runs["run_ce"] / "report"
    assert single == report_dir / "report.html"
    for name in RUN_FILES:
        assert (report_dir / name).is_file(), name
    for name in RUN_FILES:
        if name.endswith(".png"):
            width, height = png_size(report_dir / name)
            assert min(width, height) > 300, name
    images = image_sources(single)
    assert len(images) >= 5
    assert all(p.is_file() for p in images), [p for p in images if not p.is_file()]
    assert all(not src.is_absolute() for src in map(Path, re.findall(
        r'src="([^"]+)"', single.read_text(encoding="utf-8"))))
    # the run's own test-set pictures are linked from the run directory
    assert (runs["run_ce"] / "eval_test" / "per_class.png").resolve() in [
        p.resolve() for p in images]


def test_single_report_numbers_are_consistent(runs, single, tiny_data):
    from zhcls.report.embedding import silhouette

    report_dir = single.parent
    summary = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    metrics = json.loads((report_dir / "metrics.json").read_text(encoding="utf-8"))
    with np.load(report_dir / "predictions.npz") as npz:
        reps, gold, probs = npz["representations"], npz["gold"], npz["probs"]
    assert metrics["split"].endswith("dev.txt") and len(gold) == 18
    assert summary["silhouette"] == pytest.approx(silhouette(reps, gold.astype(int)))
    assert summary["n_points"] == 18
    html = single.read_text(encoding="utf-8")
    assert f"silhouette (cosine) = {summary['silhouette']:.3f}" in html
    # the dev evaluation matches the one at the end of training
    trained = json.loads((runs["run_ce"] / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["accuracy"] == pytest.approx(trained["dev"]["accuracy"], abs=1e-4)
    assert metrics["loss"] == pytest.approx(trained["dev"]["loss"], abs=1e-3)
    # one wrong sample per off-diagonal count, and the pairs add up to the same errors
    cm = np.asarray(metrics["confusion_matrix"])
    errors = int(cm.sum() - np.trace(cm))
    wrong = read_wrong_samples(report_dir / "wrong_samples.jsonl")
    assert len(wrong) == errors == int((probs.argmax(1) != gold).sum())
    pairs = json.loads((report_dir / "confused_pairs.json").read_text(encoding="utf-8"))
    assert sum(p["total"] for p in pairs) == errors  # 3 classes: at most 3 pairs, all kept
    for p in pairs:
        assert len(p["examples"]) == min(5, p["total"])
    # config, Chinese class names and the curves are on the page
    assert "objective <code>ce</code>" in html and "scl_temperature: 0.07" in html
    assert "体育" in html and "财经" in html
    assert 'src="curves.png"' in html and str(tiny_data) in html


def test_cli_report_prints_silhouette_and_page(runs, single, capsys):
    assert main(["report", str(runs["run_ce"]), "--out", str(runs["run_ce"] / "report2"),
                 "--method", "pca"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"silhouette -?\d\.\d{3}", printed)
    assert f"report: {(runs['run_ce'] / 'report2' / 'report.html').resolve()}" in printed
    html = (runs["run_ce"] / "report2" / "report.html").read_text(encoding="utf-8")
    assert "PCA of the representations" in html


def test_teacher_probabilities_shown_when_the_split_has_them(runs, tmp_path, tiny_kd_data):
    page = build_report([runs["run_ce"]], tmp_path / "kd", data_dir=tiny_kd_data, method="pca")
    wrong = read_wrong_samples(page.parent / "wrong_samples.jsonl")
    assert wrong, "the 6-step model should make mistakes on the dev split"
    for row in wrong:  # the teacher puts 0.8 on the gold class of every line
        assert row["teacher"][row["gold"]] == pytest.approx(0.8)
    html = page.read_text(encoding="utf-8")
    assert "<th>teacher p(gold)</th>" in html and '<td class="num">0.800</td>' in html
    assert "teacher p(gold)" in (page.parent / "confused_pairs.md").read_text(encoding="utf-8")


def test_single_class_split_gives_a_report_without_map(runs, tmp_path, tiny_data):
    data = tmp_path / "one-class"
    data.mkdir()
    (data / "class.txt").write_text((tiny_data / "class.txt").read_text(encoding="utf-8"),
                                    encoding="utf-8")
    lines = (tiny_data / "dev.txt").read_text(encoding="utf-8").splitlines()
    (data / "dev.txt").write_text("\n".join(x for x in lines if x.endswith("\t0")) + "\n",
                                  encoding="utf-8")
    page = build_report([runs["run_ce"]], tmp_path / "r", data_dir=data)
    assert "No map: the dev split could not be scored" in page.read_text(encoding="utf-8")
    assert not (page.parent / "representation_map.png").exists()
    assert json.loads((page.parent / "report.json").read_text(encoding="utf-8"))[
        "silhouette"] is None
    copies = [shutil.copytree(runs[name], tmp_path / name) for name in ("run_ce", "run_scl")]
    with pytest.raises(ZhclsError, match="cannot compare representation maps"):
        build_report(copies, tmp_path / "cmp", data_dir=data)


# ----------------------------------------------------------------------------- comparison
def test_comparison_shows_both_maps_and_scores(runs, single, caplog):
    a, b = runs["run_ce"], runs["run_scl"]
    stamp = (a / "report" / "report.json").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="zhcls.report.run_report"):
        page = build_report([a, b])
    assert page == a / "report_vs_run_scl" / "report.html"
    assert "reusing the up-to-date report" in caplog.text  # run_ce's report from before
    assert (a / "report" / "report.json").stat().st_mtime_ns == stamp
    assert (b / "report" / "report.html").is_file()  # run_scl's own report was built
    width, height = png_size(page.parent / "representation_maps.png")
    assert width > 1.4 * height
    scores = json.loads((page.parent / "comparison.json").read_text(encoding="utf-8"))
    own = [json.loads((r / "report" / "report.json").read_text(encoding="utf-8"))["silhouette"]
           for r in (a, b)]
    assert list(scores["silhouette"].values()) == pytest.approx(own)
    html = page.read_text(encoding="utf-8")
    for name, score in zip(("run_ce", "run_scl"), own, strict=True):
        assert f"{name}: silhouette {score:.3f}" in html
    assert "<code>objective.name</code></td><td>ce</td><td>ce+scl</td>" in html
    images = image_sources(page)
    assert all(p.is_file() for p in images) and len(images) == 5


def test_stale_report_is_rebuilt(runs, single, caplog):
    a, b = runs["run_ce"], runs["run_scl"]
    build_report([a, b])
    weights = a / "best" / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with caplog.at_level(logging.INFO, logger="zhcls.report.run_report"):
        build_report([a, b], a / "cmp")
    assert caplog.text.count("reusing the up-to-date report") == 1  # only run_scl's
    assert (a / "cmp" / "report.html").is_file()


def _run_on(run: Path, copy: Path, data: Path) -> Path:
    """A copy of ``run`` whose config names ``data`` as its dataset (data.dir)."""
    import yaml

    shutil.copytree(run, copy)
    shutil.rmtree(copy / "report", ignore_errors=True)
    file = copy / "best" / "zhcls.yaml"
    raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    raw["data"]["dir"] = str(data)
    file.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return copy


def test_comparison_refuses_runs_evaluated_on_different_splits(runs, tmp_path, tiny_data):
    a = runs["run_ce"]
    other = shutil.copytree(tiny_data, tmp_path / "other-data")
    dev = (other / "dev.txt").read_text(encoding="utf-8").splitlines()
    (other / "dev.txt").write_text("\n".join(dev[:-2]) + "\n", encoding="utf-8")
    b = _run_on(runs["run_scl"], tmp_path / "run_b", other)
    n = len(dev)
    with pytest.raises(ZhclsError) as exc:
        build_report([a, b], tmp_path / "cmp")
    message = str(exc.value)
    assert "\n" not in message and "different dev splits" in message
    assert f"{tiny_data / 'dev.txt'} ({n} examples" in message
    assert f"{other / 'dev.txt'} ({n - 2} examples" in message
    assert "--data DIR" in message
    assert not (tmp_path / "cmp").exists()
    # one --data for all: every run on that one split, named on the page
    page = build_report([a, b], tmp_path / "cmp", data_dir=other)
    html = page.read_text(encoding="utf-8")
    split = re.search(r"the same dev split\s*\(<code>([^<]*)</code>\)", html)
    assert split and split.group(1) == str(other / "dev.txt")
    # an identical copy of the split elsewhere is the same split; each run's file recorded
    same = shutil.copytree(tiny_data, tmp_path / "same-data")
    c = _run_on(runs["run_scl"], tmp_path / "run_c", same)
    page = build_report([a, c], tmp_path / "cmp2")
    paths = json.loads((page.parent / "comparison.json").read_text(encoding="utf-8"))
    assert paths["split_paths"] == {"run_ce": str(tiny_data / "dev.txt"),
                                    "run_c": str(same / "dev.txt")}
    # the same rows with a teacher column (a `zhcls label` output): the same examples
    kd = shutil.copytree(tiny_data, tmp_path / "kd-data")
    k = len(read_class_names(kd / "class.txt"))
    (kd / "dev.txt").write_text("".join(f"{line}\t{','.join(['%.4f' % (1 / k)] * k)}\n"
                                        for line in dev), encoding="utf-8")
    d = _run_on(runs["run_scl"], tmp_path / "run_d", kd)
    assert build_report([a, d], tmp_path / "cmp3").is_file()
    # as many rows, one label changed: other examples
    relabelled = shutil.copytree(tiny_data, tmp_path / "relabelled")
    text, label = dev[0].split("\t")[:2]
    (relabelled / "dev.txt").write_text("\n".join([f"{text}\t{(int(label) + 1) % k}", *dev[1:]])
                                        + "\n", encoding="utf-8")
    e = _run_on(runs["run_scl"], tmp_path / "run_e", relabelled)
    with pytest.raises(ZhclsError, match="different dev splits"):
        build_report([a, e], tmp_path / "cmp4")


# ----------------------------------------------------------------------------- errors
def test_report_errors_name_what_is_wrong(runs, tmp_path, tiny_data):
    with pytest.raises(CheckpointError, match="run directory not found"):
        build_report([tmp_path / "nope"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: no best/ checkpoint"):
        build_report([tmp_path / "empty"])
    (tmp_path / "empty" / "best").mkdir()
    with pytest.raises(CheckpointError, match="not a zhcls checkpoint; missing model"):
        build_report([tmp_path / "empty"])
    with pytest.raises(ZhclsError, match=r"dataset directory .*missing \(--data\) not found"):
        build_report([runs["run_ce"]], tmp_path / "r", data_dir=tmp_path / "missing")
    with pytest.raises(DataError, match="no test2 split found"):
        build_report([runs["run_ce"]], tmp_path / "r", split="test2")
    other = tmp_path / "other-data"
    other.mkdir()
    (other / "class.txt").write_text("甲\n乙\n丙", encoding="utf-8")
    (other / "dev.txt").write_text((tiny_data / "dev.txt").read_text(encoding="utf-8"),
                                   encoding="utf-8")
    with pytest.raises(CheckpointError, match="class.txt names 3 classes"):
        build_report([runs["run_ce"]], tmp_path / "r", data_dir=other)
    with pytest.raises(ZhclsError, match="method must be one of tsne, pca"):
        build_report([runs["run_ce"]], method="umap")


def test_run_names_disambiguate_equal_names(tmp_path):
    assert run_names([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    assert run_names([tmp_path / "x" / "seed-1", tmp_path / "y" / "seed-1"]) == [
        "x/seed-1", "y/seed-1"]


def test_epoch_boundaries_drop_the_end_of_training():
    log = [{"step": 10, "loss": 1.0}, {"step": 400, "eval_loss": 1.0}]
    assert epoch_boundaries({"log_history": log, "epoch_steps": [200, 400]}) == [200]
    assert epoch_boundaries({"log_history": log}) is None


def test_config_differences_lists_only_differing_keys():
    a = {"train": {"lr": 1e-3, "seed": 1}, "objective": {"name": "ce"}}
    b = {"train": {"lr": 1e-3, "seed": 2}, "objective": {"name": "ce+scl"}}
    assert config_differences([a, b]) == [("objective.name", ["ce", "ce+scl"]),
                                          ("train.seed", [1, 2])]


# ----------------------------------------------------------------------------- confused pairs
NAMES = ["体育", "财经", "科技"]


def test_confused_pairs_rank_both_directions():
    cm = np.array([[10, 1, 0],
                   [4, 20, 3],
                   [0, 3, 9]])
    pairs = confused_pairs(cm, NAMES)
    assert [(p.a, p.b, p.a_as_b, p.b_as_a) for p in pairs] == [
        ("财经", "科技", 3, 3), ("体育", "财经", 1, 4)]  # 体育↔科技 never confused: left out
    assert pairs[0].rate == pytest.approx(6 / (27 + 12))
    assert confused_pairs(cm, NAMES, top=1) == pairs[:1]
    with pytest.raises(ValueError, match=r"must be \(3, 3\)"):
        confused_pairs(cm[:2], NAMES)


def test_attach_examples_most_confident_first_and_markdown(tmp_path):
    rows = [
        {"line": 3, "text": "央行|降准", "gold": "财经", "predicted": "科技",
         "probabilities": {"体育": 0.1, "财经": 0.3, "科技": 0.6},
         "teacher": {"体育": 0.0, "财经": 0.9, "科技": 0.1}},
        {"line": 5, "text": "芯片", "gold": "科技", "predicted": "财经",
         "probabilities": {"体育": 0.0, "财经": 0.9, "科技": 0.1}},
        {"line": 8, "text": "足球", "gold": "体育", "predicted": "财经",
         "probabilities": {"体育": 0.2, "财经": 0.7, "科技": 0.1}},
    ]
    pair = ConfusedPair("财经", "科技", 1, 1, 10, 10)
    attach_examples([pair], rows, per_pair=5)
    assert [r["line"] for r in pair.examples] == [5, 3]
    md = format_confused_pairs_md([pair])
    assert "| 1 | 财经 ↔ 科技 | 1 | 1 | 2 | 10.00% |" in md
    assert "| 3 | 央行\\|降准 | 财经 → 科技 | 0.600 | 0.300 | 0.900 |" in md
    assert "| 5 | 芯片 | 科技 → 财经 | 0.900 | 0.100 | – |" in md
    assert "No confusions" in format_confused_pairs_md([])


def test_read_wrong_samples_reports_bad_lines(tmp_path):
    path = tmp_path / "wrong_samples.jsonl"
    path.write_text('{"text": "a", "gold": "x", "predicted": "y"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"wrong_samples.jsonl:2: invalid JSON"):
        read_wrong_samples(path)
    path.write_text('{"text": "a", "gold": "x"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r":1: wrong sample lacks \['predicted'\]"):
        read_wrong_samples(path)
