"""Run an exported classifier (``model.onnx``: input_ids, attention_mask → logits) on
onnxruntime with the same batching as the PyTorch path: length-sorted batches, dynamic
padding, results restored to input order."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

EXPORT_INFO = "export.json"


def read_export_info(path: str | Path) -> dict:
    """``export.json`` of an ONNX export directory (written by :mod:`zhcls.inference.export`)."""
    file = Path(path) / EXPORT_INFO
    if not file.is_file():
        raise ZhclsError(f"{path}: {EXPORT_INFO} not found; this directory was not written by "
                         "`zhcls export --format onnx` (export the checkpoint again)")
    try:
        info = json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZhclsError(f"{file}: not valid UTF-8 JSON ({exc}); export the checkpoint "
                         "again") from None
    if not isinstance(info, dict):
        raise ZhclsError(f"{file}: expected a JSON object; export the checkpoint again")
    for key in ("min_seq_len", "max_position_embeddings"):
        if key not in info:
            raise ZhclsError(f"{file}: missing key {key!r}; export the checkpoint again")
    return info


def pad_numpy(seqs: list[list[int]], pad_id: int, min_len: int = 1
              ) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest sequence (at least ``min_len``): :func:`zhcls.data.dataset.
    pad_ids`, the padder training uses."""
    from zhcls.data.dataset import pad_ids

    return pad_ids(seqs, pad_id, min_len)


def providers_for(device: str) -> list[str]:
    """onnxruntime execution providers for ``auto`` | ``cpu`` | ``cuda[:N]``."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise ZhclsError(f"device {device!r} requested but this onnxruntime has no CUDA provider "
                         f"(available: {available}); install onnxruntime-gpu or use cpu")
    if device.startswith("cuda") or (device == "auto" and "CUDAExecutionProvider" in available):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device not in ("auto", "cpu"):
        raise ZhclsError(f"unknown device {device!r}; expected auto, cpu or cuda[:N]")
    return ["CPUExecutionProvider"]


class OnnxBackend:
    """An onnxruntime session over an exported classifier.

    ``min_seq_len``: batches are padded to at least this many tokens (a CNN head's widest
    kernel); padding is masked, so it does not change the result.
    """

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, pad_id: int, min_seq_len: int = 1,
                 device: str = "auto", threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.providers = providers_for(str(device))
        try:
            self.session = ort.InferenceSession(str(model_path), options,
                                                providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ZhclsError(f"{model_path}: onnxruntime cannot load the model ({exc}); "
                             "export the checkpoint again") from None
        self.pad_id = pad_id
        self.min_seq_len = max(1, int(min_seq_len))

    def logits(self, ids: list[list[int]], batch_size: int) -> np.ndarray:
        from zhcls.modeling.forward import length_sorted_batches

        out: np.ndarray | None = None
        for batch in length_sorted_batches([len(x) for x in ids], batch_size):
            input_ids, mask = pad_numpy([ids[i] for i in batch], self.pad_id, self.min_seq_len)
            logits = self.session.run(["logits"], {"input_ids": input_ids,
                                                   "attention_mask": mask})[0]  # (B, C)
            if out is None:
                out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
            out[batch] = logits
        if out is None:
            raise ZhclsError("no texts to classify")
        return out
