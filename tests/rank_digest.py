"""Test instrumentation (not part of zhcls): per-rank digests of what training did.

:func:`install` patches :class:`zhcls.training.trainer.ZhclsTrainer` so that a trainer built
while ``ZHCLS_RANK_DIGEST_DIR`` is set writes ``rank<N>.json`` there: the weights' digest after
the last optimisation step and after training (best model reloaded), the pid, a fingerprint of
every training row this rank computed a loss on and where each epoch's rows begin. Under DDP it
also audits, from its creation on, which files this process creates (``os.mkdir``) or opens for
writing from Python inside the run directory (``rank<N>.writes.json`` at exit). ``conftest.py``
installs it in the test process; ``digest_hooks/sitecustomize.py`` in torchrun's workers.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

ENV = "ZHCLS_RANK_DIGEST_DIR"


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over the model's parameters and buffers (names, dtypes, bytes)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class RankDigestCallback(TrainerCallback):
    """Writes ``rank<N>.json`` with the weights'
    digest after the last optimisation step and after training (best model reloaded), the
    pid, a fingerprint of every training row this rank computed a loss on and where each
    epoch's rows begin. Under DDP it
    also audits, from its creation on, which files this process creates (``os.mkdir``) or
    opens for writing from Python inside the run directory, and writes them to
    ``rank<N>.writes.json`` when the process exits (C++ writers such as ``torch.save``'s zip
    writer or safetensors are not seen; their directories are)."""

    def __init__(self, out_dir: Path, args):
        self.out_dir = out_dir
        self.rows: list[str] = []
        self.epoch_starts: list[int] = []  # index into rows where each epoch begins
        self.last_step_digest: str | None = None
        self.writes: list[str] = []
        if args.world_size > 1:
            sys.addaudithook(self._audit_hook(os.path.abspath(Path(args.output_dir).parent)))
            atexit.register(self._dump_writes, args.process_index)

    def record_batch(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> None:
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist(), strict=True):
            row = [t for t, m in zip(ids, mask, strict=True) if m]
            self.rows.append(hashlib.sha1(str(row).encode()).hexdigest()[:16])

    def _audit_hook(self, root: str):
        write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT

        def hook(event: str, ev_args: tuple) -> None:
            if event == "open":
                path, mode, flags = ev_args
                writing = any(c in mode for c in "wax+") if isinstance(mode, str) else \
                    isinstance(flags, int) and bool(flags & write_flags)
            elif event in ("os.mkdir", "os.rename", "os.replace"):
                path, writing = ev_args[1] if event != "os.mkdir" else ev_args[0], True
            else:
                return
            if writing and isinstance(path, str | os.PathLike):
                full = os.path.abspath(os.fspath(path))
                if isinstance(full, str) and full.startswith(root + os.sep):
                    self.writes.append(os.path.relpath(full, root))

        return hook

    def _dump_writes(self, rank: int) -> None:
        path = self.out_dir / f"rank{rank}.writes.json"
        path.write_text(json.dumps(sorted(set(self.writes))), encoding="utf-8")

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_starts.append(len(self.rows))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if model is not None:
            self.last_step_digest = weights_digest(model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"rank": args.process_index, "world_size": args.world_size, "pid": os.getpid(),
                  "global_step": state.global_step, "last_step_digest": self.last_step_digest,
                  "final_digest": weights_digest(model) if model is not None else None,
                  "rows": self.rows, "epoch_starts": self.epoch_starts}
        path = self.out_dir / f"rank{args.process_index}.json"
        path.write_text(json.dumps(record), encoding="utf-8")


def install() -> None:
    """Patch ZhclsTrainer once: add the callback when ``$ZHCLS_RANK_DIGEST_DIR`` is set at
    construction, and record every training batch's rows."""
    from zhcls.training.trainer import ZhclsTrainer

    if getattr(ZhclsTrainer, "_digest_installed", False):
        return
    init, compute_loss = ZhclsTrainer.__init__, ZhclsTrainer.compute_loss

    def patched_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._digest = None
        if os.environ.get(ENV):
            self._digest = RankDigestCallback(Path(os.environ[ENV]), self.args)
            self.add_callback(self._digest)

    def patched_compute_loss(self, model, inputs, *args, **kwargs):
        if model.training and getattr(self, "_digest", None) is not None:
            self._digest.record_batch(inputs["input_ids"], inputs["attention_mask"])
        return compute_loss(self, model, inputs, *args, **kwargs)

    ZhclsTrainer.__init__ = patched_init
    ZhclsTrainer.compute_loss = patched_compute_loss
    ZhclsTrainer._digest_installed = True
