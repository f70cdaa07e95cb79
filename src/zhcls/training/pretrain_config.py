"""``zhcls pretrain``'s configuration: the keys of continued masked-language-model pretraining,
each declared once with :func:`zhcls.config.opt` (``zhcls pretrain --help``, ``--print-config``,
the YAML loader and validation read these declarations, as for ``zhcls train``).

``load_config(path, overrides, root=PretrainConfig)`` loads one; the sections are ``model``
(the encoder to continue), ``corpus`` (the unlabelled text), ``mask`` (how tokens are chosen
and replaced) and ``train`` (optimisation and the run directory, with ``zhcls train``'s
``resume`` / ``overwrite`` semantics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zhcls.config import Sections, opt
from zhcls.errors import ConfigError

MASK_UNITS = ("char", "word")
SEGMENTERS = ("jieba",)
#: MacBERT's n-gram masking weights for spans of 1, 2, 3, 4 words (Cui et al. 2020).
MACBERT_NGRAM_WEIGHTS = (0.4, 0.3, 0.2, 0.1)


@dataclass
class PretrainModelConfig:
    """The encoder whose pretraining continues."""

    pretrained: str | None = opt(None, "encoder: hub name, HF directory, research layout or "
                                 "`zhcls init-tiny` output (BERT family)")

    def validate(self) -> None:
        pass


@dataclass
class CorpusConfig:
    """The unlabelled text: files, zhcls datasets, or both."""

    text: list[str] = opt([], "plain text files or directories of *.txt (one text a line)")
    segmented: list[str] = opt([], "pre-segmented text files or directories (one text a line, "
                               "words separated by spaces): word boundaries for mask.unit word")
    data: list[str] = opt([], "zhcls dataset directories whose train texts are used")
    transductive: bool = opt(False, "also use the dev and test texts of corpus.data (unlabelled;"
                             " report results both ways)")
    max_length: int = opt(128, "tokens per example, [CLS]/[SEP] included; longer lines are cut"
                          " into several examples", low=8)
    min_chars: int = opt(2, "lines with fewer non-space characters are skipped", low=1)
    encoding: str = opt("utf-8", "text encoding of the corpus files")

    def validate(self) -> None:
        pass

    @property
    def is_empty(self) -> bool:
        return not (self.text or self.segmented or self.data)


@dataclass
class MaskConfig:
    """Which tokens are masked and what replaces them."""

    unit: str = opt("char", "char: tokens chosen one by one (BERT); word: whole words "
                    "(Chinese-BERT-wwm), boundaries from corpus.segmented or mask.segmenter",
                    choices=MASK_UNITS)
    rate: float = opt(0.15, "fraction of the tokens of a text that are predicted",
                      low=0.0, high=1.0, high_open=True)
    mask_replace: float = opt(0.8, "of the chosen tokens, the fraction replaced by [MASK]",
                              low=0.0, high=1.0)
    random_replace: float = opt(0.1, "of the chosen tokens, the fraction replaced by a random "
                                "token (the rest stay unchanged)", low=0.0, high=1.0)
    segmenter: str | None = opt(None, "word boundaries of unsegmented texts for mask.unit word:"
                                " jieba (pip install jieba); null: only corpus.segmented "
                                "texts are allowed", choices=(*SEGMENTERS, None))
    max_ngram: int = opt(1, "word masking: spans of up to N consecutive words (MacBERT's "
                         "n-gram masking); 1: single whole words", low=1)
    ngram_weights: list[float] | None = opt(None, "relative weights of spans of 1..max_ngram "
                                            "words; null: MacBERT's 0.4,0.3,0.2,0.1 (cut and "
                                            "renormalised)")

    def validate(self) -> None:
        if self.rate <= 0:
            raise ConfigError(f"mask.rate: expected a fraction in (0, 1), got {self.rate}")
        if self.mask_replace + self.random_replace > 1 + 1e-9:
            raise ConfigError(f"mask.mask_replace {self.mask_replace} + mask.random_replace "
                              f"{self.random_replace} exceed 1; they are fractions of the "
                              "chosen tokens (the rest stay unchanged)")
        weights = self.ngram_weights
        if weights is not None and (len(weights) != self.max_ngram or any(w < 0 for w in weights)
                                    or not any(w > 0 for w in weights)):
            raise ConfigError(f"mask.ngram_weights: expected {self.max_ngram} weights >= 0 "
                              f"(one per span length 1..mask.max_ngram), not all 0; got "
                              f"{self.ngram_weights}")

    def span_weights(self) -> list[float]:
        """Normalised probabilities of spans of 1..max_ngram words."""
        raw = list(self.ngram_weights) if self.ngram_weights is not None else [
            MACBERT_NGRAM_WEIGHTS[i] if i < len(MACBERT_NGRAM_WEIGHTS) else MACBERT_NGRAM_WEIGHTS[-1]
            for i in range(self.max_ngram)]
        total = sum(raw)
        return [w / total for w in raw]


@dataclass
class PretrainTrainConfig:
    """Optimisation, schedule, precision, logging and the run directory."""

    output_dir: str = opt("runs/pretrain", "run directory (encoder/, checkpoints, logs); --out "
                          "sets it")
    lr: float = opt(5e-4, "peak AdamW learning rate (linear warm-up, then linear decay)",
                    positive=True)
    batch_size: int = opt(64, "examples per step", positive=True)
    max_steps: int = opt(1000, "optimizer steps", positive=True)
    warmup_ratio: float = opt(0.06, "fraction of all steps spent warming up", low=0.0, high=1.0)
    weight_decay: float = opt(0.01, "AdamW weight decay (not on biases and LayerNorm)",
                              low=0.0, high=1.0)
    grad_accum: int = opt(1, "gradient accumulation steps per optimizer step", positive=True)
    max_grad_norm: float = opt(1.0, "gradient clipping norm")
    save_steps: int = opt(200, "write a resumable checkpoint every N steps", positive=True)
    logging_steps: int = opt(20, "log the MLM loss every N steps", positive=True)
    seed: int = opt(1, "seed of the MLM head's initialisation, shuffling and masking")
    precision: str = opt("auto", "auto: bf16/fp16 on GPU, bf16 on CPUs with native bf16",
                         choices=("auto", "fp32", "bf16", "fp16"))
    threads: int | None = opt(None, "CPU threads for torch (null/0: $ZHCLS_THREADS, else "
                              "torch's default)", low=0)
    num_workers: int = opt(0, "DataLoader worker processes", low=0)
    resume: bool = opt(False, "continue the run in output_dir from its newest complete checkpoint")
    overwrite: bool = opt(False, "remove the earlier run's outputs in output_dir first (--overwrite)")
    save_total_limit: int = opt(2, "Trainer checkpoints kept on disk", low=1)
    tensorboard: bool = opt(True, "write TensorBoard logs to output_dir/tensorboard")

    def validate(self) -> None:
        if self.resume and self.overwrite:
            raise ConfigError("train.resume and train.overwrite (--overwrite) are both true: "
                              "resume continues the run in the output directory, overwrite "
                              "deletes it; choose one")


@dataclass
class PretrainConfig(Sections):
    """``zhcls pretrain``: ``model``, ``corpus``, ``mask`` and ``train`` sections."""

    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    train: PretrainTrainConfig = field(default_factory=PretrainTrainConfig)

    def validate(self) -> PretrainConfig:
        return super().validate()


#: Keys that do not change the pretrained encoder: they may differ on resume. Corpus paths
#: are neutral because the files' digests are part of the fingerprint.
NEUTRAL_KEYS = frozenset({
    "train.output_dir", "train.resume", "train.overwrite", "train.logging_steps",
    "train.threads", "train.num_workers", "train.save_total_limit", "train.tensorboard",
    "train.save_steps",
    "corpus.text", "corpus.segmented", "corpus.data",
})
