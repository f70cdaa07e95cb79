"""The model runners behind :class:`zhcls.inference.classifier.Classifier`: the
:class:`Backend` protocol (token ids to logits), :class:`TorchBackend` for a zhcls checkpoint,
the ONNX export's file names (the ONNX runner is :mod:`zhcls.inference.onnx_backend`) and
the token-limit checks of loading."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from zhcls.errors import ConfigError, ZhclsError

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"


class Backend(Protocol):
    """Turns token ids (unpadded, any lengths) into logits (N, C) float32 in input order."""

    name: str

    def logits(self, ids: list[list[int]], batch_size: int) -> np.ndarray: ...


class TorchBackend:
    """A PyTorch :class:`zhcls.modeling.model.ZhclsModel` run through
    :func:`zhcls.modeling.forward.forward_ids` (length-sorted batches, no grad; on GPU the
    arithmetic follows ``precision``, the checkpoint's ``train.precision``)."""

    name = "torch"

    def __init__(self, model, pad_id: int, precision: str = "auto"):
        self.model = model
        self.pad_id = pad_id
        self.precision = precision

    @property
    def device(self):
        return next(self.model.parameters()).device

    def logits(self, ids: list, batch_size: int) -> np.ndarray:
        """``ids``: one id list per text, or per text a list of windows (chunks)."""
        from zhcls.modeling.forward import forward_ids

        return forward_ids(self.model, ids, self.pad_id, batch_size,
                           precision=self.precision).logits


def is_onnx_dir(path: str | Path) -> bool:
    """True for a directory written by ``zhcls export --format onnx``."""
    return (Path(path) / ONNX_FILE).is_file()


def _long_text_spec(config, max_length: int):
    """The checkpoint's ``data.long_text`` settings at ``max_length`` (a ``max_length``
    override re-resolves the default head and stride; an explicit one that no longer fits is
    a ConfigError from :class:`zhcls.config.DataConfig`)."""
    import dataclasses

    from zhcls.data.dataset import LongTextSpec

    data = config.data
    if data.max_length != max_length:
        data = dataclasses.replace(data, max_length=max_length)
        try:
            data.validate()
        except ConfigError as exc:
            raise ConfigError(f"max_length {max_length}: {exc}; load with a larger "
                              "max_length or without the override") from None
    return LongTextSpec.from_config(data)


def _check_max_length(max_length: int, limit: int, path: Path) -> int:
    if not 2 < max_length <= limit:
        raise ZhclsError(f"{path}: max_length {max_length} is outside 3..{limit} (the encoder's "
                         "position limit); pick a value in that range")
    return max_length
