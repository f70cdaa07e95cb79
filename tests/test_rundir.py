"""Run directories (zhcls.training.rundir): a non-empty --out is refused unless resumed or
overwritten, a resume must continue the same run, checkpoints are written atomically and an
incomplete one is skipped."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, tiny_config
from zhcls.cli import main
from zhcls.config import load_config
from zhcls.errors import CheckpointError, ConfigError
from zhcls.modeling.checkpoint import load_checkpoint, save_checkpoint
from zhcls.training.train import train

RUN = {"train__max_steps": 6, "train__eval_steps": 2, "train__save_total_limit": 3,
       "train__precision": "fp32", "train__evaluate_test": "false"}


def run_config(model, **extra):
    return tiny_config(model, **{**RUN, **extra})


def same_weights(a, b) -> bool:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model, tiny_data):
    """An uninterrupted 6-step run with checkpoints at steps 2, 4 and 6."""
    out = tmp_path_factory.mktemp("reference") / "run"
    train(run_config(tiny_model), tiny_data, out)
    return out


def cli_args(model, data, out, *extra):
    return ["train", "--config", str(REPO / "configs" / "tiny.yaml"),
            "--data", str(data), "--out", str(out), "--model.pretrained", str(model),
            "--model.head", "bert", "--train.batch_size", "8", "--train.max_steps", "6",
            "--train.eval_steps", "2", "--train.save_total_limit", "3",
            "--train.precision", "fp32", "--train.evaluate_test", "false",
            "--train.tensorboard", "false", "--train.report", "false", *extra]


def copy_run(reference, dest):
    shutil.copytree(reference, dest)
    return dest


# ----------------------------------------------------------------------------- refusals
def test_train_into_a_finished_run_is_refused(reference, tiny_model, tiny_data, tmp_path, caplog):
    out = copy_run(reference, tmp_path / "run")
    stamp = (out / "best" / "model.safetensors").stat().st_mtime_ns
    assert main(cli_args(tiny_model, tiny_data, out, "--train.lr", "5e-3")) == 2
    message = caplog.records[-1].getMessage()
    assert f"--out {out} is not empty" in message
    assert "--train.resume true" in message and "--overwrite" in message
    assert (out / "best" / "model.safetensors").stat().st_mtime_ns == stamp


def test_overwrite_removes_the_old_runs_outputs(reference, tiny_model, tiny_data, tmp_path):
    out = copy_run(reference, tmp_path / "run")
    (out / "eval_test").mkdir()
    (out / "eval_test" / "metrics.json").write_text("{}", encoding="utf-8")
    (out / "checkpoints" / "checkpoint-999").mkdir()
    assert main(cli_args(tiny_model, tiny_data, out, "--train.max_steps", "2",
                         "--overwrite")) == 0
    assert not (out / "eval_test").exists()  # evaluate_test is off: nothing new there
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2"]
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    assert metrics["global_step"] == 2


def test_overwrite_removes_the_runs_comparison_reports_and_baseline(reference, tiny_model,
                                                                    tiny_data, tmp_path):
    out = copy_run(reference, tmp_path / "run")
    from zhcls.report.run_report import build_report

    other = copy_run(reference, tmp_path / "other")
    build_report([out, other], method="pca")  # `zhcls report RUN OTHER`: RUN/report_vs_other
    assert (out / "report_vs_other").is_dir()
    (out / "baseline").mkdir()  # train.baseline true
    (out / "baseline" / "meta.json").write_text('{"kind": "baseline", "format": 1}',
                                                encoding="utf-8")
    assert main(cli_args(tiny_model, tiny_data, out, "--train.max_steps", "2",
                         "--overwrite")) == 0
    assert not (out / "report_vs_other").exists() and not (out / "baseline").exists()


def test_overwrite_keeps_a_users_own_baseline_folder(reference, tiny_model, tiny_data,
                                                     tmp_path):
    out = copy_run(reference, tmp_path / "run")
    (out / "baseline").mkdir()
    (out / "baseline" / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(cli_args(tiny_model, tiny_data, out, "--overwrite")) == 2
    assert (out / "baseline" / "notes.txt").is_file()


def test_overwrite_refuses_files_zhcls_did_not_write(reference, tiny_model, tiny_data, tmp_path,
                                                     caplog):
    out = copy_run(reference, tmp_path / "run")
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(cli_args(tiny_model, tiny_data, out, "--overwrite")) == 2
    assert "notes.txt" in caplog.records[-1].getMessage()
    assert (out / "best" / "model.safetensors").is_file() and (out / "notes.txt").is_file()


def test_resume_and_overwrite_together_is_a_config_error():
    with pytest.raises(ConfigError, match="train.resume and train.overwrite"):
        load_config(None, ["--train.resume", "true", "--train.overwrite", "true"])


def test_resume_with_other_settings_is_refused_naming_them(reference, tiny_model, tiny_data,
                                                           tmp_path):
    out = copy_run(reference, tmp_path / "run")
    other = run_config(tiny_model, train__resume="true", train__seed=99, train__lr="2e-3")
    with pytest.raises(ConfigError) as info:
        train(other, tiny_data, out)
    text = str(info.value)
    assert "train.seed: 1 in the run vs 99 now" in text
    assert "train.lr: 0.001 in the run vs 0.002 now" in text
    assert "eval_batch_size" not in text


def test_resume_with_changed_data_is_refused(reference, tiny_model, tiny_data, tmp_path):
    out = copy_run(reference, tmp_path / "run")
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    with (data / "train.txt").open("a", encoding="utf-8") as f:
        f.write("新的一行体育新闻\t0\n")
    with pytest.raises(ConfigError, match=r"data\.files\.train\.txt: 'size \d+"):
        train(run_config(tiny_model, train__resume="true"), data, out)


def test_resume_of_a_finished_run_is_refused_and_trains_nothing(reference, tiny_model,
                                                                tiny_data, tmp_path, caplog):
    out = copy_run(reference, tmp_path / "run")
    for ckpt in ("checkpoint-2", "checkpoint-6"):  # save_total_limit 1 kept only the best one
        shutil.rmtree(out / "checkpoints" / ckpt)
    stamp = (out / "best" / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(ConfigError) as info:
        train(run_config(tiny_model, train__resume="true"), tiny_data, out)
    message = str(info.value)
    assert "finished run" in message and "metrics.json" in message and "--overwrite" in message
    assert (out / "best" / "model.safetensors").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-4"]


def test_resume_of_a_directory_zhcls_did_not_write_is_refused(tiny_model, tiny_data, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="has no zhcls-run.json"):
        train(run_config(tiny_model, train__resume="true"), tiny_data, tmp_path / "run")


# ----------------------------------------------------------------------------- resume
def test_resume_skips_an_incomplete_checkpoint(reference, tiny_model, tiny_data, tmp_path,
                                               caplog, monkeypatch):
    out = copy_run(reference, tmp_path / "run")
    for name in ("best", "metrics.json", "history.json"):
        shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    (out / "checkpoints" / "checkpoint-6" / "trainer_state.json").unlink()  # killed mid-save
    monkeypatch.setenv("ZHCLS_RANK_DIGEST_DIR", str(tmp_path / "digest"))
    # A setting that does not change the result may differ.
    cfg = run_config(tiny_model, train__resume="true", train__eval_batch_size=5)
    with caplog.at_level(logging.INFO, logger="zhcls"):
        train(cfg, tiny_data, out)
    assert "skipping incomplete checkpoint" in caplog.text and "checkpoint-6" in caplog.text
    rows = json.loads((tmp_path / "digest" / "rank0.json").read_text("utf-8"))["rows"]
    assert len(rows) == 2 * 8  # steps 5 and 6 only: it continued from checkpoint-4
    assert same_weights(out / "best", reference / "best")
    assert (out / "checkpoints" / "checkpoint-6" / "trainer_state.json").is_file()


def test_interrupted_checkpoint_save_leaves_no_checkpoint(tiny_model, tiny_data, tmp_path,
                                                          monkeypatch, reference, caplog):
    from zhcls.training.trainer import ZhclsTrainer

    original = ZhclsTrainer._save_rng_state

    def dies_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise KeyboardInterrupt("killed while saving")
        return original(self, output_dir)

    monkeypatch.setattr(ZhclsTrainer, "_save_rng_state", dies_at_step_4)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(run_config(tiny_model), tiny_data, out)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [".staging", "checkpoint-2"]
    monkeypatch.setattr(ZhclsTrainer, "_save_rng_state", original)
    with caplog.at_level(logging.INFO, logger="zhcls"):
        train(run_config(tiny_model, train__resume="true"), tiny_data, out)
    assert "a checkpoint save that was interrupted" in caplog.text
    assert "from " + str(out / "checkpoints" / "checkpoint-2") in caplog.text
    assert same_weights(out / "best", reference / "best")
    assert not (out / "checkpoints" / ".staging").exists()


# ----------------------------------------------------------------------------- best/ and meta
def test_save_checkpoint_replaces_the_old_one_only_when_complete(reference, tmp_path,
                                                                 monkeypatch):
    ckpt = load_checkpoint(reference / "best")
    dest = copy_run(reference / "best", tmp_path / "best")
    before = (dest / "model.safetensors").read_bytes()
    with torch.no_grad():
        ckpt.model.classifier.weight.add_(1.0)  # new weights: an in-place write would show

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.tokenizer, "save_pretrained", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(dest, ckpt.model, ckpt.tokenizer, ckpt.config, ckpt.labels)
    assert (dest / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]  # no temporary left


def test_unknown_checkpoint_format_is_refused(reference, tmp_path):
    dest = copy_run(reference / "best", tmp_path / "best")
    meta = json.loads((dest / "meta.json").read_text("utf-8"))
    (dest / "meta.json").write_text(json.dumps({**meta, "format": 99}), encoding="utf-8")
    with pytest.raises(CheckpointError, match=r"checkpoint format 99 .*upgrade zhcls"):
        load_checkpoint(dest)


def test_a_checkpoint_at_an_epoch_end_counts_that_epoch(tmp_path):
    from zhcls.training.rundir import _epoch_steps

    # The Trainer saves checkpoint-18 before it ends epoch 2 at step 18: a run resumed from it
    # never sees that epoch end, so the boundary comes from the checkpoint.
    (tmp_path / "trainer_state.json").write_text(json.dumps({"epoch": 2.0, "global_step": 18}))
    assert _epoch_steps(tmp_path, {"epoch_steps": [9]}) == [9, 18]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"epoch": 2.5, "global_step": 22}))
    assert _epoch_steps(tmp_path, {"epoch_steps": [9, 18]}) == [9, 18]
