"""DDP on CPU with gloo: ``torchrun --nproc_per_node 2 -m zhcls train`` on a tiny model
(identical weights on both ranks, disjoint data, only rank 0 writes, same result as one
process with the same global batch), and ``gather_with_grad`` / the global-batch SCL
under a 2-process gloo group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import CLASSES, REPO, SENTENCES, requires_vocab

WORLD = 2
PER_DEVICE = 8
COMMON = ["--model.dropout", "0", "--train.max_steps", "12", "--train.eval_steps", "6",
          "--train.logging_steps", "3", "--train.lr", "5e-3", "--train.precision", "fp32",
          "--objective.name", "ce+scl", "--objective.scl_global_batch", "true",
          "--train.tensorboard", "true", "--train.report", "false"]


def _write_unique_dataset(root: Path) -> Path:
    """3 classes, 96/24/24 distinct sentences (a class sentence + a distinct issue number)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(CLASSES), encoding="utf-8")
    rng = np.random.default_rng(0)
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for label, texts in SENTENCES.items():
        combos = [f"{t}第{n}期\t{label}" for t in texts for n in range(1, 41)]
        combos = [combos[i] for i in rng.permutation(len(combos))]
        splits["train"] += combos[:32]
        splits["dev"] += combos[32:40]
        splits["test"] += combos[40:48]
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


@pytest.fixture(scope="module")
def torchrun_run(ddp_setup):
    root, model, data = ddp_setup
    out, digests = root / "run-ddp", root / "digest-ddp"
    env = {**os.environ, "ZHCLS_RANK_DIGEST_DIR": str(digests), "OMP_NUM_THREADS": "1",
           "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           "--nproc_per_node", str(WORLD), "-m", "zhcls", "train",
           "--config", str(REPO / "configs" / "tiny.yaml"), "--model.pretrained", str(model),
           "--data", str(data), "--out", str(out), "--train.batch_size", str(PER_DEVICE), *COMMON]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    return proc, out, digests


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
    assert r0["global_step"] == r1["global_step"] == 12
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
    # Rank 1 writes only its own RNG state into the Trainer's checkpoints (needed to resume);
    # TensorBoard is checked on its own below.
    stray = [w for w in writes[1] if not w.startswith("tensorboard") and not (
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
