"""``zhcls train`` as a workflow: :func:`zhcls.training.train.train`, then the pictures of the
test evaluation and the run report. Training itself never imports the report layer."""

from __future__ import annotations

import logging
from pathlib import Path

from zhcls.config import Config
from zhcls.training.train import TrainResult, train

logger = logging.getLogger(__name__)


def train_and_report(config: Config, data_dir: str | Path | None = None,
                     out_dir: str | Path | None = None) -> TrainResult:
    """Train, then (``train.baseline``) fit the linear baseline into ``OUT/baseline``, draw
    ``OUT/eval_test/*.png`` and write ``OUT/report`` (``train.report``), which shows the
    baseline's numbers beside the model's.

    A failure while drawing is logged, never fatal: the trained model is already saved."""
    result = train(config, data_dir, out_dir)
    if not result.is_main_process:
        return result
    if config.train.baseline:
        from zhcls.workflows.baseline import train_baseline

        base = train_baseline(data_dir or config.data.dir, result.output_dir / "baseline",
                              encoding=config.data.encoding)
        from zhcls.evaluation.metrics import headline_text

        logger.info("baseline beside the model: %s (test %s)", base.checkpoint,
                    headline_text(base.test_metrics) if base.test_metrics else "-")
    try:
        _draw(result, config)
    except Exception as exc:  # noqa: BLE001 - the run itself succeeded
        logger.warning("could not write the run report (%s: %s); retry with `zhcls report %s`",
                       type(exc).__name__, exc, result.output_dir)
    return result


def _draw(result: TrainResult, config: Config) -> None:
    from zhcls.modeling.checkpoint import read_labels
    from zhcls.report.plots import plot_evaluation

    if result.test_metrics is not None:
        plot_evaluation(result.test_metrics, read_labels(result.best_dir),
                        result.output_dir / "eval_test")
    if config.train.report:
        from zhcls.report.run_report import build_report

        page = build_report([result.output_dir], max_points=config.train.report_max_points)
        logger.info("report: %s", page)
