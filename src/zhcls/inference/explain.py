"""Which characters drove a prediction.

* ``ig`` (every head): integrated gradients (Captum's ``LayerIntegratedGradients``) on the
  word-embedding layer, for the probability of the explained label, from a baseline of the
  same length where every real token is [PAD] ([CLS]/[SEP] kept). A token's score is its
  attribution summed over the embedding dimension, divided by the sum of absolute scores:
  positive pushed towards the label, negative away; the absolute values add up to 1.
* ``attention`` (``bert_GRU_att`` only): the head's attention weights over the tokens (they
  add up to 1 over all tokens, [CLS]/[SEP] included; only the text's tokens are shown).

Multi-label models explain every label of the predicted set (or ``target``; the best-scoring
class when the set is empty), each with its own IG run on that class's LOGIT (its sigmoid
score is monotone in it, and the logit of one class does not depend on the others), same
baseline and normalisation; ``Explanation.targets`` lists them and ``per_target`` holds the
scores of each (``scores`` / ``target_id`` / ``ig_delta`` are those of the first).

Chinese text is one token per character; a Latin word or a number is one or a few WordPiece
tokens and is shown as the span of the original text it covers.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from zhcls.errors import ZhclsError

logger = logging.getLogger(__name__)

METHODS = ("auto", "attention", "ig", "all")


@dataclass
class Explanation:
    """Token scores per method for one text, with the prediction they explain."""

    text: str
    tokens: list[str]  # surface text of each token ([CLS]/[SEP] left out)
    spans: list[tuple[int, int]]  # character offsets of each token in ``text``
    labels: list[str]
    probs: list[float]  # label-id order
    target_id: int  # the label whose probability is explained
    scores: dict[str, list[float]] = field(default_factory=dict)  # method → one per token
    truncated: bool = False
    ig_delta: float | None = None  # IG completeness error (sum of attributions vs Δp)
    task: str = "single_label"  # multi_label: probs are per-class sigmoid scores
    predicted: list[int] = field(default_factory=list)  # multi-label: the label set, best first
    #: a long text of a head_tail / chunks model: these scores explain its first
    #: max_length - 2 tokens; this note says what the model reads and predicts
    reading_note: str | None = None
    targets: list[int] = field(default_factory=list)  # multi-label: the explained labels
    per_target: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    per_target_delta: dict[int, float] = field(default_factory=dict)

    @property
    def label_id(self) -> int:
        if self.task == "multi_label" and self.predicted:
            return self.predicted[0]
        return int(np.argmax(self.probs))

    @property
    def label(self) -> str:
        return self.labels[self.label_id]

    def to_dict(self) -> dict:
        if self.task == "multi_label":
            return self._multilabel_dict()
        tokens = []
        for i, (tok, (start, end)) in enumerate(zip(self.tokens, self.spans, strict=True)):
            row = {"token": tok, "start": start, "end": end}
            row.update({m: s[i] for m, s in self.scores.items()})
            tokens.append(row)
        return {"text": self.text, "label": self.label, "label_id": self.label_id,
                "score": self.probs[self.label_id], "target": self.labels[self.target_id],
                "probs": dict(zip(self.labels, self.probs, strict=True)),
                "methods": list(self.scores), "tokens": tokens, "truncated": self.truncated,
                "reading_note": self.reading_note, "ig_convergence_delta": self.ig_delta}

    def _multilabel_dict(self) -> dict:
        """Tokens once (with attention when computed), then one entry per explained label
        with its IG scores (one per token) and convergence delta."""
        tokens = []
        for i, (tok, (start, end)) in enumerate(zip(self.tokens, self.spans, strict=True)):
            row = {"token": tok, "start": start, "end": end}
            if "attention" in self.scores:
                row["attention"] = self.scores["attention"][i]
            tokens.append(row)
        explained = []
        for t in self.targets:
            entry = {"label": self.labels[t], "label_id": t, "score": self.probs[t]}
            entry.update(self.per_target.get(t, {}))
            entry["ig_convergence_delta"] = self.per_target_delta.get(t)
            explained.append(entry)
        return {"text": self.text, "task": "multi_label",
                "labels": [{"label": self.labels[j], "label_id": j, "score": self.probs[j]}
                           for j in self.predicted],
                "scores": dict(zip(self.labels, self.probs, strict=True)),
                "methods": list(self.scores), "tokens": tokens, "explained": explained,
                "truncated": self.truncated, "reading_note": self.reading_note}

    def panels(self) -> list[tuple[str, str, list[float]]]:
        """(method, title, per-token scores) of each heatmap panel."""
        if self.task != "multi_label":
            return [(m, METHOD_TITLES.get(m, m), s) for m, s in self.scores.items()]
        out = []
        if "attention" in self.scores:
            out.append(("attention", METHOD_TITLES["attention"], self.scores["attention"]))
        for t in self.targets:
            if "ig" in self.per_target.get(t, {}):
                out.append(("ig", f"{self.labels[t]} ({self.probs[t]:.1%}): integrated "
                            "gradients of its logit (red: towards, blue: against)",
                            self.per_target[t]["ig"]))
        return out


def resolve_methods(method: str, head: str) -> list[str]:
    """The methods ``method`` stands for with this head; attention needs ``bert_GRU_att``."""
    if method not in METHODS:
        raise ZhclsError(f"--method must be one of {METHODS}, got {method!r}")
    has_attention = head == "bert_GRU_att"
    if method == "attention" and not has_attention:
        raise ZhclsError(f"head {head!r} has no attention weights (only bert_GRU_att does); "
                         "use --method ig")
    if method in ("auto", "all"):
        return ["attention", "ig"] if has_attention else ["ig"]
    return [method]


def explain_texts(clf, texts: list[str], *, method: str = "auto", target: str | None = None,
                  steps: int = 50) -> list[Explanation]:
    """Explain each text with a :class:`zhcls.Classifier` loaded from a PyTorch checkpoint."""
    model = getattr(clf.backend, "model", None)
    if model is None:
        from zhcls.modeling.ngram import is_baseline_dir

        what = ("a `zhcls baseline` model (model.skops: TF-IDF + a linear model, its weights "
                "per n-gram are not gradients of a network)" if is_baseline_dir(clf.source)
                else "an ONNX export")
        raise ZhclsError(f"{clf.source}: explanations need gradients, so they need the PyTorch "
                         f"checkpoint directory of `zhcls train` (RUN/best), not {what}")
    methods = resolve_methods(method, clf.head)
    if target is not None and target not in clf.labels:
        raise ZhclsError(f"--target {target!r} is not a label of this model; labels: "
                         f"{', '.join(clf.labels)}")
    if steps < 2:
        raise ZhclsError(f"--steps must be >= 2, got {steps}")
    clf.check_texts(texts)
    return [_explain_one(clf, model, text, methods, target, steps) for text in texts]


def _explain_one(clf, model, text: str, methods: list[str], target: str | None,
                 steps: int) -> Explanation:
    enc = clf.tokenizer(text, truncation=True, max_length=clf.max_length,
                        return_offsets_mapping=True, return_token_type_ids=False)
    full = clf.tokenizer(text, truncation=True, max_length=clf.max_length + 1)["input_ids"]
    device = next(model.parameters()).device
    ids = torch.tensor([enc["input_ids"]], device=device)  # (1, T)
    mask = torch.ones_like(ids)  # (1, T)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask)
    multi = getattr(clf, "task", "single_label") == "multi_label"
    logits = out.logits.float()  # (1, C)
    probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1))[0].cpu().numpy()
    target_id = clf.labels.index(target) if target is not None else int(probs.argmax())
    real = _real_token_positions(enc["input_ids"], clf.tokenizer)
    spans = [tuple(enc["offset_mapping"][i]) for i in real]
    expl = Explanation(text=text, tokens=[text[s:e] for s, e in spans], spans=spans,
                       labels=list(clf.labels), probs=[float(p) for p in probs],
                       target_id=target_id, truncated=len(full) > clf.max_length)
    expl.reading_note = _reading_note(clf, text) if expl.truncated else None
    if "attention" in methods:
        weights = out.attention[0].float().cpu().numpy()  # (T,)
        expl.scores["attention"] = [float(weights[i]) for i in real]
    if multi:
        _explain_labels(clf, model, expl, ids, mask, real, methods, target, steps)
        return expl
    if "ig" in methods:
        attr, delta = integrated_gradients(model, ids, mask, target_id, clf.tokenizer, steps)
        expl.scores["ig"] = [float(attr[i]) for i in real]
        expl.ig_delta = delta
    return expl


def _explain_labels(clf, model, expl: Explanation, ids: torch.Tensor, mask: torch.Tensor,
                    real: list[int], methods: list[str], target: str | None,
                    steps: int) -> None:
    """Multi-label: IG of each predicted label's logit (or of ``target`` alone)."""
    probs = np.asarray(expl.probs)[None, :]  # (1, C)
    expl.task = "multi_label"
    expl.predicted = clf.to_predictions(probs.astype(np.float32))[0].labels
    expl.predicted = [x.label_id for x in expl.predicted]
    if target is not None:
        expl.targets = [clf.labels.index(target)]
    else:  # nothing above threshold: explain why the best class came closest
        expl.targets = list(expl.predicted) or [int(probs.argmax())]
    expl.target_id = expl.targets[0]
    for t in expl.targets:
        expl.per_target[t] = {}
        if "ig" in methods:
            attr, delta = integrated_gradients(model, ids, mask, t, clf.tokenizer, steps,
                                               output="logit")
            expl.per_target[t]["ig"] = [float(attr[i]) for i in real]
            expl.per_target_delta[t] = delta
    first = expl.per_target[expl.target_id]
    if "ig" in first:
        expl.scores["ig"] = first["ig"]
        expl.ig_delta = expl.per_target_delta[expl.target_id]


def _real_token_positions(ids: list[int], tokenizer) -> list[int]:
    special = set(tokenizer.all_special_ids)
    return [i for i, t in enumerate(ids) if t not in special or t == tokenizer.unk_token_id]


def integrated_gradients(model, ids: torch.Tensor, mask: torch.Tensor, target: int, tokenizer,
                         steps: int = 50, output: str = "softmax") -> tuple[np.ndarray, float]:
    """Per-token IG scores (T,) for p(target) (``output="softmax"``) or for the target's
    logit (``"logit"``, multi-label), normalised to sum(|score|) = 1, and the convergence
    delta. Baseline: [PAD] in place of every non-special token."""
    from zhcls.utils import require_extra

    require_extra("explain")
    from captum.attr import LayerIntegratedGradients

    def prob_of(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits  # (B, C)
        if output == "logit":
            return logits.float()  # (B, C)
        return torch.softmax(logits.float(), dim=-1)  # (B, C)

    special = torch.tensor(sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id}),
                           device=ids.device)
    baseline = torch.where(torch.isin(ids, special), ids,
                           torch.full_like(ids, tokenizer.pad_token_id))  # (1, T)
    bag = getattr(model, "ngrams", None)
    layers = [model.encoder.get_input_embeddings()] + ([bag.embedding] if bag is not None else [])
    with warnings.catch_warnings():  # the two tables are independent, as captum asks
        warnings.filterwarnings("ignore", message="Multiple layers provided")
        lig = LayerIntegratedGradients(prob_of, layers if bag is not None else layers[0])
    # cuDNN RNNs refuse backward in eval mode; the native kernels give the same numbers.
    with torch.backends.cudnn.flags(enabled=False), torch.enable_grad():
        attr, delta = lig.attribute(ids, baselines=baseline, target=target,
                                    additional_forward_args=(mask,), n_steps=steps,
                                    internal_batch_size=steps, return_convergence_delta=True)
    if bag is not None:  # the bag's share, each n-gram's spread evenly over its tokens
        attr, ngram_attr = attr
    per_token = attr.sum(dim=-1)[0].detach().float()  # (T,)
    if bag is not None:
        per_token = per_token + bag.spread_to_tokens(ngram_attr.sum(dim=-1)[0].detach().float(),
                                                     ids.shape[1])  # (T,)
    per_token = per_token.cpu().numpy()  # (T,)
    total = np.abs(per_token).sum()
    return (per_token / total if total > 0 else per_token), float(delta.abs().max())


def json_lines(explanations: list[Explanation]) -> str:
    """One JSON object per explanation and line (what ``zhcls explain --format json``
    prints), ending in a newline."""
    return "".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in explanations)


def write_json(explanations: list[Explanation], path: str | Path) -> Path:
    """Write ``explanations`` atomically: a ``.json`` file holds one JSON document (the
    object of a single text, a list of them for several), any other file JSON Lines."""
    from zhcls.utils import atomic_write_json, atomic_write_text

    path = Path(path)
    if path.suffix.lower() == ".json":
        dicts = [e.to_dict() for e in explanations]
        return atomic_write_json(path, dicts[0] if len(dicts) == 1 else dicts)
    return atomic_write_text(path, json_lines(explanations))


METHOD_TITLES = {"ig": "积分梯度 integrated gradients (red: towards the label, blue: against)",
                 "attention": "注意力权重 attention weights (bert_GRU_att)"}


def plot_explanation(expl: Explanation, path: str | Path, per_row: int = 20) -> Path:
    """A PNG heatmap over the characters, one panel per method, with the predicted label and
    the top probabilities in the title."""
    from zhcls.report.fonts import cjk_font_context

    with cjk_font_context():
        return _plot_explanation(expl, Path(path), per_row)


def _plot_explanation(expl: Explanation, path: Path, per_row: int) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(expl.tokens))
    cols = min(per_row, n)
    rows = -(-n // cols)
    panels = expl.panels()
    fig = Figure(figsize=(max(6.0, 0.55 * cols + 1.8), 0.9 + len(panels) * (0.55 * rows + 0.7)))
    FigureCanvasAgg(fig)  # pyplot-free: no backend switch for the caller
    axes = fig.subplots(max(1, len(panels)), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=False):
        _heatmap(fig, ax, expl.tokens, panel, rows, cols)
    fig.suptitle(_title(expl), fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    return path


def _reading_note(clf, text: str) -> str | None:
    """For a model that reads long texts otherwise than by their first tokens (head_tail,
    chunks): what it reads and predicts, beside what was explained (the first
    ``max_length - 2`` text tokens)."""
    spec = getattr(clf, "windows", None)
    mode = getattr(spec, "mode", "truncate")
    if mode == "truncate":
        return None
    content = clf.max_length - 2
    total = len(clf.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    if mode == "head_tail":
        head, tail = spec.head_tokens, content - spec.head_tokens
        kept = [f"first {head}"] * bool(head) + [f"last {tail}"] * bool(tail)
        reads = f"reads its {' and '.join(kept)} tokens"
    else:
        windows = len(clf.encode([text])[0])
        reads = (f"reads it in {windows} windows of up to {content} tokens (stride "
                 f"{spec.stride})")
    probs = clf.predict_proba(text)  # (C,): the model's own reading
    best = int(np.argmax(probs))
    return (f"explained: the first {content} of the text's {total} tokens only; this {mode} "
            f"model {reads} and predicts {clf.labels[best]} {probs[best]:.1%} (zhcls predict)")


def _truncation_line(expl: Explanation) -> str:
    return "\n(" + (expl.reading_note or "text truncated to the model's max_length") + ")"


def _title(expl: Explanation) -> str:
    if expl.task == "multi_label":
        chosen = "  ".join(f"{expl.labels[j]} {expl.probs[j]:.1%}" for j in expl.predicted)
        line = f"预测 predicted labels: {chosen or '(none above threshold)'}"
        return line + (_truncation_line(expl) if expl.truncated else "")
    order = np.argsort(-np.asarray(expl.probs), kind="stable")[:3]
    top = "  ".join(f"{expl.labels[i]} {expl.probs[i]:.1%}" for i in order)
    line = f"预测 predicted: {expl.label} ({expl.probs[expl.label_id]:.1%})    概率 top-3: {top}"
    if expl.target_id != expl.label_id:
        line += f"\n解释的标签 explained label: {expl.labels[expl.target_id]}"
    if expl.truncated:
        line += _truncation_line(expl)
    return line


def _heatmap(fig, ax, tokens: list[str], panel: tuple[str, str, list[float]], rows: int,
             cols: int) -> None:
    method, title, scores = panel
    scores = np.asarray(scores, dtype=float)
    grid = np.full((rows, cols), np.nan)
    grid.flat[: len(scores)] = scores
    if method == "ig":
        vmax = float(np.abs(scores).max()) if len(scores) else 1.0
        cmap, vmin = "RdBu_r", -(vmax or 1.0)
    else:
        vmax = float(scores.max()) if len(scores) else 1.0
        cmap, vmin = "Reds", 0.0
    image = ax.imshow(grid, cmap=cmap, vmin=vmin, vmax=vmax or 1.0, aspect="equal")
    for i, token in enumerate(tokens):
        r, c = divmod(i, cols)
        strong = abs(scores[i]) > 0.6 * max(abs(vmin), abs(vmax or 1.0))
        ax.text(c, r, token if len(token) <= 6 else token[:5] + "…", ha="center",
                va="center", fontsize=13 if len(token) == 1 else max(6, 11 - len(token)),
                color="white" if strong else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02, shrink=0.9)
