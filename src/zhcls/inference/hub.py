"""Hugging Face Hub names for a :class:`zhcls.inference.classifier.Classifier`:
``from_pretrained`` (a local directory or a Hub repo id), ``save_pretrained`` and
``push_to_hub`` (needs internet and a token: ``huggingface-cli login`` or ``HF_TOKEN``).

The directory is the same in every case: a zhcls checkpoint (or ONNX export) with its
``README.md`` model card, so what ``push_to_hub`` uploads is what ``from_pretrained`` loads.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

# Files of an ONNX export directory that save_pretrained copies.
ONNX_DIR_FILES = ("model.onnx", "model.int8.onnx", "pool.onnx", "export.json", "README.md")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` forbids network access."""
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() not in ("", "0", "false", "no")


def check_repo_id(repo_id: str, where: str = "repo_id") -> str:
    """``owner/name`` (or ``name``) as the Hub accepts it, else a :class:`ZhclsError`."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or not repo_id.strip():
        raise ZhclsError(f"{where}: expected a Hub repo id such as 'your-name/zhcls-news', "
                         f"got {repo_id!r}")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ZhclsError(f"{where}: {repo_id!r} is neither a local directory nor a valid Hub "
                         f"repo id ({exc}); expected 'owner/name'") from None
    return repo_id


def resolve_pretrained(name_or_path: str | Path, *, revision: str | None = None,
                       token: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """A local directory for ``name_or_path``: itself when it exists, else the Hub repo
    downloaded (or found in the local cache) with ``huggingface_hub.snapshot_download``."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    repo_id = check_repo_id(str(name_or_path), "from_pretrained")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, revision=revision, token=token,
                                      cache_dir=cache_dir, local_files_only=hub_offline()))
    except Exception as exc:  # hub errors are many and untyped for callers
        why = "HF_HUB_OFFLINE is set and the repo is not in the local cache" if hub_offline() \
            else f"{type(exc).__name__}: {exc}"
        raise ZhclsError(f"from_pretrained({str(name_or_path)!r}): no such local directory, "
                         f"and the Hub repo could not be fetched ({why}). Pass a checkpoint "
                         "directory (e.g. runs/x/best) or a reachable repo id") from None


def save_pretrained(clf, save_directory: str | Path) -> Path:
    """Write ``clf`` as a directory that :meth:`Classifier.load` / ``from_pretrained`` read."""
    out = Path(save_directory)
    source = Path(clf.source)
    source_dir = source if source.is_dir() else source.parent
    if out.resolve() == source_dir.resolve():
        raise ZhclsError(f"save_pretrained: {out} is the directory the classifier was loaded "
                         "from; pick a new directory")
    if clf.checkpoint is not None:  # PyTorch: the in-memory weights, the source's metadata
        from zhcls.modeling.checkpoint import save_checkpoint
        from zhcls.modeling.model_card import write_model_card

        ckpt = clf.checkpoint
        save_checkpoint(out, ckpt.model, ckpt.tokenizer, ckpt.config, ckpt.labels,
                        thresholds=clf.thresholds)
        _keep_meta(source_dir / "meta.json", out / "meta.json")
        _keep_decision(clf, source_dir / "thresholds.json", out / "thresholds.json")
        write_model_card(out)
    else:  # ONNX export: copy it
        from zhcls.inference.export import COPIED_FILES

        out.mkdir(parents=True, exist_ok=True)
        for name in (*COPIED_FILES, *ONNX_DIR_FILES):
            if (source_dir / name).is_file():
                shutil.copy2(source_dir / name, out / name)
    logger.info("saved %s to %s", clf.source, out)
    return out


def _keep_decision(clf, src: Path, dst: Path) -> None:
    """Multi-label: the classifier's own at_least_one, and the split the thresholds were
    tuned on (from the source's thresholds.json)."""
    if clf.thresholds is None or not dst.is_file():
        return
    from zhcls.utils import atomic_write_json

    new = json.loads(dst.read_text(encoding="utf-8"))
    new["at_least_one"] = bool(clf.at_least_one)
    if src.is_file():
        new["tuned_on"] = json.loads(src.read_text(encoding="utf-8")).get("tuned_on")
    atomic_write_json(dst, new)


def _keep_meta(src: Path, dst: Path) -> None:
    """Metrics and the training command belong to the model, not to whoever saved it."""
    if not src.is_file():
        return
    from zhcls.utils import atomic_write_json

    old = json.loads(src.read_text(encoding="utf-8"))
    new = json.loads(dst.read_text(encoding="utf-8"))
    new.update({k: old[k] for k in ("metrics", "command") if k in old})
    atomic_write_json(dst, new)


def push_to_hub(clf, repo_id: str, *, token: str | None = None, private: bool | None = None,
                commit_message: str = "Upload zhcls classifier",
                revision: str | None = None) -> str:
    """Upload ``clf`` (its :func:`save_pretrained` directory, model card included) to the Hub
    repo ``repo_id`` (created when missing); returns the commit URL."""
    check_repo_id(repo_id, "push_to_hub")
    if hub_offline():
        raise ZhclsError("push_to_hub: HF_HUB_OFFLINE is set; unset it (and log in with "
                         "`huggingface-cli login` or set HF_TOKEN) to upload")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="zhcls-push-") as tmp:
        folder = save_pretrained(clf, Path(tmp) / "model")
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                                     commit_message=commit_message, revision=revision)
        except Exception as exc:  # network, auth and permission errors
            raise ZhclsError(f"push_to_hub({repo_id!r}) failed: {type(exc).__name__}: {exc}. "
                             "Check the network and your token (`huggingface-cli login`)"
                             ) from None
    return str(getattr(info, "commit_url", info))
