"""``zhcls demo``: the self-contained default job. Needs no download, no GPU and no dataset
of your own: it copies the small Chinese dataset shipped in the package (5 news classes,
350 train / 75 dev / 75 test sentences) to ``OUT/data``, builds a tiny BERT on the spot from
its character vocabulary (``OUT/encoder``), trains and evaluates it with the settings of
``configs/demo.yaml`` (``OUT/run``), and classifies a few new sentences with the trained
checkpoint (``OUT/predictions.jsonl``). About a minute on 2 CPU cores; ``quick=True`` trains
for fewer epochs.

``OUT`` defaults to ``./zhcls-demo``. A later run into the same directory replaces what the
earlier demo wrote there; a non-empty directory that no demo wrote is refused.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from zhcls.config import Config, config_from_dict
from zhcls.errors import ZhclsError
from zhcls.utils import atomic_write_json

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path("zhcls-demo")
DATA_FILES = ("class.txt", "train.txt", "dev.txt", "test.txt")
CONFIG_FILE = "demo.yaml"
# Shape of the encoder built by init_tiny (documented in configs/demo.yaml's header).
ENCODER = {"layers": 1, "hidden": 128, "heads": 2}
QUICK_EPOCHS = 6.0
MARKER = ".zhcls-demo"
# Everything run_demo writes under OUT; only these are removed when OUT is reused.
WRITTEN = ("data", "encoder", "run", "predictions.jsonl", "demo.json", MARKER)

# New sentences (not in the dataset) and the class a reader would give them.
DEMO_SENTENCES: tuple[tuple[str, str], ...] = (
    ("主队在补时阶段打进制胜球，球迷欢呼庆祝", "体育"),
    ("股市收盘上涨，银行板块成交额明显放大", "财经"),
    ("新款手机芯片性能提升，耗电明显降低", "科技"),
    ("这部电影首映后口碑极佳，主演获得好评", "娱乐"),
    ("高考报名今日开始，考生需要在网上确认信息", "教育"),
)


@dataclass
class DemoPrediction:
    """The trained model's answer for one demo sentence."""

    text: str
    expected: str
    label: str
    score: float
    probabilities: dict[str, float]

    @property
    def correct(self) -> bool:
        return self.label == self.expected


@dataclass
class DemoResult:
    """Headline numbers and where every output went (``outputs``: name -> path)."""

    out_dir: Path
    dev_metrics: dict
    test_metrics: dict
    predictions: list[DemoPrediction]
    outputs: dict[str, Path]
    num_classes: int
    seconds: float
    quick: bool

    @property
    def chance(self) -> float:
        return 1.0 / self.num_classes


def demo_resource(name: str) -> Traversable:
    """A file of the packaged demo (``zhcls/resources/demo/NAME``)."""
    return resources.files("zhcls").joinpath("resources", "demo", name)


def demo_config(encoder_dir: str | Path, *, quick: bool = False, seed: int = 0) -> Config:
    """The packaged ``demo.yaml`` (same as ``configs/demo.yaml``) for ``encoder_dir``."""
    source = demo_resource(CONFIG_FILE)
    config = config_from_dict(yaml.safe_load(source.read_text(encoding="utf-8")),
                              source=f"zhcls/resources/demo/{CONFIG_FILE}")
    config.model.pretrained = str(encoder_dir)
    config.train.seed = seed
    if quick:
        config.train.epochs = QUICK_EPOCHS
    return config.validate()


def copy_dataset(dest: str | Path) -> Path:
    """Write the packaged dataset (class.txt, train/dev/test.txt) to ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        (dest / name).write_bytes(demo_resource(name).read_bytes())
    return dest


def prepare_out_dir(out: str | Path) -> Path:
    """Create ``out``, or clear what an earlier demo wrote there; refuse other content."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZhclsError(f"demo output {out} is a file; pass --out a new or empty directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise ZhclsError(f"demo output {out} is not empty and was not written by `zhcls "
                             "demo`; pass --out a new or empty directory (nothing was changed)")
        for name in WRITTEN:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        logger.info("replacing the earlier demo output in %s", out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `zhcls demo`; rerunning it replaces this directory's "
                              "demo outputs\n", encoding="utf-8")
    return out


def predict_sentences(checkpoint: str | Path,
                      sentences: tuple[tuple[str, str], ...] = DEMO_SENTENCES,
                      device: str = "auto") -> list[DemoPrediction]:
    """Classify ``(text, expected label)`` pairs with a trained checkpoint."""
    from zhcls.inference.classifier import Classifier

    classifier = Classifier.load(checkpoint, device)
    probs = classifier.predict_proba([text for text, _ in sentences])  # (N, C)
    out = []
    for (text, expected), row in zip(sentences, probs, strict=True):
        best = int(row.argmax())
        out.append(DemoPrediction(
            text=text, expected=expected, label=classifier.labels[best], score=float(row[best]),
            probabilities={n: round(float(p), 4) for n, p in zip(classifier.labels, row,
                                                                 strict=True)}))
    return out


def run_demo(out_dir: str | Path | None = None, *, seed: int = 0, quick: bool = False
             ) -> DemoResult:
    """Copy the demo data, build a tiny model, train, evaluate on test, predict new texts."""
    from zhcls.modeling.tiny import init_tiny
    from zhcls.workflows.pipeline import train_and_report as train

    start = time.perf_counter()
    out = prepare_out_dir(Path(out_dir if out_dir is not None else DEFAULT_OUT).absolute())
    data = copy_dataset(out / "data")
    encoder = init_tiny(out / "encoder", vocab_from=data, seed=seed, **ENCODER)
    config = demo_config(encoder, quick=quick, seed=seed)
    result = train(config, data, out / "run")
    if result.test_metrics is None:
        raise ZhclsError(f"{out / 'run'}: training wrote no test metrics; expected "
                         f"eval_test/ from the test split in {data}")
    curves = _plot_curves(result.output_dir)
    predictions = predict_sentences(result.best_dir)
    _write_predictions(out / "predictions.jsonl", predictions)
    outputs = _outputs(out, result.output_dir, curves)
    demo = DemoResult(out_dir=out, dev_metrics=result.dev_metrics,
                      test_metrics=result.test_metrics, predictions=predictions,
                      outputs=outputs, num_classes=len(result.test_metrics["per_class"]),
                      seconds=time.perf_counter() - start, quick=quick)
    _write_summary(out / "demo.json", demo, seed)
    logger.info("demo finished in %.0f s: test accuracy %.4f", demo.seconds,
                demo.test_metrics["accuracy"])
    return demo


def _plot_curves(run_dir: Path) -> Path:
    from zhcls.report.plots import plot_training_curves

    history = json.loads((run_dir / "history.json").read_text(encoding="utf-8"))
    return plot_training_curves(history["log_history"], run_dir / "training_curves.png",
                                epoch_steps=history.get("epoch_steps"))


def _write_predictions(path: Path, predictions: list[DemoPrediction]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for p in predictions:
            f.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")


def _outputs(out: Path, run: Path, curves: Path) -> dict[str, Path]:
    ev = run / "eval_test"
    candidates = {
        "data": out / "data", "encoder": out / "encoder", "checkpoint": run / "best",
        "metrics": run / "metrics.json", "test_report": ev / "report.txt",
        "confusion_matrix": ev / "confusion_matrix.png",
        "confusion_matrix_normalized": ev / "confusion_matrix_normalized.png",
        "per_class": ev / "per_class.png", "wrong_samples": ev / "wrong_samples.jsonl",
        "training_curves": curves, "history": run / "history.json",
        "tensorboard": run / "tensorboard", "predictions": out / "predictions.jsonl",
        "summary": out / "demo.json",
    }
    return {name: path for name, path in candidates.items()
            if path.exists() or name == "summary"}


def _write_summary(path: Path, demo: DemoResult, seed: int) -> None:
    keys = ("accuracy", "macro_f1", "loss")
    summary = {
        "seconds": round(demo.seconds, 1), "quick": demo.quick, "seed": seed,
        "dev": {k: _round(demo.dev_metrics.get(k)) for k in keys},
        "test": {k: _round(demo.test_metrics.get(k)) for k in keys},
        "predictions": [asdict(p) for p in demo.predictions],
        "outputs": {name: str(p) for name, p in demo.outputs.items()},
    }
    atomic_write_json(path, summary)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
