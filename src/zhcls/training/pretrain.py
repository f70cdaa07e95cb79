"""``pretrain()``: continued masked-language-model pretraining of a BERT encoder on unlabelled
text (``zhcls pretrain``). The encoder's weights go into ``BertForMaskedLM`` (its MLM head
from the checkpoint when there is one, else initialised; decoder tied to the word
embeddings), transformers' Trainer runs MLM, and ``OUT/encoder`` receives the encoder
(config.json, model.safetensors with the pooler kept, tokenizer files) that
``zhcls train --model.pretrained OUT/encoder`` takes, plus ``mlm_head.safetensors`` so a later
``zhcls pretrain`` continues with the trained head. The run directory follows
``zhcls train``'s rules (:mod:`zhcls.training.rundir`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer

from zhcls.errors import ConfigError, DataError
from zhcls.training.pretrain_config import NEUTRAL_KEYS, PretrainConfig
from zhcls.training.rundir import RUN_FILE, file_digest
from zhcls.utils import atomic_write_json

logger = logging.getLogger(__name__)

OUTPUTS = ("encoder", "checkpoints", "tensorboard", "metrics.json", "history.json", RUN_FILE)
HEAD_FILE = "mlm_head.safetensors"


@dataclass
class PretrainResult:
    output_dir: Path
    encoder_dir: Path
    metrics: dict


class PretrainTrainer(Trainer):
    """Trainer with atomic checkpoints, length-grouped batches, and the MLM head run on the
    masked positions only (BertForMaskedLM scores every position: with a 21k vocabulary that
    is most of a small model's time; the loss is the same cross-entropy)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]  # (B, T), -100 where nothing is predicted
        bert = self.accelerator.unwrap_model(model)
        hidden = bert.bert(input_ids=inputs["input_ids"],
                           attention_mask=inputs.get("attention_mask")).last_hidden_state  # (B, T, H)
        picked = labels != -100  # (B, T)
        scores = bert.cls(hidden[picked])  # (M, V)
        loss = torch.nn.functional.cross_entropy(scores.float(), labels[picked])
        return (loss, {"logits": scores}) if return_outputs else loss

    def _save_checkpoint(self, model, trial) -> None:
        from zhcls.training.rundir import staged_trainer_checkpoint

        with staged_trainer_checkpoint(self, trial):
            super()._save_checkpoint(model, trial)

    def _get_train_sampler(self, train_dataset=None):
        from zhcls.data.samplers import ShuffledLengthGroupedSampler

        dataset = train_dataset if train_dataset is not None else self.train_dataset
        group = self.args.per_device_train_batch_size * max(1, self.args.world_size)
        return ShuffledLengthGroupedSampler(dataset.lengths, group, seed=self.args.seed)


# ----------------------------------------------------------------------------- corpus
def corpus_files(config: PretrainConfig) -> dict[str, list[Path]]:
    from zhcls.training.mlm_data import dataset_files, expand_paths

    c = config.corpus
    if c.is_empty:
        raise ConfigError("no corpus given: pass --corpus.text FILE_OR_DIR (one text a line), "
                          "--corpus.segmented FILE (words separated by spaces) and/or "
                          "--corpus.data DATASET_DIR")
    return {"text": expand_paths(c.text, "corpus.text"),
            "segmented": expand_paths(c.segmented, "corpus.segmented"),
            "data": dataset_files(c.data, c.transductive)}


def read_corpus(config: PretrainConfig, files: dict[str, list[Path]]) -> list:
    """Every text of the corpus, with word spans where word masking needs them."""
    from zhcls.data.formats import read_class_names, read_split
    from zhcls.training.mlm_data import CorpusText, jieba_segmenter, read_lines, word_spans

    c, m = config.corpus, config.mask
    wants_words = m.unit == "word"
    segment = jieba_segmenter() if wants_words and m.segmenter == "jieba" else None
    if wants_words and segment is None and (files["text"] or files["data"]):
        raise ConfigError("mask.unit word needs word boundaries for the corpus.text / "
                          "corpus.data texts: set --mask.segmenter jieba, give only "
                          "--corpus.segmented files, or use --mask.unit char")
    texts: list = []
    for path in files["segmented"]:
        lines = read_lines(path, c.encoding, c.min_chars)
        texts += [CorpusText(ln, word_spans(ln.split(" "), ln) if wants_words else None)
                  for ln in lines]
        logger.info("corpus: %d texts from %s (pre-segmented)", len(lines), path)
    raw: list[tuple[Path, list[str]]] = [(p, read_lines(p, c.encoding, c.min_chars))
                                         for p in files["text"]]
    for path in files["data"]:
        split = read_split(path, read_class_names(path.parent / "class.txt", c.encoding),
                           encoding=c.encoding)
        raw.append((path, [t for t in split.texts if len(t.strip()) >= c.min_chars]))
    for path, lines in raw:
        texts += [CorpusText(ln, word_spans(segment(ln), ln) if segment else None) for ln in lines]
        logger.info("corpus: %d texts from %s", len(lines), path)
    if c.transductive and c.data:
        logger.warning("corpus.transductive: the dev/test texts of %s are in the corpus "
                       "(unlabelled); say so with any result, and report one without them",
                       ", ".join(c.data))
    if not texts:
        every = [str(p) for ps in files.values() for p in ps]
        raise DataError(f"the corpus holds no text of at least corpus.min_chars {c.min_chars} "
                        f"characters (files: {', '.join(every[:5])})", Path(every[0]) if every else None)
    return texts


def fingerprint(config: PretrainConfig, files: dict[str, list[Path]]) -> dict[str, Any]:
    from zhcls.training.rundir import _flatten, _model_files

    flat: dict[str, Any] = {}
    _flatten("", config.to_dict(), flat)
    fp = {k: v for k, v in flat.items() if k not in NEUTRAL_KEYS}
    for role, paths in files.items():
        for i, path in enumerate(paths):
            fp[f"corpus.files.{role}.{i}"] = file_digest(path)
    for name, digest in _model_files(config.model.pretrained).items():
        fp[f"model.files.{name}"] = digest
    return fp


# ----------------------------------------------------------------------------- model
def build_mlm(pretrained: str) -> torch.nn.Module:
    """``BertForMaskedLM`` holding the encoder (pooler kept, untrained by MLM), its head from
    the checkpoint (or ``mlm_head.safetensors``) when present, tied to the embeddings."""
    from transformers import BertForMaskedLM

    from zhcls.modeling.encoder import _from_hub, is_legacy_dir, load_encoder

    encoder = load_encoder(pretrained)
    if getattr(encoder.config, "model_type", None) != "bert":
        raise ConfigError(f"--model.pretrained {pretrained}: zhcls pretrain continues BERT "
                          f"encoders (model_type bert); this one is "
                          f"{getattr(encoder.config, 'model_type', '?')!r}")
    path = Path(pretrained).expanduser()
    encoder.config.tie_word_embeddings = True
    if path.is_dir() and (path / HEAD_FILE).is_file():
        from safetensors.torch import load_file

        model = BertForMaskedLM(encoder.config)
        model.cls.load_state_dict(load_file(str(path / HEAD_FILE)), strict=False)
        logger.info("MLM head: %s", path / HEAD_FILE)
    elif path.is_dir() and is_legacy_dir(path):
        model = BertForMaskedLM(encoder.config)
        logger.info("MLM head: initialised (research layout)")
    else:
        model, info = _from_hub(BertForMaskedLM.from_pretrained, pretrained,
                                output_loading_info=True)
        head_missing = any(k.startswith("cls.") for k in info["missing_keys"])
        logger.info("MLM head: %s", "initialised (not in the checkpoint)" if head_missing
                    else "from the checkpoint")
    model.bert = encoder  # with its pooler, so OUT/encoder keeps it
    model.config = encoder.config
    model.tie_weights()
    assert model.cls.predictions.decoder.weight is encoder.embeddings.word_embeddings.weight
    return model.train()


def save_encoder(model, tokenizer, dest: Path) -> None:
    """``dest``: the encoder (a BertModel checkpoint) + tokenizer + the MLM head, atomically."""
    from safetensors.torch import save_file

    from zhcls.utils import replace_dir

    staging = dest.parent / f".{dest.name}.staging"
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    model.bert.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    head = {k: v.detach().clone().contiguous() for k, v in model.cls.state_dict().items()
            if k != "predictions.decoder.weight"}  # tied to the word embeddings
    save_file(head, str(staging / HEAD_FILE))
    replace_dir(staging, dest)


# ----------------------------------------------------------------------------- run
def training_arguments(config: PretrainConfig, out: Path):
    from transformers import TrainingArguments

    from zhcls.training.train import cpu_has_native_bf16, resolve_precision

    t = config.train
    precision = resolve_precision(t.precision)
    if t.precision == "auto" and precision == "fp32" and cpu_has_native_bf16():
        precision = "bf16"
    return TrainingArguments(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
        max_steps=t.max_steps, learning_rate=t.lr, weight_decay=t.weight_decay,
        warmup_steps=int(round(t.warmup_ratio * t.max_steps)), lr_scheduler_type="linear",
        gradient_accumulation_steps=t.grad_accum, max_grad_norm=t.max_grad_norm,
        eval_strategy="no", save_strategy="steps", save_steps=min(t.save_steps, t.max_steps),
        save_total_limit=t.save_total_limit, logging_steps=t.logging_steps, report_to=[],
        seed=t.seed, data_seed=t.seed, bf16=precision == "bf16", fp16=precision == "fp16",
        dataloader_num_workers=t.num_workers, remove_unused_columns=False,
        disable_tqdm=False, use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=True,  # the pooler gets no gradient from MLM
        restore_callback_states_from_checkpoint=True,
    )


def make_collator(config: PretrainConfig, tokenizer):
    m = config.mask
    if m.unit == "word":
        from zhcls.training.mlm_data import WholeWordMaskCollator

        return WholeWordMaskCollator(tokenizer, m.rate, m.mask_replace, m.random_replace,
                                     m.span_weights())
    from transformers import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(tokenizer, mlm_probability=m.rate,
                                           mask_replace_prob=m.mask_replace,
                                           random_replace_prob=m.random_replace)


def pretrain(config: PretrainConfig, out_dir: str | Path | None = None) -> PretrainResult:
    """Continue MLM pretraining of ``config.model.pretrained``; the encoder lands in
    ``OUT/encoder``."""
    from transformers import set_seed

    from zhcls.devices import apply_threads
    from zhcls.modeling.encoder import check_encoder_path, load_tokenizer
    from zhcls.training.mlm_data import MLMDataset, encode_texts
    from zhcls.training.rundir import inspect_run_dir

    apply_threads(config.train.threads, "train.threads")
    config = copy.deepcopy(config)
    out = Path(out_dir or config.train.output_dir)
    config.train.output_dir = str(out)
    if not config.model.pretrained:
        raise ConfigError("no encoder given: pass --model.pretrained DIR_OR_HUB_NAME (e.g. the "
                          "output of `zhcls init-tiny`)")
    check_encoder_path(config.model.pretrained)
    files = corpus_files(config)
    plan = inspect_run_dir(out, config, fingerprint(config, files), OUTPUTS)
    set_seed(config.train.seed)
    tokenizer = load_tokenizer(config.model.pretrained)
    texts = read_corpus(config, files)
    dataset = MLMDataset(encode_texts(texts, tokenizer, config.corpus.max_length))
    tokens = sum(dataset.lengths)
    logger.info("corpus: %d texts -> %d examples, %d tokens (max_length %d); masking %s, rate "
                "%g", len(texts), len(dataset), tokens, config.corpus.max_length,
                config.mask.unit, config.mask.rate)
    model = build_mlm(config.model.pretrained)  # before the run directory is touched
    args = training_arguments(config, out)
    plan.apply()
    trainer, history = _build_trainer(config, model, args, tokenizer, dataset, plan, out)
    epochs = config.train.max_steps * config.train.batch_size * config.train.grad_accum / len(dataset)
    logger.info("schedule: %d steps x batch %d x grad_accum %d (%.2f epochs of the corpus), lr "
                "%g", config.train.max_steps, config.train.batch_size, config.train.grad_accum,
                epochs, config.train.lr)
    trainer.train(resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None)
    logs = [e for e in trainer.state.log_history if "loss" in e]
    metrics = {"global_step": trainer.state.global_step, "examples": len(dataset),
               "tokens": tokens, "texts": len(texts),
               "first_logged_train_loss": logs[0]["loss"] if logs else None,
               "first_logged_step": logs[0]["step"] if logs else None,
               "last_logged_train_loss": logs[-1]["loss"] if logs else None,
               "last_logged_step": logs[-1]["step"] if logs else None,
               "logging_steps": config.train.logging_steps,
               "epochs": epochs if math.isfinite(epochs) else None}
    encoder_dir = out / "encoder"
    save_encoder(trainer.model, tokenizer, encoder_dir)
    atomic_write_json(out / "metrics.json", metrics)
    atomic_write_json(out / "history.json", {"log_history": trainer.state.log_history,
                                             "epoch_steps": history.epoch_steps})
    logger.info("encoder written to %s (step %d; %s)", encoder_dir, trainer.state.global_step,
                loss_summary(metrics))
    return PretrainResult(out, encoder_dir, metrics)


def loss_summary(metrics: dict) -> str:
    """The MLM train loss of a run's first and last log, each with its step (the mean over the
    ``logging_steps`` before it), or why none was logged."""
    if metrics.get("first_logged_step") is None:
        return (f"MLM train loss not logged: {metrics['global_step']} steps, fewer than "
                f"train.logging_steps {metrics['logging_steps']}")
    return (f"MLM train loss {metrics['first_logged_train_loss']:.4f} at step "
            f"{metrics['first_logged_step']} -> {metrics['last_logged_train_loss']:.4f} at step "
            f"{metrics['last_logged_step']} (each the mean over the {metrics['logging_steps']} "
            "steps before it)")


def _build_trainer(config: PretrainConfig, model, args, tokenizer, dataset, plan, out: Path):
    """The MLM PretrainTrainer with zhcls's callbacks (history, progress, TensorBoard) and the
    run record; returns ``(trainer, history)``."""
    from transformers.trainer_callback import ProgressCallback

    from zhcls.training.train import _has_tensorboard
    from zhcls.training.trainer import (
        HistoryCallback,
        TensorBoardLogCallback,
        ZhclsProgressCallback,
    )

    history = HistoryCallback()
    trainer = PretrainTrainer(model=model, args=args, train_dataset=dataset,
                              data_collator=make_collator(config, tokenizer),
                              callbacks=[history])
    if config.train.tensorboard and _has_tensorboard():
        trainer.add_callback(TensorBoardLogCallback(out / "tensorboard"))
    trainer.run_record = plan.record
    history.epoch_steps = list(plan.epoch_steps)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ZhclsProgressCallback())
    return trainer, history
