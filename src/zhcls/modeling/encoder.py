"""Load BERT-family encoders and their tokenizers by hub name, local HF directory, or the
legacy research layout (``pytorch_model.bin`` + ``bert_config.json`` + ``vocab.txt``).

Also checks that the tokenizer actually knows Chinese: a tokenizer that maps ordinary
Chinese characters to ``[UNK]`` trains to ~29% on THUCNews without a single error, so
loading one is an error here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizer,
    PreTrainedTokenizerBase,
)

from zhcls.errors import CheckpointError, ConfigError
from zhcls.utils import is_cjk, looks_like_local_path, missing_path_message

logger = logging.getLogger(__name__)

# Common characters of news headlines; a Chinese-capable vocabulary knows all of them.
UNK_PROBE = "中国经济市场公司北京上海教育学生考试游戏电影明星体育比赛房价股票基金科技手机政府社会新闻发布"
MAX_UNK_RATE = 0.1
MIN_CJK_TOKENS = 100


def is_local(name_or_path: str) -> bool:
    return Path(name_or_path).expanduser().exists()


def is_legacy_dir(path: Path) -> bool:
    """The research repos' layout: ``bert_config.json`` + ``pytorch_model.bin`` + ``vocab.txt``."""
    return (path / "bert_config.json").is_file() and not (path / "config.json").is_file()


HUB_HINT = (
    "Pass a local directory (--model.pretrained /path/to/bert-base-chinese, a folder with "
    "config.json and weights or the legacy pytorch_model.bin + bert_config.json + vocab.txt), "
    "or build a small offline model with `zhcls init-tiny --out DIR`."
)


def hub_offline() -> bool:
    """huggingface_hub's offline mode (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``), also
    when the variable was set after huggingface_hub was imported."""
    from huggingface_hub import constants

    late = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return constants.is_offline_mode() or late.strip().lower() in ("1", "true", "yes", "on")


def ensure_hub_reachable(name: str, timeout: float | None = None) -> None:
    """Fail fast (one metadata request, not a minute of retries) when ``name`` cannot be
    downloaded. The request is huggingface_hub's own HEAD of ``config.json``: it goes to
    ``HF_ENDPOINT`` (its scheme, host and port), through the proxies of the environment, and
    waits at most ``timeout`` seconds (default ``HF_HUB_ETAG_TIMEOUT``, 10 s)."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
    where = f"cannot download {name!r} from the Hugging Face hub ({endpoint})"
    if hub_offline():
        raise CheckpointError(f"{where}: offline mode is on (HF_HUB_OFFLINE) and {name!r} is "
                              f"not in the local cache. {HUB_HINT}")
    try:
        url = hf_hub_url(name, "config.json", endpoint=endpoint)
        get_hf_file_metadata(url, timeout=timeout or constants.HF_HUB_ETAG_TIMEOUT)
    except EntryNotFoundError:
        return  # the repository exists; the loader reports which file it lacks
    except GatedRepoError:
        raise CheckpointError(f"{where}: the repository is gated; accept its terms on the hub "
                              "and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{where}: no such repository (a typo, or private: set "
                              f"HF_TOKEN). {HUB_HINT}") from None
    except HFValidationError as exc:
        raise CheckpointError(f"{name!r} is neither an existing local path nor a valid hub id "
                              f"({exc}). {HUB_HINT}") from None
    except OfflineModeIsEnabled:
        raise CheckpointError(f"{where}: offline mode is on (HF_HUB_OFFLINE). {HUB_HINT}") from None
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "?"
        raise CheckpointError(f"{where}: HTTP {status}. {HUB_HINT}") from None
    except Exception as exc:  # httpx transport errors: DNS, refused, timeout, proxy
        raise CheckpointError(f"{where}: unreachable ({type(exc).__name__}: {exc}); set "
                              "HF_ENDPOINT / HTTPS_PROXY if you use a mirror or a proxy, "
                              f"HF_HUB_ETAG_TIMEOUT to wait longer. {HUB_HINT}") from None


def check_encoder_path(name: str | None, flag: str = "--model.pretrained") -> None:
    """Refuse early (before any data is read) a local-looking encoder path that does not
    exist, naming the setting it came from."""
    if name and looks_like_local_path(name) and not Path(name).expanduser().exists():
        raise ConfigError(f"{flag} (or model.pretrained in the config file): "
                          + missing_path_message(name) + "; build a local encoder with `zhcls "
                          "init-tiny --vocab VOCAB --out DIR`, or give a hub id such as "
                          "bert-base-chinese")


def _from_hub(loader, name: str, **kwargs):
    """Use the local HF cache first; touch the network only when needed and reachable."""
    if looks_like_local_path(name) and not Path(name).expanduser().exists():
        raise CheckpointError(missing_path_message(name) + "; give an existing directory, or a "
                              "hub id such as bert-base-chinese")
    try:
        return loader(name, local_files_only=True, **kwargs)
    except OSError:
        ensure_hub_reachable(name)
    try:
        return loader(name, **kwargs)
    except OSError as exc:
        raise CheckpointError(f"cannot load {name!r} from the Hugging Face hub: {exc}") from None


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """Load a fast tokenizer from a hub name, an HF directory, or a folder with only vocab.txt."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        has_hf = any((path / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))
        if has_hf:
            try:
                tok = AutoTokenizer.from_pretrained(str(path))
            except (OSError, ValueError, TypeError, KeyError) as exc:  # damaged tokenizer files
                detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
                raise CheckpointError(
                    f"{path}: cannot load the tokenizer (tokenizer.json / tokenizer_config.json: "
                    f"{detail}); restore the files written with the model") from None
        elif (path / "vocab.txt").is_file():
            # transformers 5: BertTokenizer(vocab_file=...) silently ignores the file;
            # from_pretrained on a directory holding vocab.txt reads it.
            tok = BertTokenizer.from_pretrained(str(path))
        else:
            raise CheckpointError(
                f"{path}: no tokenizer found; expected tokenizer.json/tokenizer_config.json or "
                "vocab.txt in the directory"
            )
    elif path.exists():
        raise CheckpointError(f"{path}: expected a directory holding tokenizer files, found a file")
    else:
        tok = _from_hub(AutoTokenizer.from_pretrained, name_or_path)
    check_tokenizer_knows_chinese(tok, source=str(name_or_path))
    return tok


def unk_rate(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> float:
    """Fraction of non-special tokens that are the unknown token."""
    unk = tokenizer.unk_token_id
    total = hits = 0
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        total += len(ids)
        hits += sum(1 for i in ids if i == unk)
    return hits / max(total, 1)


def count_cjk_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """How many vocabulary entries are a single CJK character (optionally ``##``-prefixed)."""
    return sum(1 for tok in tokenizer.get_vocab()
               if len(tok.removeprefix("##")) == 1 and is_cjk(tok.removeprefix("##")))


def check_tokenizer_knows_chinese(tokenizer: PreTrainedTokenizerBase, source: str) -> None:
    """Error when the vocabulary cannot read Chinese (fewer than ``MIN_CJK_TOKENS`` Chinese
    characters). Training additionally checks the [UNK] rate on the actual training data."""
    known = count_cjk_tokens(tokenizer)
    if known < MIN_CJK_TOKENS:
        rate = unk_rate(tokenizer, [UNK_PROBE])
        raise CheckpointError(
            f"{source}: the tokenizer knows only {known} Chinese characters (vocabulary size "
            f"{len(tokenizer)}) and maps {rate:.0%} of common Chinese characters to "
            f"{tokenizer.unk_token}; a model trained with it cannot read Chinese. Use a Chinese "
            "vocabulary (bert-base-chinese's vocab.txt) — note that in transformers 5 "
            "BertTokenizer(vocab_file=...) ignores the file"
        )


def load_encoder(name_or_path: str) -> torch.nn.Module:
    """Pretrained encoder (no task head) from hub name, HF directory or legacy layout."""
    path = Path(name_or_path).expanduser()
    if path.is_dir() and is_legacy_dir(path):
        return _load_legacy(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path}: expected config.json (Hugging Face layout) or bert_config.json + "
                "pytorch_model.bin (research layout)"
            )
        return AutoModel.from_pretrained(str(path))
    if path.exists():
        raise CheckpointError(f"{path}: expected a model directory, found a file")
    return _from_hub(AutoModel.from_pretrained, name_or_path)


def encoder_from_config(config_dict: dict) -> torch.nn.Module:
    """An encoder with the given HF config and random weights (weights are loaded after)."""
    config = AutoConfig.for_model(**config_dict)
    return AutoModel.from_config(config)


def _load_legacy(path: Path) -> torch.nn.Module:
    config = BertConfig.from_json_file(str(path / "bert_config.json"))
    model = BertModel(config)
    weights = path / "pytorch_model.bin"
    if not weights.is_file():
        raise CheckpointError(f"{path}: bert_config.json found but pytorch_model.bin is missing")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("bert.").replace("LayerNorm.gamma", "LayerNorm.weight")
        renamed[key.replace("LayerNorm.beta", "LayerNorm.bias")] = value
    missing, _unexpected = model.load_state_dict(renamed, strict=False)
    real_missing = [k for k in missing if "position_ids" not in k]
    if real_missing:
        raise CheckpointError(
            f"{weights}: {len(real_missing)} encoder weights missing (e.g. {real_missing[:3]}); "
            "is this a BERT checkpoint?"
        )
    logger.info("loaded legacy research checkpoint %s", path)
    return model.eval()  # as from_pretrained does
