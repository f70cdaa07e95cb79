"""A training loop that behaves like the research code zhcls replaces
(github.com/649453932/Bert-Chinese-Text-Classification-Pytorch: ``utils.py``,
``train_eval.py``, ``models/bert.py``), written here from its description so that
``bench/train_speed.py`` can time it against zhcls on the same model, data and steps.

What it keeps from the research code, on purpose:

* data: every line tokenised in Python one at a time (``[CLS]`` + WordPieces, no ``[SEP]``),
  padded with id 0 / cut to ``pad_size`` = 32 and stored as Python lists
  ``(token_ids, label, seq_len, mask)``;
* batches in file order (no shuffling), each turned into tensors when drawn
  (``torch.LongTensor(list of lists)``), always ``pad_size`` wide;
* fp32, the classifier on BERT's pooled output, ``BertAdam`` (per-parameter loop: gradient
  clipping per parameter, decoupled weight decay 0.01 except biases/LayerNorm, no bias
  correction, linear warm-up over 5% then linear decay);
* the whole dev set evaluated every 100 batches (at batch 0, 100, 200, ...) with the train
  batch size, predictions collected with ``np.append``, and ``torch.save`` of the
  state dict whenever the dev loss improves.

The encoder is transformers' ``BertModel`` with eager attention, loaded from the same
checkpoint as the zhcls run. The research repo vendors an older BERT implementation whose
LayerNorm falls back to a Python version without apex, so this baseline is, if anything,
faster than the original.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn import metrics
from torch import nn

from zhcls.training.optim import BertAdam, research_schedule

logger = logging.getLogger(__name__)

PAD_SIZE = 32
CLS = "[CLS]"

Row = tuple[list[int], int, int, list[int]]  # token_ids, label, seq_len, mask


def load_padded(path: str | Path, tokenizer, pad_size: int = PAD_SIZE) -> list[Row]:
    """Read ``text<TAB>label`` lines into padded Python lists, one line at a time."""
    rows: list[Row] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            lin = line.strip()
            if not lin:
                continue
            content, label = lin.split("\t")[:2]
            tokens = [CLS] + tokenizer.tokenize(content)
            seq_len = len(tokens)
            token_ids = tokenizer.convert_tokens_to_ids(tokens)
            if seq_len < pad_size:
                mask = [1] * seq_len + [0] * (pad_size - seq_len)
                token_ids += [0] * (pad_size - seq_len)
            else:
                mask = [1] * pad_size
                token_ids = token_ids[:pad_size]
                seq_len = pad_size
            rows.append((token_ids, int(label), seq_len, mask))
    return rows


class BatchIterator:
    """Batches in file order; each is converted from Python lists to tensors when drawn."""

    def __init__(self, rows: list[Row], batch_size: int):
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __iter__(self):
        for start in range(0, len(self.rows), self.batch_size):
            chunk = self.rows[start:start + self.batch_size]
            x = torch.LongTensor([r[0] for r in chunk])  # (B, pad_size)
            y = torch.LongTensor([r[1] for r in chunk])  # (B,)
            seq_len = torch.LongTensor([r[2] for r in chunk])  # (B,)
            mask = torch.LongTensor([r[3] for r in chunk])  # (B, pad_size)
            yield (x, seq_len, mask), y


class ResearchModel(nn.Module):
    """BERT's pooled output → linear layer (``models/bert.py``)."""

    def __init__(self, encoder_dir: str | Path, num_classes: int):
        super().__init__()
        from transformers import BertModel

        self.bert = BertModel.from_pretrained(str(encoder_dir), attn_implementation="eager")
        self.fc = nn.Linear(self.bert.config.hidden_size, num_classes)

    def forward(self, x: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        context, mask = x[0], x[2]  # (B, T), (B, T)
        pooled = self.bert(input_ids=context, attention_mask=mask).pooler_output  # (B, H)
        return self.fc(pooled)  # (B, C)


@dataclass
class LoopResult:
    """Wall-clock split of one run of the loop."""

    steps: int
    samples: int
    train_s: float
    eval_s: float
    save_s: float
    evals: int
    dev_acc: float
    dev_loss: float

    @property
    def total_s(self) -> float:
        return self.train_s + self.eval_s + self.save_s

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.total_s


def evaluate(model: nn.Module, data_iter: BatchIterator) -> tuple[float, float]:
    """Dev accuracy and mean batch loss, as ``train_eval.evaluate``."""
    model.eval()
    loss_total = 0
    predict_all = np.array([], dtype=int)
    labels_all = np.array([], dtype=int)
    with torch.no_grad():
        for texts, labels in data_iter:
            outputs = model(texts)
            loss_total += F.cross_entropy(outputs, labels)
            labels_all = np.append(labels_all, labels.data.cpu().numpy())
            predict_all = np.append(predict_all, torch.max(outputs.data, 1)[1].cpu().numpy())
    acc = metrics.accuracy_score(labels_all, predict_all)
    return float(acc), float(loss_total / len(data_iter))


def train_research(model: nn.Module, train_iter: BatchIterator, dev_iter: BatchIterator,
                   steps: int, lr: float, eval_every: int = 100,
                   save_path: str | Path | None = None) -> LoopResult:
    """``train_eval.train`` stopped after ``steps`` batches; returns where the time went."""
    start = time.perf_counter()
    no_decay = ("bias", "LayerNorm.bias", "LayerNorm.weight")
    named = list(model.named_parameters())
    groups = [{"params": [p for n, p in named if not any(nd in n for nd in no_decay)],
               "weight_decay": 0.01},
              {"params": [p for n, p in named if any(nd in n for nd in no_decay)],
               "weight_decay": 0.0}]
    optimizer = BertAdam(groups, lr=lr)  # zhcls.training.optim: the research optimiser
    schedule = research_schedule(optimizer, steps, 0.05)
    eval_s = save_s = 0.0
    evals, total_batch, samples = 0, 0, 0
    best_loss, dev_acc, dev_loss = float("inf"), float("nan"), float("nan")
    model.train()
    while total_batch < steps:
        for trains, labels in train_iter:
            outputs = model(trains)
            model.zero_grad()
            loss = F.cross_entropy(outputs, labels)
            loss.backward()
            optimizer.step()
            schedule.step()
            samples += len(labels)
            if total_batch % eval_every == 0:
                t0 = time.perf_counter()
                train_acc = metrics.accuracy_score(labels.data.cpu(), torch.max(outputs.data, 1)[1].cpu())
                dev_acc, dev_loss = evaluate(model, dev_iter)
                evals += 1
                t1 = time.perf_counter()
                if dev_loss < best_loss and save_path is not None:
                    best_loss = dev_loss
                    torch.save(model.state_dict(), save_path)
                save_s += time.perf_counter() - t1
                eval_s += t1 - t0
                logger.info("baseline iter %d: train loss %.3f, train acc %.3f, dev loss %.3f, "
                            "dev acc %.4f", total_batch, loss.item(), train_acc, dev_loss, dev_acc)
                model.train()
            total_batch += 1
            if total_batch >= steps:
                break
    total = time.perf_counter() - start
    return LoopResult(steps=total_batch, samples=samples, train_s=total - eval_s - save_s,
                      eval_s=eval_s, save_s=save_s, evals=evals, dev_acc=dev_acc,
                      dev_loss=dev_loss)
