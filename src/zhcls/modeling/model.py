"""Encoder + head → logits, sentence representation and (optionally) attention weights."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zhcls.config import ModelConfig
from zhcls.data.dataset import LongTextSpec
from zhcls.modeling.chunks import ChunkPooler
from zhcls.modeling.hashed_ngrams import HashedNgramBag
from zhcls.modeling.heads import (
    CNNHead,
    DPCNNHead,
    GRUAttentionHead,
    Head,
    PooledHead,
    RCNNHead,
    RNNHead,
)


@dataclass
class ClassifierOutput:
    """``logits`` (B, C); ``representation`` (B, R) is exactly what the linear classifier sees
    (before dropout); ``attention`` (B, T) for heads that pool with attention, else None;
    ``features`` (B, P) the projection head's output when one is configured (used only by the
    contrastive loss), else None."""

    logits: torch.Tensor
    representation: torch.Tensor
    attention: torch.Tensor | None = None
    features: torch.Tensor | None = None


POOLER_HEADS = ("bert", "ERNIE")  # the heads that read the encoder's pooled [CLS] vector


def drop_unused_pooler(encoder: nn.Module, head: str) -> nn.Module:
    """Remove the encoder's pooler when ``head`` reads token states only: no parameters
    without gradients (DDP then runs without ``find_unused_parameters``), no wasted matmul.
    Checkpoints saved with the pooler still load (:func:`zhcls.modeling.checkpoint.load_checkpoint`
    drops its weights)."""
    if head not in POOLER_HEADS and getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # BertModel / ErnieModel skip a None pooler
    return encoder


def build_head(cfg: ModelConfig, hidden: int, max_length: int) -> Head:
    """The head named by ``cfg.head`` for an encoder of width ``hidden``."""
    if cfg.head in ("bert", "ERNIE"):
        return PooledHead(hidden)
    if cfg.head == "bert_CNN":
        return CNNHead(hidden, cfg.filter_sizes, cfg.num_filters)
    if cfg.head == "bert_RNN":
        return RNNHead(hidden, cfg.rnn_hidden, cfg.rnn_layers, cfg.dropout)
    if cfg.head == "bert_RCNN":
        return RCNNHead(hidden, cfg.rnn_hidden, cfg.rnn_layers, cfg.dropout)
    if cfg.head == "bert_DPCNN":
        return DPCNNHead(hidden, cfg.dpcnn_filters, max_length)
    if cfg.head == "bert_GRU_att":
        return GRUAttentionHead(hidden, cfg.rnn_hidden, cfg.rnn_layers, cfg.attention_dim,
                                cfg.dropout)
    raise ValueError(f"unknown head {cfg.head!r}")  # config validation makes this unreachable


class ZhclsModel(nn.Module):
    """A BERT-family encoder, a head, dropout and a linear classifier; optionally a projection
    head (``projection`` = "linear" | "mlp", as in SupCon) whose output feeds only the loss."""

    def __init__(self, encoder: nn.Module, cfg: ModelConfig, num_labels: int, max_length: int,
                 projection: str = "head", projection_dim: int = 128,
                 long_text: LongTextSpec | None = None, chunk_pooling: str = "mean"):
        super().__init__()
        #: how texts become windows (:func:`zhcls.modeling.forward.forward_texts` follows it)
        self.long_text = long_text or LongTextSpec()
        self.encoder = drop_unused_pooler(encoder, cfg.head)
        self.head_name = cfg.head
        self.head = build_head(cfg, encoder.config.hidden_size, max_length)
        # model.ngram_buckets > 0: a hashed n-gram bag whose vector joins the representation
        self.ngrams = (HashedNgramBag(cfg.ngram_buckets, cfg.ngram_dim, cfg.ngram_orders)
                       if cfg.ngram_buckets > 0 else None)
        #: width of the representation: the head's output (+ the n-gram bag's)
        self.rep_dim = self.head.out_dim + (self.ngrams.out_dim if self.ngrams else 0)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(self.rep_dim, num_labels)
        self.num_labels = num_labels
        self.projection = None
        if projection != "head":
            from zhcls.modeling.projection import ProjectionHead

            self.projection = ProjectionHead(self.rep_dim, projection_dim, kind=projection)
        # chunks: pools window representations per text; attention pooling's parameters exist
        # only when it is configured (mean / max have none)
        kind = chunk_pooling if self.long_text.mode == "chunks" else "mean"
        self.chunk_pooler = ChunkPooler(kind, self.rep_dim, cfg.attention_dim)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        chunk_mask: torch.Tensor | None = None,
        window_batch: int | None = None,
    ) -> ClassifierOutput:
        """``input_ids`` / ``attention_mask`` (W, T); ``chunk_mask`` (B, W) bool marks each
        text's windows (None: one window per text). Logits and representation are per text;
        ``attention`` (per token) only without ``chunk_mask``. ``window_batch``: with a
        ``chunk_mask``, run the encoder on at most this many windows at a time (bounded
        memory under no_grad: the training loop's evaluation of long texts; same result)."""
        if chunk_mask is not None and window_batch and input_ids.shape[0] > window_batch:
            rep = torch.cat([  # (W, R)
                self.window_representations(
                    input_ids[i:i + window_batch], attention_mask[i:i + window_batch],
                    None if token_type_ids is None else token_type_ids[i:i + window_batch])[0]
                for i in range(0, input_ids.shape[0], window_batch)])
            return self.classify(self.chunk_pooler(rep, chunk_mask))  # (B, R) pooled
        rep, attention = self.window_representations(input_ids, attention_mask, token_type_ids)
        if chunk_mask is not None:
            rep, attention = self.chunk_pooler(rep, chunk_mask), None  # (B, R)
        return self.classify(rep, attention)

    def window_representations(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                               token_type_ids: torch.Tensor | None = None
                               ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Encoder + head per window: representation (W, R), token attention (W, T) | None."""
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        enc = self.encoder(**kwargs)
        states = enc.last_hidden_state  # (W, T, H)
        pooled = getattr(enc, "pooler_output", None)  # (W, H) or None
        rep, attention = self.head(states, pooled, attention_mask)  # (W, R), (W, T) | None
        if self.ngrams is not None:
            bag = self.ngrams(input_ids, attention_mask).to(rep.dtype)  # (W, D)
            rep = torch.cat([rep, bag], dim=1)  # (W, R + D)
        return rep, attention

    def classify(self, rep: torch.Tensor, attention: torch.Tensor | None = None
                 ) -> ClassifierOutput:
        """Classifier (and projection) on per-text representations ``rep`` (B, R)."""
        logits = self.classifier(self.dropout(rep))  # (B, C)
        features = self.projection(rep) if self.projection is not None else None  # (B, P)
        return ClassifierOutput(logits=logits, representation=rep, attention=attention,
                                features=features)


def build_model(encoder: nn.Module, config, num_labels: int) -> ZhclsModel:
    """The classifier a :class:`zhcls.config.Config` describes, around ``encoder``."""
    return ZhclsModel(encoder, config.model, num_labels, config.data.max_length,
                      projection=config.objective.representation,
                      projection_dim=config.objective.projection_dim,
                      long_text=LongTextSpec.from_config(config.data),
                      chunk_pooling=config.data.chunk_pooling)
