"""``zhcls init-tiny``: a small randomly initialised BERT checkpoint with a real tokenizer, so
tests, demos and CPU benchmarks run with no download."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import torch
from transformers import BertConfig, BertModel, BertTokenizer

from zhcls.data.formats import find_split_file, read_class_names, read_split
from zhcls.errors import ZhclsError
from zhcls.modeling.encoder import check_tokenizer_knows_chinese
from zhcls.utils import is_cjk, replace_dir

logger = logging.getLogger(__name__)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def char_vocab_from_data(data_dir: str | Path, min_freq: int = 1) -> list[str]:
    """Character vocabulary of the training split (lower-cased, as BertTokenizer does).

    Non-CJK characters also get a ``##`` continuation entry, because WordPiece splits a
    word such as ``iphone`` into ``i ##p ##h ...``.
    """
    data_dir = Path(data_dir)
    classes = read_class_names(data_dir / "class.txt")
    split = read_split(find_split_file(data_dir, "train"), classes)
    counts = Counter(ch for text in split.texts for ch in text.lower() if not ch.isspace())
    chars = sorted(ch for ch, n in counts.items() if n >= min_freq)
    cont = [f"##{ch}" for ch in chars if not is_cjk(ch) and ch.isalnum()]
    return SPECIAL_TOKENS + chars + cont


def init_tiny(
    out: str | Path,
    *,
    vocab: str | Path | None = None,
    vocab_from: str | Path | None = None,
    layers: int = 2,
    hidden: int = 128,
    heads: int = 2,
    intermediate: int | None = None,
    max_position: int = 512,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a randomly initialised BERT (config.json + model.safetensors) and its tokenizer
    into ``out``: a new or empty directory, or with ``overwrite`` an existing one, replaced as
    a whole once the new one is complete."""
    if (vocab is None) == (vocab_from is None):
        raise ZhclsError("init-tiny: give exactly one of --vocab FILE or --vocab-from DATA_DIR")
    if hidden % heads:
        raise ZhclsError(f"init-tiny: --hidden {hidden} must be divisible by --heads {heads}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZhclsError(f"init-tiny: --out {out} is a file; give a directory path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ZhclsError(f"init-tiny: --out {out} already exists and is not empty; pass "
                         "--overwrite to replace it, or choose another --out")
    with tempfile.TemporaryDirectory() as tmp:
        vocab_path = Path(tmp) / "vocab.txt"
        if vocab is not None:
            if not Path(vocab).is_file():
                raise ZhclsError(f"init-tiny: vocabulary file not found: {vocab}")
            shutil.copy(vocab, vocab_path)
        else:
            tokens = char_vocab_from_data(vocab_from)
            vocab_path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        # transformers 5: BertTokenizer(vocab_file=...) ignores the file; from_pretrained reads it.
        tokenizer = BertTokenizer.from_pretrained(tmp)
    check_tokenizer_knows_chinese(tokenizer, source=str(vocab or vocab_from))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
        max_position_embeddings=max_position, pad_token_id=tokenizer.pad_token_id,
    )
    staging = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of an interrupted init-tiny
    staging.mkdir(parents=True)
    BertModel(config).save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    replace_dir(staging, out)
    logger.info("wrote tiny BERT (%d layers, hidden %d, vocab %d) to %s",
                layers, hidden, len(tokenizer), out)
    return out
