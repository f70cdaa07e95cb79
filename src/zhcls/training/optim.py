"""The research repos' optimiser, ``BertAdam``, for ``train.optimizer: bertadam``.

The research code zhcls replaces (Bert-Chinese-Text-Classification-Pytorch and the repos
built on it) trains with ``pytorch_pretrained.optimization.BertAdam``, vendored from
``pytorch_pretrained_bert``. Per parameter ``p`` with gradient ``g``, at optimizer step
``t = 0, 1, ...``::

    g  <- g * min(1, max_grad_norm / (||g||_2 + 1e-6))     clipping per parameter, not global
    m  <- b1 * m + (1 - b1) * g
    v  <- b2 * v + (1 - b2) * g * g
    u  =  m / (sqrt(v) + e)  +  weight_decay * p           decoupled decay, NO bias correction
    p  <- p - lr_t * u,       lr_t = lr * warmup_linear(t / t_total, warmup)

with ``e = 1e-6``, ``b1 = 0.9``, ``b2 = 0.999``, weight decay 0.01 except biases and
LayerNorm weights, and ``warmup_linear(x, w) = x / w`` for ``x < w``, else
``max((x - 1) / (w - 1), 0)`` (linear warm-up to the peak at ``w``, then linear decay to 0 at
``t_total``; the first step has lr 0).

Without bias correction the step is ``(1 - b1^t) / sqrt(1 - b2^t)`` times Adam's at the same
nominal ``lr``: 3.2x at t=1, 6.5x at t=10, 3.2x at t=100, 1.3x at t=1000, 1.0x from ~5000 on.
That is why a research config's ``lr 5e-5`` trains a short run harder than the same lr under
AdamW (``tests/test_optim.py`` checks this ratio).

Here ``BertAdam`` takes its learning rate from the param group, and :func:`research_schedule`
(a ``LambdaLR``) sets it to ``lr_t`` every step, so the learning rate the Trainer logs is the
one applied. Together they are exactly the research optimiser (a test compares them with a
hand-rolled reference).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn.utils import clip_grad_norm_
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

OPTIMIZERS = ("adamw", "bertadam")


def warmup_linear(progress: float, warmup: float) -> float:
    """The research schedule's multiplier at ``progress`` = step / total steps."""
    if progress < warmup:
        return progress / warmup
    if warmup >= 1.0:
        return 0.0
    return max((progress - 1.0) / (warmup - 1.0), 0.0)


class BertAdam(Optimizer):
    """Adam without bias correction, per-parameter gradient clipping and decoupled weight
    decay, as in the research code (formulas in the module docstring)."""

    def __init__(self, params: Iterable, lr: float, b1: float = 0.9, b2: float = 0.999,
                 e: float = 1e-6, weight_decay: float = 0.01, max_grad_norm: float = 1.0):
        if lr < 0 or not 0.0 <= b1 < 1.0 or not 0.0 <= b2 < 1.0 or e < 0:
            raise ValueError(f"invalid BertAdam settings: lr={lr}, b1={b1}, b2={b2}, e={e}")
        defaults = dict(lr=lr, b1=b1, b2=b2, e=e, weight_decay=weight_decay,
                        max_grad_norm=max_grad_norm)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["next_m"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["next_v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if group["max_grad_norm"] > 0:
                    clip_grad_norm_(p, group["max_grad_norm"])
                grad = p.grad
                next_m, next_v = state["next_m"], state["next_v"]
                next_m.mul_(group["b1"]).add_(grad, alpha=1 - group["b1"])
                next_v.mul_(group["b2"]).addcmul_(grad, grad, value=1 - group["b2"])
                update = next_m / (next_v.sqrt() + group["e"])
                if group["weight_decay"] > 0.0:
                    update = update + group["weight_decay"] * p
                p.add_(update, alpha=-group["lr"])
                state["step"] += 1
        return loss


def research_schedule(optimizer: Optimizer, total_steps: int, warmup: float) -> LambdaLR:
    """``lr_t = lr * warmup_linear(t / total_steps, warmup)`` at optimizer step ``t``."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= warmup <= 1.0:
        raise ValueError(f"warmup must be in [0, 1], got {warmup}")
    # warmup 0: the full lr from the first step, then linear decay (x < 0 never holds)

    def factor(step: int) -> float:
        return warmup_linear(step / total_steps, warmup)

    return LambdaLR(optimizer, factor)
