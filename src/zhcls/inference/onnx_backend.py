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
                 device: str = "auto", threads: int | None = None,
                 pool_path: str | Path | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.providers = providers_for(str(device))
        self.session = _session(ort, model_path, options, self.providers)
        # chunks exports: model.onnx gives window representations, pool.onnx pools + classifies
        self.pool = (_session(ort, pool_path, options, self.providers)
                     if pool_path is not None else None)
        self.pad_id = pad_id
        self.min_seq_len = max(1, int(min_seq_len))

    def logits(self, ids: list, batch_size: int) -> np.ndarray:
        """``ids``: an id list per text, or (chunks export) a list of windows per text."""
        from zhcls.modeling.forward import length_sorted_batches

        if self.pool is not None:
            return self._pooled_logits(ids, batch_size)
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

    def _pooled_logits(self, ids: list, batch_size: int) -> np.ndarray:
        """As :func:`zhcls.modeling.forward.forward_ids` for windows: at most ``batch_size``
        windows per run of the window graph, then one pooling run per group of texts."""
        from zhcls.data.dataset import is_windowed
        from zhcls.modeling.forward import window_groups

        if not ids:
            raise ZhclsError("no texts to classify")
        texts = ids if is_windowed(ids) else [[row] for row in ids]  # one window each
        out: np.ndarray | None = None
        for group in window_groups(texts, batch_size):
            windows = [w for i in group for w in texts[i]]
            reps = []
            for start in range(0, len(windows), batch_size):
                input_ids, mask = pad_numpy(windows[start:start + batch_size], self.pad_id,
                                            self.min_seq_len)
                reps.append(self.session.run(["representation"], {
                    "input_ids": input_ids, "attention_mask": mask})[0])  # (w, R)
            chunk_mask = np.zeros((len(group), len(windows)), dtype=bool)  # (B, W)
            start = 0
            for row, i in enumerate(group):
                chunk_mask[row, start:start + len(texts[i])] = True
                start += len(texts[i])
            logits = self.pool.run(["logits"], {"representation": np.concatenate(reps),
                                                "chunk_mask": chunk_mask})[0]  # (B, C)
            if out is None:
                out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
            out[group] = logits
        return out


def _session(ort, path: str | Path, options, providers: list[str]):
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ZhclsError(f"{path}: onnxruntime cannot load the model ({exc}); "
                         "export the checkpoint again") from None
