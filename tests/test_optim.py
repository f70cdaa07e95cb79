"""train.optimizer: bertadam — the research optimiser, checked against a hand-rolled
reference, its step size against AdamW's, and wired into real training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_config
from zhcls.training.optim import BertAdam, research_schedule, warmup_linear

B1, B2, EPS = 0.9, 0.999, 1e-6


def reference_bertadam(params: list[np.ndarray], grads_fn, steps: int, lr: float, warmup: float,
                       decays: list[float], max_norm: float) -> list[np.ndarray]:
    """BertAdam written out in numpy from the research code's formulas, one loop per step."""
    params = [p.astype(np.float64).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(steps):
        progress = t / steps
        factor = progress / warmup if progress < warmup else max((progress - 1) / (warmup - 1), 0)
        for i, g in enumerate(grads_fn(params)):
            norm = np.sqrt((g ** 2).sum())
            g = g * min(1.0, max_norm / (norm + 1e-6))
            m[i] = B1 * m[i] + (1 - B1) * g
            v[i] = B2 * v[i] + (1 - B2) * g * g
            update = m[i] / (np.sqrt(v[i]) + EPS) + decays[i] * params[i]
            params[i] = params[i] - lr * factor * update
    return params


def toy_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(16, 3))
    y = x @ np.array([1.5, -2.0, 0.5]) + 3.0

    def grads(params):  # least squares with a large scale so clipping is active
        w, b = params
        err = x @ w + b - y  # (16,)
        return [10 * x.T @ err / len(y), np.array([10 * err.mean()])]

    return [rng.normal(size=3), np.zeros(1)], grads


def test_bertadam_with_research_schedule_equals_the_reference():
    init, grads = toy_problem()
    steps, lr, warmup = 40, 0.05, 0.1
    expected = reference_bertadam(init, grads, steps, lr, warmup, [0.01, 0.0], max_norm=1.0)
    w = torch.tensor(init[0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor(init[1], dtype=torch.float64, requires_grad=True)
    opt = BertAdam([{"params": [w], "weight_decay": 0.01}, {"params": [b], "weight_decay": 0.0}],
                   lr=lr)
    sched = research_schedule(opt, steps, warmup)
    for _ in range(steps):
        gw, gb = grads([w.detach().numpy(), b.detach().numpy()])
        w.grad, b.grad = torch.from_numpy(gw), torch.from_numpy(gb)
        opt.step()
        sched.step()
    np.testing.assert_allclose(w.detach().numpy(), expected[0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b.detach().numpy(), expected[1], rtol=0, atol=1e-9)
    assert not np.allclose(expected[0], init[0])  # it moved


@pytest.mark.parametrize("steps", [1, 10, 100, 1000])
def test_step_is_larger_than_adams_by_the_missing_bias_correction(steps):
    """Same nominal lr, constant gradient: BertAdam's total movement over the first `steps`
    steps, divided by Adam's, follows (1 - b1^t) / sqrt(1 - b2^t) step by step."""
    def run(opt_cls, **kw):
        p = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = opt_cls([p], lr=1e-3, **kw)
        moves = []
        for _ in range(steps):
            before = p.detach().clone()
            p.grad = torch.ones(1, dtype=torch.float64)
            opt.step()
            moves.append(float((before - p.detach()).abs()))
        return moves

    bert = run(BertAdam, weight_decay=0.0, max_grad_norm=0.0)
    adam = run(torch.optim.Adam, betas=(B1, B2), eps=EPS)
    t = steps
    ratio = (1 - B1 ** t) / math.sqrt(1 - B2 ** t)
    assert bert[-1] / adam[-1] == pytest.approx(ratio, rel=1e-4)
    if steps == 10:
        assert bert[-1] / adam[-1] > 6  # a research lr takes ~6x larger steps early on


def test_schedule_shape():
    assert warmup_linear(0.0, 0.05) == 0.0
    assert warmup_linear(0.025, 0.05) == pytest.approx(0.5)
    assert warmup_linear(0.05, 0.05) == pytest.approx(1.0)
    assert warmup_linear(0.525, 0.05) == pytest.approx(0.5)
    assert warmup_linear(1.0, 0.05) == 0.0
    assert warmup_linear(0.5, 0.0) == pytest.approx(0.5)  # no warm-up: linear decay only


def test_training_with_bertadam_uses_it_and_logs_the_applied_lr(tiny_model, tiny_data, tmp_path):
    from zhcls.training.train import train

    cfg = tiny_config(tiny_model, train__optimizer="bertadam", train__max_steps=8,
                      train__logging_steps=1, train__warmup_ratio=0.25, train__lr=1e-3)
    result = train(cfg, tiny_data, tmp_path / "run")
    history = json.loads((result.output_dir / "history.json").read_text())["log_history"]
    lrs = [e["learning_rate"] for e in history if "learning_rate" in e and "loss" in e]
    # the log line of step k (1-based) shows the lr step k applied: warmup_linear((k-1) / 8)
    expected = [1e-3 * warmup_linear((k - 1) / 8, 0.25) for k in range(1, 9)]
    assert lrs == pytest.approx(expected[:len(lrs)], rel=1e-6)
    assert len(lrs) >= 6


def test_unknown_optimizer_is_a_config_error():
    from zhcls.config import load_config
    from zhcls.errors import ConfigError

    with pytest.raises(ConfigError, match="train.optimizer"):
        load_config(None, ["--train.optimizer", "sgd"])
