"""The unlabelled corpus of ``zhcls pretrain`` and its masking.

Texts come from plain files (one text a line, split on ``"\\n"`` only), pre-segmented files
(words separated by spaces) and the text column of zhcls datasets. Each text is tokenised
once; a text longer than ``corpus.max_length`` becomes several examples.

Masking: ``char`` is BERT's (transformers' ``DataCollatorForLanguageModeling``: each token
chosen with probability ``rate``, then 80% [MASK] / 10% random / 10% unchanged). ``word`` is
the Chinese-BERT-wwm recipe (Google's ``create_pretraining_data.py`` with whole-word masking):
``round(rate x tokens)`` tokens per text are chosen as whole words (or MacBERT n-grams of
words) in random order, then each chosen token gets the 80/10/10 replacement.
transformers' whole-word option does not fit here: it decides per word with probability
``rate`` (so the token rate grows with word length), takes word boundaries from gaps in the
character offsets (an unsegmented Chinese line is one "word") and drops random replacement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from zhcls.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@dataclass
class CorpusText:
    text: str
    words: list[tuple[int, int]] | None = None  # (start, end) character spans of the words


def expand_paths(paths: list[str], key: str) -> list[Path]:
    """Files of ``corpus.text`` / ``corpus.segmented`` entries (a directory: its *.txt)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*.txt") if p.is_file())
            if not found:
                raise DataError(f"--{key}: directory holds no *.txt file", path)
            files += found
        else:
            raise DataError(f"--{key}: corpus file or directory not found", path)
    return files


def dataset_files(data_dirs: list[str], transductive: bool) -> list[Path]:
    from zhcls.data.formats import find_split_file

    files = []
    for raw in data_dirs:
        files.append(find_split_file(raw, "train"))
        for split in ("dev", "test") if transductive else ():
            try:
                files.append(find_split_file(raw, split))
            except DataError:
                continue
    return files


def read_lines(path: Path, encoding: str, min_chars: int) -> list[str]:
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"not {encoding} text ({exc.reason} at byte {exc.start}); set "
                        "corpus.encoding", path) from None
    lines = (ln.strip() for ln in text.split("\n"))
    return [ln for ln in lines if sum(not c.isspace() for c in ln) >= min_chars]


def word_spans(words: list[str], text: str) -> list[tuple[int, int]]:
    """Character spans of ``words`` in ``text`` (words in order, any gaps between them)."""
    spans, pos = [], 0
    for word in words:
        if not word.strip():
            continue
        start = text.find(word, pos)
        if start < 0:
            continue
        spans.append((start, start + len(word)))
        pos = start + len(word)
    return spans


def jieba_segmenter():
    try:
        import jieba
    except ImportError:
        raise ConfigError("mask.segmenter jieba: jieba is not installed; pip install jieba, "
                          "or give pre-segmented files with --corpus.segmented, or use "
                          "--mask.unit char") from None
    jieba.setLogLevel(logging.WARNING)
    return jieba.lcut


def encode_texts(texts: list[CorpusText], tokenizer, max_length: int) -> list[dict]:
    """Examples ``{"input_ids", "special_tokens_mask"[, "word_ids"]}`` with [CLS] ... [SEP];
    ``word_ids`` is -1 on special tokens."""
    size = max_length - 2
    out: list[dict] = []
    batch = 2048
    for start in range(0, len(texts), batch):
        chunk = texts[start:start + batch]
        enc = tokenizer([t.text for t in chunk], add_special_tokens=False,
                        return_offsets_mapping=True)
        for item, ids, offsets in zip(chunk, enc["input_ids"], enc["offset_mapping"], strict=True):
            words = _token_words(item.words, offsets) if item.words is not None else None
            for piece in _cut(len(ids), size, words):
                out.append(_example(tokenizer, ids[piece], None if words is None else words[piece]))
    return out


def _token_words(spans: list[tuple[int, int]], offsets) -> list[int]:
    starts = np.asarray([s for s, _ in spans], dtype=np.int64)
    return [int(np.searchsorted(starts, o[0], side="right")) - 1 for o in offsets]


def _cut(n: int, size: int, words: list[int] | None) -> list[slice]:
    """Pieces of at most ``size`` tokens, cut between words where words are known."""
    pieces, start = [], 0
    while start < n:
        end = min(n, start + size)
        if words is not None and end < n:
            back = end
            while back > start + 1 and words[back] == words[back - 1]:
                back -= 1
            end = back if back > start + 1 else end
        pieces.append(slice(start, end))
        start = end
    return pieces


def _example(tokenizer, ids: list[int], words: list[int] | None) -> dict:
    example = {"input_ids": [tokenizer.cls_token_id, *ids, tokenizer.sep_token_id],
               "special_tokens_mask": [1] + [0] * len(ids) + [1]}
    if words is not None:
        example["word_ids"] = [-1, *words, -1]
    return example


class MLMDataset(torch.utils.data.Dataset):
    def __init__(self, examples: list[dict]):
        self.examples = examples
        self.lengths = [len(e["input_ids"]) for e in examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict:
        return self.examples[i]


class WholeWordMaskCollator:
    """Pads a batch and masks whole words (see the module docstring); ``span_weights[k]`` is
    the probability of a span of ``k + 1`` consecutive words. Randomness comes from torch's
    global generator (seeded and restored on resume by the Trainer)."""

    def __init__(self, tokenizer, rate: float = 0.15, mask_replace: float = 0.8,
                 random_replace: float = 0.1, span_weights: list[float] | None = None):
        self.tokenizer = tokenizer
        self.rate, self.mask_replace, self.random_replace = rate, mask_replace, random_replace
        self.span_weights = np.asarray(span_weights or [1.0], dtype=np.float64)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        width = max(len(e["input_ids"]) for e in examples)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(examples), width), pad, dtype=torch.long)  # (B, T)
        labels = torch.full((len(examples), width), -100, dtype=torch.long)  # (B, T)
        attention = torch.zeros((len(examples), width), dtype=torch.long)  # (B, T)
        for row, example in enumerate(examples):
            tokens = list(example["input_ids"])
            chosen = self.choose(example["word_ids"], rng)
            for pos in chosen:
                labels[row, pos] = tokens[pos]
                draw = rng.random()
                if draw < self.mask_replace:
                    tokens[pos] = self.tokenizer.mask_token_id
                elif draw < self.mask_replace + self.random_replace:
                    tokens[pos] = int(rng.integers(len(self.tokenizer)))
            ids[row, :len(tokens)] = torch.tensor(tokens)
            attention[row, :len(tokens)] = 1
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    def choose(self, word_ids: list[int], rng: np.random.Generator) -> list[int]:
        """Positions to predict: whole words (spans of words) up to ``round(rate x tokens)``."""
        words: dict[int, list[int]] = {}
        for pos, word in enumerate(word_ids):
            if word >= 0:
                words.setdefault(word, []).append(pos)
        groups = list(words.values())
        budget = max(1, int(round(self.rate * sum(len(g) for g in groups))))
        chosen: set[int] = set()
        for start in rng.permutation(len(groups)):
            if len(chosen) >= budget:
                break
            n = 1 + int(rng.choice(len(self.span_weights), p=self.span_weights))
            span = [p for g in groups[start:start + n] for p in g]
            if chosen.intersection(span) or len(chosen) + len(span) > budget:
                continue
            chosen.update(span)
        return sorted(chosen)
