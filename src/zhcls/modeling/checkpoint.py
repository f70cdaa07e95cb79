"""The checkpoint directory: everything predict / serve / export / evaluate need.

Layout::

    model.safetensors     weights of the whole classifier (encoder.*, head.*, classifier.*)
    encoder_config.json   the encoder's Hugging Face config (rebuilds it without a download)
    tokenizer.json, tokenizer_config.json
    zhcls.yaml            the resolved run config (model / data / train / objective)
    labels.json           {"labels": [name of id 0, name of id 1, ...]}
    meta.json             format version, zhcls version, head, the command line, headline
                          metrics when known
    README.md             model card (:mod:`zhcls.modeling.model_card`)

The directory is written into a temporary sibling (``.NAME.tmp``) and renamed into place when
complete, so a kill -9 never leaves a half-written checkpoint under its real name; loading
checks ``meta.json``'s format version.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model

from zhcls._version import __version__
from zhcls.config import Config, config_from_dict
from zhcls.errors import CheckpointError
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_FILES = ("model.safetensors", "encoder_config.json", "zhcls.yaml", "labels.json")


@dataclass
class Checkpoint:
    """A loaded checkpoint directory."""

    path: Path
    model: Any  # ZhclsModel
    tokenizer: Any  # PreTrainedTokenizerBase
    config: Config
    labels: list[str]


def save_checkpoint(path: str | Path, model, tokenizer, config: Config, labels: list[str],
                    metrics: dict | None = None) -> Path:
    """Write a self-describing checkpoint directory (see module docstring), atomically: an
    existing checkpoint at ``path`` is replaced only once the new one is complete."""
    final = Path(path)
    path = final.with_name(f".{final.name}.tmp")
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    try:
        _write_checkpoint_files(path, model, tokenizer, config, labels, metrics)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    replace_dir(path, final)
    return final


def _write_checkpoint_files(path: Path, model, tokenizer, config: Config, labels: list[str],
                            metrics: dict | None) -> None:
    from zhcls.modeling.model_card import command_line, headline_metrics, write_model_card

    model = getattr(model, "module", model)  # unwrap DDP
    save_model(model, str(path / "model.safetensors"))
    (path / "encoder_config.json").write_text(model.encoder.config.to_json_string(), "utf-8")
    tokenizer.save_pretrained(str(path))
    config.save(path / "zhcls.yaml")
    _write_json(path / "labels.json", {"labels": list(labels)})
    meta = {"format": FORMAT_VERSION, "zhcls_version": __version__, "head": config.model.head,
            "num_labels": len(labels), "max_length": config.data.max_length,
            "command": command_line(sys.argv)}
    if metrics:
        meta["metrics"] = {split: headline_metrics(m) for split, m in metrics.items()}
    _write_json(path / "meta.json", meta)
    write_model_card(path)


def _fsync_tree(root: Path) -> None:
    for file in sorted(root.rglob("*")):
        if file.is_file():
            with file.open("rb") as f:
                os.fsync(f.fileno())
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(staged: str | Path, final: str | Path) -> Path:
    """Move the fully written directory ``staged`` to ``final`` (a sibling), replacing an
    existing ``final`` only after ``staged`` is synced to disk."""
    staged, final = Path(staged), Path(final)
    _fsync_tree(staged)
    old = final.with_name(f".{final.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(staged, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_json(path, obj)


def read_labels(path: str | Path) -> list[str]:
    data = json.loads((Path(path) / "labels.json").read_text(encoding="utf-8"))
    return list(data["labels"])


def read_config(path: str | Path) -> Config:
    import yaml

    raw = yaml.safe_load((Path(path) / "zhcls.yaml").read_text(encoding="utf-8"))
    return config_from_dict(raw, source=str(Path(path) / "zhcls.yaml"))


def check_checkpoint_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint directory not found")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        hint = (" (this looks like an encoder, not a zhcls checkpoint: train one with `zhcls "
                "train`, whose best model lands in OUT/best)") if (path / "config.json").is_file() else ""
        raise CheckpointError(f"{path}: not a zhcls checkpoint; missing {', '.join(missing)}{hint}")
    check_format(path)
    return path


def check_format(path: Path) -> None:
    """``meta.json``'s ``format`` must be one this zhcls reads (a missing meta.json is
    tolerated with a warning: hand-assembled checkpoints may lack it)."""
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        logger.warning("%s has no meta.json; assuming checkpoint format %d", path, FORMAT_VERSION)
        return
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path}: unreadable ({exc}); the checkpoint is damaged: "
                              "copy it again or retrain") from None
    found = meta.get("format") if isinstance(meta, dict) else None
    if not isinstance(found, int) or isinstance(found, bool) or not 1 <= found <= FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_path}: checkpoint format {found!r} (written by zhcls "
            f"{meta.get('zhcls_version', '?') if isinstance(meta, dict) else '?'}); this zhcls "
            f"{__version__} reads formats 1..{FORMAT_VERSION}: upgrade zhcls to load it")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    head: str | None = None) -> Checkpoint:
    """Load model, tokenizer, config and labels from a checkpoint directory.

    ``head``: the head the caller expects (e.g. from a config); a mismatch is an error.
    """
    from zhcls.modeling.encoder import encoder_from_config, load_tokenizer
    from zhcls.modeling.model import build_model

    path = check_checkpoint_dir(path)
    config = read_config(path)
    labels = read_labels(path)
    if head is not None and head != config.model.head:
        raise CheckpointError(f"{path}: checkpoint has head {config.model.head!r} but "
                              f"{head!r} was requested; use a config with model.head "
                              f"{config.model.head} or train a {head} model")
    encoder_cfg = json.loads((path / "encoder_config.json").read_text(encoding="utf-8"))
    model = build_model(encoder_from_config(encoder_cfg), config, len(labels))
    state = load_file(str(path / "model.safetensors"))
    if getattr(model.encoder, "pooler", "absent") is None:  # saved before the pooler was dropped
        state = {k: v for k, v in state.items() if not k.startswith("encoder.pooler.")}
    _check_state(path, model, state, config.model.head, len(labels))
    model.load_state_dict(state, strict=False)
    model.to(device).eval()
    tokenizer = load_tokenizer(str(path))
    return Checkpoint(path=path, model=model, tokenizer=tokenizer, config=config, labels=labels)


def _check_state(path: Path, model, state: dict, head: str, num_labels: int) -> None:
    expected = set(model.state_dict())
    missing = sorted(k for k in expected - set(state) if not k.endswith("position_ids"))
    unexpected = sorted(k for k in set(state) - expected if not k.endswith("position_ids"))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}/model.safetensors does not match head {head!r} from zhcls.yaml: "
            f"missing {missing[:4]}, unexpected {unexpected[:4]}. The weights were saved for a "
            "different head or encoder; do not edit model.head in a trained checkpoint"
        )
    found = state["classifier.weight"].shape[0]
    if found != num_labels:
        raise CheckpointError(f"{path}: classifier has {found} outputs but labels.json names "
                              f"{num_labels} labels")


def check_labels_match(ckpt_labels: list[str], class_names: list[str], where: str) -> None:
    """The dataset's class.txt must name the same classes in the same order."""
    if list(ckpt_labels) != list(class_names):
        raise CheckpointError(
            f"{where}: class.txt names {len(class_names)} classes {class_names[:6]} but the "
            f"checkpoint was trained on {len(ckpt_labels)} classes {list(ckpt_labels)[:6]}; "
            "evaluate on the dataset the model was trained on (same class.txt, same order)"
        )
