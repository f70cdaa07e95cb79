"""An exponential moving average (EMA) of the weights, evaluated and kept instead of them.

With ``train.ema_decay`` d > 0, after every optimizer step n (n = 0, 1, ...) each trainable
parameter's average moves towards it:

    d_n = min(d, n / (n + 1))
    ema ← d_n · ema + (1 − d_n) · θ         (torch.optim.swa_utils.get_ema_multi_avg_fn)

so the first update copies θ (nothing of the initialisation is kept), the average is the plain
mean of all the weights so far until n reaches d / (1 − d) (d 0.99: step 99), and from then
on an exponential average over about 1 / (1 − d) recent steps. Every dev evaluation,
and so the choice of the best checkpoint and early stopping, is of the average; the best
checkpoint's saved weights are the average's, so ``predict`` / ``export`` / ``serve`` use it
with no option. Training itself continues from the raw weights θ, which stay in the Trainer
checkpoint's model files; the average is stored beside them (``ema.safetensors``, with its
update count) so a resume continues both. Buffers (none trainable) are not averaged.

Polyak & Juditsky (1992), "Acceleration of stochastic approximation by averaging"; the
running-mean start keeps a short run's average from depending on the decay's warm-up (with
TensorFlow's ``(1 + n) / (10 + n)`` a 0.99 and a 0.999 average are the same model for the first
~900 steps). Hand-written because
``transformers.Trainer`` has no weight averaging, and ``torch.optim.swa_utils.AveragedModel``
keeps a second copy of the whole module that the Trainer would neither evaluate nor
checkpoint (docs/design.md).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn
from transformers import TrainerCallback

from zhcls.errors import CheckpointError

logger = logging.getLogger(__name__)

EMA_FILE = "ema.safetensors"


class WeightAverage:
    """The EMA of ``model``'s trainable parameters (fp32 copies on the parameters' device)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:  # internal: config validation names the flag
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {name: p.detach().clone().float()
                       for name, p in model.named_parameters() if p.requires_grad}

    def _params(self, model: torch.nn.Module) -> list[torch.Tensor]:
        params = dict(model.named_parameters())
        missing = sorted(set(self.shadow) - set(params))
        assert not missing, f"averaged parameters not in the model: {missing[:3]}"
        return [params[name] for name in self.shadow]

    def current_decay(self) -> float:
        """d_n of the next update: ``n / (n + 1)`` (a running mean), capped at ``decay``."""
        return min(self.decay, self.updates / (self.updates + 1))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """One EMA step towards ``model``'s current parameters."""
        current = [p.detach().float() for p in self._params(model)]
        get_ema_multi_avg_fn(self.current_decay())(list(self.shadow.values()), current, None)
        self.updates += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Overwrite ``model``'s parameters with the average."""
        for p, avg in zip(self._params(model), self.shadow.values(), strict=True):
            p.copy_(avg.to(p.dtype))

    @contextlib.contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """``model`` holds the average inside the block and its own weights again after."""
        params = self._params(model)
        saved = [p.detach().clone() for p in params]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, raw in zip(params, saved, strict=True):
                    p.copy_(raw)

    def save(self, directory: str | Path) -> Path:
        """Write the average and its update count to ``directory/ema.safetensors``."""
        from safetensors.torch import save_file

        path = Path(directory) / EMA_FILE
        tensors = {name: t.detach().cpu().contiguous() for name, t in self.shadow.items()}
        save_file(tensors, str(path), metadata={"updates": str(self.updates),
                                                "decay": repr(self.decay)})
        return path

    def load(self, directory: str | Path) -> None:
        """Read what :meth:`save` wrote; refuse a file of another model or none at all."""
        from safetensors import safe_open

        path = Path(directory) / EMA_FILE
        if not path.is_file():
            raise CheckpointError(
                f"{directory}: expected {EMA_FILE} (the weight average of train.ema_decay "
                f"{self.decay}) in this checkpoint, found none; it was written by a run "
                "without train.ema_decay. Resume it with the same train.ema_decay, or start "
                "a new run")
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            if names != set(self.shadow):
                raise CheckpointError(f"{path}: the weight average holds {len(names)} tensors, "
                                 f"the model {len(self.shadow)} trainable parameters; it is "
                                 "of another model")
            for name, avg in self.shadow.items():
                avg.copy_(f.get_tensor(name))
            self.updates = int((f.metadata() or {}).get("updates", 0))
        logger.info("weight average (train.ema_decay %g) read from %s, %d updates",
                    self.decay, path, self.updates)


class WeightAveraging:
    """``transformers.Trainer`` mixin: with ``self.weight_average`` set (a
    :class:`WeightAverage`), dev evaluations see the average, each checkpoint stores it, a
    resume reads it back and the best model loaded at the end is the best checkpoint's
    average. ``None`` (the default): the Trainer unchanged."""

    weight_average: WeightAverage | None = None

    def evaluate(self, *args, **kwargs):
        if self.weight_average is None:
            return super().evaluate(*args, **kwargs)
        with self.weight_average.swapped_in(self.model):
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        super()._save_checkpoint(model, trial)
        if self.weight_average is not None and self.args.should_save:
            # the directory the Trainer just wrote (zhcls's staging one while it stages)
            self.weight_average.save(Path(self._get_output_dir(trial))
                                     / f"checkpoint-{self.state.global_step}")

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if self.weight_average is not None:  # a resume continues the average too
            self.weight_average.load(resume_from_checkpoint)

    def _load_best_model(self) -> None:
        super()._load_best_model()  # the best checkpoint's raw weights, then its average
        if self.weight_average is not None:
            self.weight_average.load(self.state.best_model_checkpoint)
            self.weight_average.copy_to(self.model)


class WeightAverageCallback(TrainerCallback):
    """Updates the trainer's :class:`WeightAverage` after every optimizer step (the Trainer
    fires ``on_step_end`` once per step, after the update, under gradient accumulation too).
    If no checkpoint was ever chosen as best, the model ends holding the average."""

    def __init__(self, trainer: WeightAveraging):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.weight_average.update(self.trainer.model)

    def on_train_end(self, args, state, control, **kwargs):
        if state.best_model_checkpoint is None:
            self.trainer.weight_average.copy_to(self.trainer.model)
