"""The checkpoint directory: everything predict / serve / export / evaluate need.

Layout::

    model.safetensors     weights of the whole classifier (encoder.*, head.*, classifier.*)
    encoder_config.json   the encoder's Hugging Face config (rebuilds it without a download)
    tokenizer.json, tokenizer_config.json
    zhcls.yaml            the resolved run config (model / data / train / objective)
    labels.json           {"labels": [name of id 0, name of id 1, ...]}
    meta.json             format version, zhcls version, head, task, the command line,
                          headline metrics when known
    thresholds.json       multi-label only: the decision (:func:`read_thresholds`)
    README.md             model card (:mod:`zhcls.modeling.model_card`)

The directory is written into a temporary sibling (``.NAME.tmp``) and renamed into place when
complete, so a kill -9 never leaves a half-written checkpoint under its real name; loading
checks ``meta.json``'s format version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_model

from zhcls._version import __version__
from zhcls.config import Config, config_from_dict
from zhcls.errors import CheckpointError
from zhcls.utils import atomic_write_json, missing_path_message, replace_dir

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
LABELS_DIGEST_KEY = "zhcls_labels_sha256"
REQUIRED_FILES = ("model.safetensors", "encoder_config.json", "zhcls.yaml", "labels.json")
THRESHOLDS_FILE = "thresholds.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint directory."""

    path: Path
    model: Any  # ZhclsModel
    tokenizer: Any  # PreTrainedTokenizerBase
    config: Config
    labels: list[str]


def save_checkpoint(path: str | Path, model, tokenizer, config: Config, labels: list[str],
                    metrics: dict | None = None, thresholds=None,
                    tuned_on: str | None = "dev") -> Path:
    """Write a self-describing checkpoint directory (see module docstring), atomically: an
    existing checkpoint at ``path`` is replaced only once the new one is complete.

    ``thresholds`` (``data.task: multi_label`` only): one decision threshold per class, as a
    (C,) array / sequence in label-id order or ``{class name: threshold}``; None gives every
    class ``decision.threshold``. They are written to ``thresholds.json`` with
    ``decision.at_least_one`` and ``tuned_on`` (the split they were tuned on; None when not
    tuned)."""
    decision = _decision_json(config, labels, thresholds, tuned_on)
    final = Path(path)
    path = final.with_name(f".{final.name}.tmp")
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    try:
        if decision is not None:  # before the card, which says what the thresholds are of
            atomic_write_json(path / THRESHOLDS_FILE, decision)
        _write_checkpoint_files(path, model, tokenizer, config, labels, metrics)
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    replace_dir(path, final)
    return final


def _write_checkpoint_files(path: Path, model, tokenizer, config: Config, labels: list[str],
                            metrics: dict | None) -> None:
    from zhcls.modeling.model_card import card_metrics, command_line, write_model_card

    model = getattr(model, "module", model)  # unwrap DDP
    save_model(model, str(path / "model.safetensors"), metadata=weights_metadata(labels))
    (path / "encoder_config.json").write_text(model.encoder.config.to_json_string(), "utf-8")
    tokenizer.save_pretrained(str(path))
    config.save(path / "zhcls.yaml")
    atomic_write_json(path / "labels.json", {"labels": list(labels)})
    meta = {"format": FORMAT_VERSION, "zhcls_version": __version__, "head": config.model.head,
            "num_labels": len(labels), "max_length": config.data.max_length,
            "command": command_line(sys.argv), "labels_sha256": labels_digest(labels)}
    if config.data.task == "multi_label":
        meta["task"] = "multi_label"
    if metrics:
        meta["metrics"] = {split: card_metrics(m) for split, m in metrics.items()}
    atomic_write_json(path / "meta.json", meta)
    write_model_card(path)


def _decision_json(config: Config, labels: list[str], thresholds, tuned_on: str | None
                   ) -> dict | None:
    """The content of ``thresholds.json`` (None for a single-label checkpoint)."""
    if config.data.task != "multi_label":
        if thresholds is not None:
            raise ValueError("save_checkpoint: thresholds are for data.task multi_label, but "
                             f"the config's data.task is {config.data.task!r}")
        return None
    default = float(config.decision.threshold)
    if thresholds is None:
        values, tuned_on = [default] * len(labels), None
    elif isinstance(thresholds, dict):
        if set(thresholds) != set(labels):
            raise ValueError(f"save_checkpoint: thresholds name {sorted(thresholds)[:6]}, "
                             f"expected exactly the labels {list(labels)[:6]}")
        values = [float(thresholds[name]) for name in labels]
    else:
        values = [float(x) for x in np.asarray(thresholds, dtype=np.float64).reshape(-1)]
        if len(values) != len(labels):
            raise ValueError(f"save_checkpoint: {len(values)} thresholds for {len(labels)} "
                             "labels")
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"save_checkpoint: thresholds must lie in [0, 1], got {values}")
    return {"task": "multi_label", "thresholds": dict(zip(labels, values, strict=True)),
            "default": default, "at_least_one": bool(config.decision.at_least_one),
            "tuned_on": tuned_on}


def read_thresholds(path: str | Path, labels: list[str], task: str | None = None
                    ) -> tuple[np.ndarray, bool] | None:
    """The multi-label decision of the checkpoint (or ONNX export) directory ``path``:
    per-class thresholds (C,) float64 in the order of ``labels`` (labels.json) and
    ``at_least_one``; None for a single-label model.

    ``path`` is the directory or the file itself. ``task``: the checkpoint's ``data.task``
    (None reads zhcls.yaml when there is one, else ``auto``). ``multi_label`` needs
    ``thresholds.json``; ``single_label`` must not have one; ``auto`` (a config saved before
    the task was resolved) follows the file's presence."""
    path = Path(path)
    file = path / THRESHOLDS_FILE if path.is_dir() else path
    if task is None:  # the checkpoint's own task; a lone file follows its presence
        task = read_config(file.parent).data.task if (file.parent / "zhcls.yaml").is_file() \
            else "auto"
    if not file.is_file():
        if task == "multi_label":
            raise CheckpointError(f"{file}: not found, but zhcls.yaml says data.task "
                                  "multi_label; a multi-label checkpoint keeps its per-class "
                                  "thresholds there: restore it from the run")
        return None
    if task == "single_label":
        raise CheckpointError(f"{file}: a multi-label decision file, but zhcls.yaml says "
                              "data.task single_label; delete the file or restore the "
                              "zhcls.yaml written with it")
    fix = "restore it from the run (it is written with the weights)"
    data = _read_json(file, fix)
    values = data.get("thresholds") if isinstance(data, dict) else None
    if not isinstance(values, dict) or data.get("task", "multi_label") != "multi_label":
        raise CheckpointError(f'{file}: expected {{"task": "multi_label", "thresholds": '
                              f"{{class name: number}}, ...}}, found {str(data)[:80]}; {fix}")
    if set(values) != set(labels):
        missing = [n for n in labels if n not in values]
        extra = [n for n in values if n not in labels]
        raise CheckpointError(f"{file}: thresholds must name exactly the classes of "
                              f"labels.json; missing {missing[:6]}, unknown {extra[:6]}; {fix}")
    out = np.array([_unit_float(values[n], f"{file}: threshold of {n!r}", fix) for n in labels])
    at_least_one = data.get("at_least_one", False)
    if not isinstance(at_least_one, bool):
        raise CheckpointError(f'{file}: "at_least_one" must be true or false, found '
                              f"{at_least_one!r}; {fix}")
    return out, at_least_one


def _unit_float(value: Any, where: str, fix: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise CheckpointError(f"{where} must be a number in [0, 1], found {value!r}; {fix}")
    return float(value)


def labels_digest(labels: list[str]) -> str:
    """sha256 of the label list in label-id order (names and order both count)."""
    return hashlib.sha256(json.dumps(list(labels), ensure_ascii=False).encode("utf-8")).hexdigest()


def weights_metadata(labels: list[str]) -> dict[str, str]:
    """Stored in model.safetensors: ties the classifier's outputs to the label list."""
    return {LABELS_DIGEST_KEY: labels_digest(labels), "zhcls_num_labels": str(len(labels))}


def _read_json(file: Path, fix: str) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{file}: not valid UTF-8 JSON ({exc}); {fix}") from None
    except OSError as exc:
        raise CheckpointError(f"{file}: cannot read ({exc.strerror or exc})") from None


def read_labels(path: str | Path) -> list[str]:
    """``labels.json`` as a list of distinct non-empty names (label-id order)."""
    file = Path(path) / "labels.json"
    fix = "restore it from the run (it is written with the weights); do not edit it by hand"
    data = _read_json(file, fix)
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not labels or \
            not all(isinstance(x, str) and x for x in labels):
        raise CheckpointError(f'{file}: expected {{"labels": ["name of id 0", ...]}} with '
                              f"non-empty string names, found {str(data)[:80]}; {fix}")
    first: dict[str, int] = {}
    for i, name in enumerate(labels):
        if name in first:
            raise CheckpointError(f"{file}: label {name!r} appears twice (ids {first[name]} and "
                                  f"{i}); every class needs its own name; {fix}")
        first[name] = i
    return list(labels)


def read_config(path: str | Path) -> Config:
    import yaml

    file = Path(path) / "zhcls.yaml"
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{file}: not valid UTF-8 YAML ({detail}); restore the file "
                              "written with the checkpoint") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{file}: expected a mapping of sections (model, data, train, "
                              f"...), found {type(raw).__name__}; restore the file written with "
                              "the checkpoint")
    missing = [name for name in ("model", "data", "train", "objective") if name not in raw]
    if missing:  # every checkpoint has them: a file cut short at a line end parses as YAML
        raise CheckpointError(f"{file}: expected the sections model, data, train and "
                              f"objective, found no {', '.join(missing)} (the file is cut "
                              "short or edited); restore the file written with the checkpoint")
    return config_from_dict(raw, source=str(file))


def read_meta(path: str | Path) -> dict[str, Any]:
    """``meta.json`` (empty when absent: checkpoints of early versions); a format newer than
    this zhcls reads is an error."""
    file = Path(path) / "meta.json"
    if not file.is_file():
        logger.debug("%s: no meta.json; assuming checkpoint format %d", path, FORMAT_VERSION)
        return {}
    meta = _read_json(file, "restore it from the run, or delete it to skip the format check")
    fmt = meta.get("format") if isinstance(meta, dict) else None
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise CheckpointError(f"{file}: expected an object with an integer \"format\" >= 1, "
                              f"found {str(meta)[:80]}")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: checkpoint format {fmt} (written by zhcls {meta.get('zhcls_version', '?')}"
            f") is newer than the format {FORMAT_VERSION} this zhcls {__version__} reads; "
            "upgrade zhcls (pip install -U zhcls)")
    return meta


def check_checkpoint_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(missing_path_message(
            path, "checkpoint directory not found (the path does not exist)"))
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint directory, found a file")
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if missing:
        if all((path / "best" / f).is_file() for f in REQUIRED_FILES):
            hint = (f" (this is a run directory; its best model is {path / 'best'}: pass that "
                    "directory)")
        elif (path / "model.skops").is_file():
            raise CheckpointError(
                f"{path}: a `zhcls baseline` model (model.skops), not a neural checkpoint: "
                "zhcls predict, evaluate, report --baseline and label --teacher take it; "
                "export, explain and fine-tuning need a checkpoint from `zhcls train`")
        elif (path / "config.json").is_file():
            hint = (" (this looks like an encoder, not a zhcls checkpoint: train one with "
                    "`zhcls train`, whose best model lands in OUT/best)")
        else:
            hint = ""
        raise CheckpointError(f"{path}: not a zhcls checkpoint; missing {', '.join(missing)}{hint}")
    check_format(path)
    return path


def check_format(path: Path) -> None:
    """``meta.json``'s ``format`` must be one this zhcls reads (:func:`read_meta`; a missing
    meta.json is tolerated with a warning: hand-assembled checkpoints may lack it)."""
    if not (path / "meta.json").is_file():
        logger.warning("%s has no meta.json; assuming checkpoint format %d", path, FORMAT_VERSION)
        return
    read_meta(path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    head: str | None = None) -> Checkpoint:
    """Load model, tokenizer, config and labels from a checkpoint directory.

    ``head``: the head the caller expects (e.g. from a config); a mismatch is an error.
    """
    from zhcls.modeling.encoder import load_tokenizer
    from zhcls.modeling.model import build_model

    path = check_checkpoint_dir(path)
    read_meta(path)
    config = read_config(path)
    labels = read_labels(path)
    if head is not None and head != config.model.head:
        raise CheckpointError(f"{path}: checkpoint has head {config.model.head!r} but "
                              f"{head!r} was requested; use a config with model.head "
                              f"{config.model.head} or train a {head} model")
    model = build_model(_encoder_from_file(path / "encoder_config.json"), config, len(labels))
    state = _read_weights(path / "model.safetensors", labels)
    if getattr(model.encoder, "pooler", "absent") is None:  # saved before the pooler was dropped
        state = {k: v for k, v in state.items() if not k.startswith("encoder.pooler.")}
    _check_state(path, model, state, config.model.head, len(labels))
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # _check_state compared names and shapes; anything else
        raise CheckpointError(f"{path}/model.safetensors does not load into the model "
                              f"({str(exc).splitlines()[-1].strip()}); restore the checkpoint's "
                              "files from the same run") from None
    model.to(device).eval()
    tokenizer = load_tokenizer(str(path))
    return Checkpoint(path=path, model=model, tokenizer=tokenizer, config=config, labels=labels)


def _encoder_from_file(file: Path):
    from zhcls.modeling.encoder import encoder_from_config

    fix = "restore the encoder_config.json written with the checkpoint"
    cfg = _read_json(file, fix)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model_type"), str):
        raise CheckpointError(f"{file}: expected a Hugging Face config object with a "
                              f"\"model_type\", found {str(cfg)[:80]}; {fix}")
    try:
        return encoder_from_config(cfg)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{file}: cannot build an encoder from it ({exc}); {fix}") from None


def _read_weights(file: Path, labels: list[str]) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors``; checks the label digest stored with them."""
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            stored = (f.metadata() or {}).get(LABELS_DIGEST_KEY)
            state = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own untyped SafetensorError
        raise CheckpointError(f"{file}: not a readable safetensors file ({exc}); the file is "
                              "truncated or damaged: copy it again from the run") from None
    check_labels_digest(labels, stored, file)
    return state


def check_labels_digest(labels: list[str], stored: str | None, where: Path) -> None:
    """``labels`` (from labels.json beside ``where``) must be the list whose digest was saved
    with the weights; None (checkpoints of older versions) skips the check."""
    if stored is None:
        logger.debug("%s: no label digest (saved by an older zhcls); labels.json not verified",
                     where)
    elif stored != labels_digest(labels):
        raise CheckpointError(
            f"{where.parent / 'labels.json'}: the labels {labels[:6]} are not the ones the "
            f"weights in {where.name} were trained with (names or order changed since saving); "
            "restore the labels.json written with the checkpoint")


def _check_state(path: Path, model, state: dict, head: str, num_labels: int) -> None:
    """The saved tensors must be the ones the files describe, by name and shape: the encoder's
    come from encoder_config.json, the classifier's outputs from labels.json, the rest of the
    head and the n-gram bag from zhcls.yaml. The first file that explains a mismatch is named."""
    expected = model.state_dict()
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith("position_ids"))
    unexpected = sorted(k for k in set(state) - set(expected) if not k.endswith("position_ids"))
    wrong = sorted((k for k in set(state) & set(expected) if state[k].shape != expected[k].shape),
                   key=lambda k: (not k.startswith("encoder."), k))  # the encoder's first
    if not (missing or unexpected or wrong):
        return
    found = state["classifier.weight"].shape[0] if "classifier.weight" in state else num_labels
    if any(k.startswith("encoder.") for k in missing + unexpected + wrong):
        source = "encoder_config.json"
    elif found != num_labels:
        raise CheckpointError(f"{path}: classifier has {found} outputs but labels.json names "
                              f"{num_labels} labels; restore the labels.json written with the "
                              "checkpoint")
    else:
        source = f"the model settings of zhcls.yaml (model.head {head!r}, model.ngram_*, ...)"
    shapes = [f"{k} {tuple(state[k].shape)} saved vs {tuple(expected[k].shape)} built"
              for k in wrong[:3]]
    raise CheckpointError(
        f"{path}/model.safetensors does not fit {source}: "
        + "; ".join([f"missing {missing[:4]}"] * bool(missing)
                    + [f"unexpected {unexpected[:4]}"] * bool(unexpected) + shapes)
        + f". The weights were saved with other settings: restore the {source.split(' (')[0]} "
        "written with the checkpoint (do not edit a trained checkpoint's model settings)")


def check_labels_match(ckpt_labels: list[str], class_names: list[str], where: str) -> None:
    """The dataset's class.txt must name the same classes in the same order."""
    if list(ckpt_labels) != list(class_names):
        raise CheckpointError(
            f"{where}: class.txt names {len(class_names)} classes {class_names[:6]} but the "
            f"checkpoint was trained on {len(ckpt_labels)} classes {list(ckpt_labels)[:6]}; "
            "use a dataset whose class.txt lists the checkpoint's classes in the same order "
            "(as the dataset it was trained on does)"
        )
