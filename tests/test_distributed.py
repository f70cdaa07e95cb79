"""DDP on CPU with gloo: ``torchrun --nproc_per_node 2 -m zhcls train`` on a tiny model for 2
**epochs** (identical weights on both ranks, disjoint data, only rank 0 writes, same result as
one process with the same global batch, the warm-up and decay follow the real number of
optimizer steps, label-aware batches cover the training set every epoch), and
``gather_with_grad`` / the global-batch SCL under a 2-process gloo group."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CLASSES, REPO, SENTENCES, requires_vocab

pytestmark = pytest.mark.slow  # end-to-end; CI runs it (python -m pytest -m '')

WORLD = 2
PER_DEVICE = 8
N_TRAIN = 96
EPOCHS = 2
WARMUP = 0.25
# Epochs, not max_steps: max_steps hides a schedule computed for the wrong number of steps.
COMMON = ["--model.dropout", "0", "--train.epochs", str(EPOCHS), "--train.eval_steps", "6",
          "--train.logging_steps", "1", "--train.warmup_ratio", str(WARMUP),
          "--train.lr", "5e-3", "--train.precision", "fp32",
          "--objective.name", "ce+scl", "--objective.scl_global_batch", "true",
          "--train.tensorboard", "true", "--train.report", "false"]


def _write_unique_dataset(root: Path, train_sizes=(32, 32, 32)) -> Path:
    """3 classes, distinct sentences (a class sentence + a distinct issue number):
    ``train_sizes`` per class for train (96 in all by default), 8 per class for dev and test."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    rng = np.random.default_rng(0)
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for (label, texts), n_train in zip(SENTENCES.items(), train_sizes, strict=True):
        combos = [f"{t}第{n}期\t{label}" for t in texts for n in range(1, 41)]
        combos = [combos[i] for i in rng.permutation(len(combos))]
        splits["train"] += combos[:n_train]
        splits["dev"] += combos[n_train:n_train + 8]
        splits["test"] += combos[n_train + 8:n_train + 16]
    for name, lines in splits.items():
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def ddp_setup(tmp_path_factory, tiny_model):
    """A dropout-free copy of the tiny encoder (so one process and two agree) and the data."""
    import shutil

    root = tmp_path_factory.mktemp("ddp")
    model = root / "model"
    shutil.copytree(tiny_model, model)
    cfg = json.loads((model / "config.json").read_text("utf-8"))
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    return root, model, _write_unique_dataset(root / "data")


def _torchrun(root: Path, model: Path, data: Path, name: str, extra: list[str]):
    out, digests = root / f"run-{name}", root / f"digest-{name}"
    hooks = os.pathsep.join(p for p in (str(REPO / "tests" / "digest_hooks"),
                                        os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "ZHCLS_RANK_DIGEST_DIR": str(digests), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": hooks,
           "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(WORLD), "-m", "zhcls", "train",
           "--config", str(REPO / "configs" / "tiny.yaml"), "--model.pretrained", str(model),
           "--data", str(data), "--out", str(out), "--train.batch_size", str(PER_DEVICE), *COMMON,
           *extra]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    return proc, out, digests


@pytest.fixture(scope="module")
def torchrun_run(ddp_setup):
    root, model, data = ddp_setup
    return _torchrun(root, model, data, "ddp", [])


@pytest.fixture(scope="module")
def single_run(ddp_setup, monkeypatch_module):
    from zhcls.config import load_config
    from zhcls.training.train import train

    root, model, data = ddp_setup
    monkeypatch_module.setenv("ZHCLS_RANK_DIGEST_DIR", str(root / "digest-single"))
    config = load_config(REPO / "configs" / "tiny.yaml", [
        "--model.pretrained", str(model), "--train.batch_size", str(PER_DEVICE * WORLD), *COMMON])
    result = train(config, data, root / "run-single")
    return result, root / "digest-single"


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def _ranks(digests: Path) -> list[dict]:
    return [json.loads((digests / f"rank{r}.json").read_text("utf-8")) for r in range(WORLD)]


def _train_losses(out: Path) -> list[float]:
    logs = json.loads((out / "history.json").read_text("utf-8"))["log_history"]
    return [e["loss"] for e in logs if "loss" in e]


def test_torchrun_trains_and_ranks_end_identical(torchrun_run):
    proc, out, digests = torchrun_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = _ranks(digests)
    assert (r0["rank"], r1["rank"], r0["world_size"]) == (0, 1, WORLD)
    assert r0["global_step"] == r1["global_step"] == EPOCHS * N_TRAIN // (WORLD * PER_DEVICE)
    assert r0["last_step_digest"] == r1["last_step_digest"] is not None
    assert r0["final_digest"] == r1["final_digest"]
    history = json.loads((out / "history.json").read_text("utf-8"))["log_history"]
    assert any("loss_scl" in h for h in history) and any("eval_accuracy" in h for h in history)


def test_each_rank_sees_its_own_half_of_every_global_batch(torchrun_run, single_run):
    _, _, digests = torchrun_run
    r0, r1 = _ranks(digests)
    single = _ranks_single(single_run[1])
    per_epoch = 96 // WORLD  # 6 steps of 8 rows per rank
    assert not set(r0["rows"][:per_epoch]) & set(r1["rows"][:per_epoch])
    assert len(set(r0["rows"][:per_epoch]) | set(r1["rows"][:per_epoch])) == 96
    for step in range(12):  # the global batch of each step is the one-process batch
        ddp = r0["rows"][step * PER_DEVICE:(step + 1) * PER_DEVICE] + \
            r1["rows"][step * PER_DEVICE:(step + 1) * PER_DEVICE]
        one = single["rows"][step * PER_DEVICE * WORLD:(step + 1) * PER_DEVICE * WORLD]
        assert sorted(ddp) == sorted(one), step


def _logged_lrs(out: Path) -> dict[int, float]:
    logs = json.loads((out / "history.json").read_text("utf-8"))["log_history"]
    return {e["step"]: e["learning_rate"] for e in logs if "learning_rate" in e}


def _assert_warmup_fraction(proc, out: Path, total: int) -> None:
    """The LR peaks after WARMUP x total of the real optimizer steps, decays to ~0 by the end,
    and the plan logged at start names the same numbers."""
    lrs = _logged_lrs(out)
    assert sorted(lrs) == list(range(1, total + 1))  # logging_steps 1: every step, no more
    peak = max(lrs, key=lrs.get)
    # The LR logged at step s drove optimizer step s - 1: warm-up took peak - 1 steps.
    assert peak - 1 == round(WARMUP * total), (peak, total, lrs)
    assert lrs[peak] == pytest.approx(5e-3) and lrs[1] == 0.0
    # Linear decay reaches zero exactly at the real end (the last step runs one step short).
    assert lrs[total] == pytest.approx(lrs[peak] / (total - (peak - 1)))
    assert (f"schedule: {WORLD} processes x per-device batch {PER_DEVICE} x grad_accum 1 = "
            f"global batch {WORLD * PER_DEVICE}; {total // EPOCHS} optimizer steps per epoch, "
            f"{total} total steps ({EPOCHS} epochs), {round(WARMUP * total)} warm-up steps"
            ) in proc.stderr


def test_lr_peaks_at_the_warmup_fraction_of_the_real_steps(torchrun_run):
    proc, out, _ = torchrun_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    total = EPOCHS * math.ceil(N_TRAIN / (WORLD * PER_DEVICE))  # 2 x 6 optimizer steps
    _assert_warmup_fraction(proc, out, total)


# --- train.label_aware_batches under DDP ---

LABEL_AWARE_SIZES = (33, 31, 35)  # odd classes: chunks of 3, batches of varying size


@pytest.fixture(scope="module")
def label_aware_run(ddp_setup):
    root, model, _ = ddp_setup
    data = _write_unique_dataset(root / "data-odd", LABEL_AWARE_SIZES)
    return _torchrun(root, model, data, "label-aware", [
        "--train.label_aware_batches", "true", "--train.eval_steps", "7",
        "--train.evaluate_test", "false", "--train.tensorboard", "false"])


def _epochs(rank: dict) -> list[list[str]]:
    bounds = [*rank["epoch_starts"], len(rank["rows"])]
    return [rank["rows"][a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


@pytest.mark.slow
def test_label_aware_batches_cover_the_training_set_once_per_epoch(label_aware_run):
    proc, out, digests = label_aware_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_train = sum(LABEL_AWARE_SIZES)
    total = EPOCHS * math.ceil(n_train / (WORLD * PER_DEVICE))  # 2 x 7 steps
    r0, r1 = _ranks(digests)
    assert r0["global_step"] == r1["global_step"] == total
    (a0, a1), (b0, b1) = _epochs(r0), _epochs(r1)
    for rank0, rank1 in ((a0, b0), (a1, b1)):  # one epoch: both ranks' rows together
        seen = rank0 + rank1
        assert len(seen) == len(set(seen)) == n_train  # every training example exactly once
        assert not set(rank0) & set(rank1)
    assert set(a0 + b0) == set(a1 + b1)
    assert a0 != a1 and set(a0) != set(a1)  # a new order and a new share every epoch
    _assert_warmup_fraction(proc, out, total)


def _ranks_single(digests: Path) -> dict:
    return json.loads((digests / "rank0.json").read_text("utf-8"))


def test_only_rank0_writes(torchrun_run):
    proc, out, digests = torchrun_run
    writes = [json.loads((digests / f"rank{r}.writes.json").read_text("utf-8"))
              for r in range(WORLD)]
    for rel in ("best/model.safetensors", "best/labels.json", "history.json", "metrics.json",
                "eval_test/metrics.json", "eval_test/report.txt"):
        assert (out / rel).is_file(), rel
    assert {"history.json", "metrics.json", "best", "eval_test/metrics.json"} <= set(writes[0])
    # Rank 1 writes only its own RNG state into the Trainer's checkpoints (needed to resume;
    # into checkpoints/.staging, which rank 0 renames); TensorBoard is checked on its own below.
    staged = [w.replace("checkpoints/.staging", "checkpoints", 1) for w in writes[1]
              if w != "checkpoints/.staging"]
    stray = [w for w in staged if not w.startswith("tensorboard") and not (
        w.startswith("checkpoints/checkpoint-")
        and (w.endswith("rng_state_1.pth") or "/" not in w.removeprefix("checkpoints/")))]
    assert writes[1] and not stray, stray


def test_only_rank0_writes_tensorboard(torchrun_run):
    _, out, digests = torchrun_run
    r0, r1 = _ranks(digests)
    events = list(out.rglob("*tfevents*"))  # events.out.tfevents.<time>.<host>.<pid>.<n>
    assert events and {int(e.name.split(".")[-2]) for e in events} == {r0["pid"]}
    writes = json.loads((digests / "rank1.writes.json").read_text("utf-8"))
    assert not [w for w in writes if "tfevents" in w or w.startswith("tensorboard")]


@requires_vocab  # the tolerance was set for the real-vocab tiny model
def test_matches_one_process_with_the_same_global_batch(torchrun_run, single_run):
    _, out, _ = torchrun_run
    result, _ = single_run
    np.testing.assert_allclose(_train_losses(out), _train_losses(result.output_dir), atol=1e-4)
    ddp_dev = json.loads((out / "metrics.json").read_text("utf-8"))["dev"]
    assert ddp_dev["loss"] == pytest.approx(result.dev_metrics["loss"], abs=5e-4)
    assert abs(ddp_dev["accuracy"] - result.dev_metrics["accuracy"]) <= 1 / 24 + 1e-9
    assert result.dev_metrics["accuracy"] > 0.5  # it learned something worth comparing


# --- gather_with_grad and the global-batch contrastive loss under a 2-process gloo group ---

SIZES = (3, 2)  # rows on rank 0 and rank 1: unequal on purpose


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    from zhcls.losses import SupConLoss
    from zhcls.training.distributed import gather_with_grad, is_distributed

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=WORLD)
    res: dict = {"is_distributed": is_distributed()}
    start = sum(SIZES[:rank])
    full = torch.arange(sum(SIZES) * 3, dtype=torch.float32).reshape(-1, 3)  # (5, 3)
    weights = torch.arange(1, sum(SIZES) + 1, dtype=torch.float32)[:, None]  # (5, 1)
    for scale in (1.0, 2.0):
        x = full[start:start + SIZES[rank]].clone().requires_grad_(True)
        gathered = gather_with_grad(x, grad_scale=scale)  # (5, 3)
        (gathered * weights).sum().backward()
        res[f"gathered_{scale}"], res[f"grad_{scale}"] = gathered.tolist(), x.grad.tolist()
    x = full[start:start + SIZES[rank]].clone().requires_grad_(True)
    other = torch.ones(sum(SIZES), 1)
    other[start:start + SIZES[rank]] = 0
    (gather_with_grad(x) * other).sum().backward()  # depends on the other rank's rows only
    res["grad_from_other_rows"] = x.grad.tolist()

    g = torch.Generator().manual_seed(0)  # the same global batch on every rank
    inputs, theta0 = torch.randn(8, 5, generator=g), torch.randn(5, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 2, 1, 2, 3, 3])
    local = slice(4 * rank, 4 * rank + 4)
    supcon = SupConLoss(temperature=0.5)
    for scale in (float(WORLD), 1.0):
        theta = theta0.clone().requires_grad_(True)
        feats = inputs[local] @ theta  # (4, 6)
        loss = supcon(gather_with_grad(feats, grad_scale=scale), gather_with_grad(labels[local]))
        loss.backward()
        dist.all_reduce(theta.grad)  # what DDP does: average the ranks' gradients
        res[f"global_loss_{scale}"], res[f"ddp_grad_{scale}"] = loss.item(), (theta.grad / WORLD).tolist()
    res["local_loss"] = supcon(inputs[local] @ theta0, labels[local]).item()
    Path(out_dir, f"w{rank}.json").write_text(json.dumps(res), encoding="utf-8")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory):
    import torch.multiprocessing as mp

    tmp = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(str(tmp / "init"), str(tmp)), nprocs=WORLD, join=True)
    return [json.loads((tmp / f"w{r}.json").read_text("utf-8")) for r in range(WORLD)]


def test_gather_values_in_rank_order(gloo_results):
    full = np.arange(sum(SIZES) * 3).reshape(-1, 3)
    for res in gloo_results:
        assert res["is_distributed"]
        np.testing.assert_array_equal(res["gathered_1.0"], full)


def test_gradients_reach_only_the_local_rows_scaled(gloo_results):
    weights = np.arange(1, sum(SIZES) + 1, dtype=float)[:, None]
    for rank, res in enumerate(gloo_results):
        start = sum(SIZES[:rank])
        expected = np.broadcast_to(weights[start:start + SIZES[rank]], (SIZES[rank], 3))
        np.testing.assert_allclose(res["grad_1.0"], expected)
        np.testing.assert_allclose(res["grad_2.0"], 2 * expected)
        np.testing.assert_array_equal(res["grad_from_other_rows"], 0.0)


def test_global_batch_scl_equals_one_process_on_the_global_batch(gloo_results):
    from zhcls.losses import SupConLoss

    g = torch.Generator().manual_seed(0)
    inputs, theta0 = torch.randn(8, 5, generator=g), torch.randn(5, 6, generator=g)
    labels = torch.tensor([0, 0, 1, 2, 1, 2, 3, 3])
    supcon = SupConLoss(temperature=0.5)
    theta = theta0.clone().requires_grad_(True)
    loss = supcon(inputs @ theta, labels)
    loss.backward()
    local = [supcon(inputs[4 * r:4 * r + 4] @ theta0, labels[4 * r:4 * r + 4]).item()
             for r in range(WORLD)]
    for rank, res in enumerate(gloo_results):
        assert res["global_loss_2.0"] == pytest.approx(loss.item(), rel=1e-5)
        assert res["local_loss"] == pytest.approx(local[rank], rel=1e-5)
        assert abs(res["local_loss"] - loss.item()) > 0.05  # contrast within the rank differs
        np.testing.assert_allclose(res["ddp_grad_2.0"], theta.grad.numpy(), rtol=1e-4, atol=1e-6)
        # Without the world-size scale the contrastive gradient would be halved.
        np.testing.assert_allclose(res["ddp_grad_1.0"], theta.grad.numpy() / WORLD, rtol=1e-4,
                                   atol=1e-6)


# --- TrainingArguments for DDP ---

def test_gloo_only_when_launched_on_cpu(monkeypatch):
    from zhcls.training.train import _ddp_backend

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert _ddp_backend() is None  # a single process must not name a backend
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert _ddp_backend() == ("gloo" if not torch.cuda.is_available() else None)


@pytest.mark.parametrize(("head", "representation", "objective", "expected"), [
    ("bert", "head", "ce", False), ("bert_CNN", "head", "ce", False),
    ("bert", "mlp", "ce", True), ("bert", "mlp", "ce+scl", False)])
def test_ddp_looks_for_unused_parameters_when_there_are_some(head, representation, objective,
                                                             expected):
    from zhcls.config import load_config
    from zhcls.training.train import _ddp_find_unused

    cfg = load_config(None, ["--model.head", head, "--objective.representation", representation,
                             "--objective.name", objective])
    assert _ddp_find_unused(cfg) is expected
