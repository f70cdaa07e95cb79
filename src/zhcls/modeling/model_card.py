"""The model card (``README.md``) every checkpoint directory carries, as the Hugging Face Hub
expects: YAML front matter (``language``, ``pipeline_tag``, ``library_name``, ``tags``,
``metrics``) and a body with the labels, the dev/test metrics, the objective, the data, the
command line that trained it and its intended use and limits.

Everything comes from the checkpoint's own files (``zhcls.yaml``, ``labels.json``,
``meta.json``), so the card can be re-written when more is known (test metrics after
evaluation) and copied into exports.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import yaml

from zhcls.utils import atomic_write_text

CARD_FILE = "README.md"
# Scalar metrics shown in the card, in this order (others are left to metrics.json).
CARD_METRICS = ("accuracy", "macro_f1", "micro_f1", "subset_accuracy", "hamming_loss", "loss",
                "num_examples", "step")


def card_metrics(metrics: dict[str, Any] | None) -> dict[str, Any]:
    """The scalar metrics worth keeping in ``meta.json`` and the card (no per-class tables,
    no runtimes)."""
    if not metrics:
        return {}
    return {k: metrics[k] for k in CARD_METRICS if isinstance(metrics.get(k), int | float)}


def write_model_card(checkpoint: str | Path, out_dir: str | Path | None = None, *,
                     library_name: str = "zhcls") -> Path:
    """Write ``README.md`` for ``checkpoint`` into ``out_dir`` (default: the checkpoint)."""
    checkpoint = Path(checkpoint)
    raw = yaml.safe_load((checkpoint / "zhcls.yaml").read_text(encoding="utf-8")) or {}
    labels = json.loads((checkpoint / "labels.json").read_text(encoding="utf-8"))["labels"]
    meta_path = checkpoint / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.is_file() else {}
    decision_path = checkpoint / "thresholds.json"
    if decision_path.is_file():  # multi-label: which split the thresholds were tuned on
        meta = {**meta, "decision": json.loads(decision_path.read_text(encoding="utf-8"))}
    text = render_model_card(raw, labels, meta, library_name=library_name)
    return atomic_write_text(Path(out_dir or checkpoint) / CARD_FILE, text)


def _ngram_words(model: dict[str, Any]) -> str:
    """", plus a hashed n-gram bag (...)" for a model with ``model.ngram_buckets > 0``."""
    if not model.get("ngram_buckets"):  # absent from checkpoints older than the bag
        return ""
    orders = "/".join(str(n) for n in model["ngram_orders"])
    return (f" plus a hashed token {orders}-gram bag ({model['ngram_buckets']:,} buckets × "
            f"{model['ngram_dim']})")


def render_model_card(config: dict[str, Any], labels: list[str], meta: dict[str, Any], *,
                      library_name: str = "zhcls") -> str:
    """The card's text (see module docstring) from the plain config dict, labels and meta."""
    model, data = config.get("model", {}), config.get("data", {})
    objective = config.get("objective", {})
    head = model.get("head", meta.get("head", "?"))
    metrics = meta.get("metrics") or {}
    front = {"language": ["zh"], "pipeline_tag": "text-classification",
             "library_name": library_name,
             "tags": ["zhcls", "text-classification", "chinese", f"head-{head}"],
             "metrics": ["accuracy", "f1"]}
    if _is_hub_name(model.get("pretrained", "")):
        front["base_model"] = model["pretrained"]
    lines = ["---", yaml.safe_dump(front, allow_unicode=True, sort_keys=False).rstrip(), "---",
             "", f"# zhcls {head} classifier ({len(labels)} classes)", "",
             f"A Chinese {_task_words(data)} classifier trained with zhcls "
             f"{meta.get('zhcls_version', '')}: encoder `{model.get('pretrained', '?')}`, head "
             f"`{head}`{_ngram_words(model)}, {_length_words(data, meta)}.", "",
             "## Labels", "", "| id | label |", "| --- | --- |"]
    lines += [f"| {i} | {name} |" for i, name in enumerate(labels)]
    tuned = _decision_note(meta.get("decision")) if data.get("task") == "multi_label" else []
    lines += ["", "## Metrics", "", *_metric_lines(metrics), *tuned, "", "## Training", "",
              f"- objective: `{_compact(objective)}`",
              f"- data: `{data.get('dir') or '(not recorded)'}`",
              *_weights_lines(config.get("train", {})),
              f"- command: `{meta.get('command') or '(not recorded)'}`", "",
              *_usage_lines(library_name), "", "## Intended use and limits", "",
              "Sorting Chinese texts of the kind it was trained on into the labels above. It "
              f"knows only these labels: {_decision_words(data)} Accuracy "
              "holds for texts like the training data (domain, length, period); check it on "
              "your own labelled sample before relying on it, and do not use it for decisions "
              f"about people without a human review. {_long_text_words(data)}", ""]
    return "\n".join(lines)


def _decision_note(decision: dict[str, Any] | None) -> list[str]:
    """What the multi-label numbers were decided with (thresholds.json), flagging the split
    the thresholds were tuned on: its row flatters the model."""
    if not decision:
        return []
    split = decision.get("tuned_on")
    if split:
        return ["", f"Multi-label: each class's threshold was tuned on {split}, so the "
                    f"{split} row flatters the model; the other rows do not."]
    return ["", f"Multi-label: every class is decided at threshold "
                f"{decision.get('default', 0.5)} (not tuned)."]


def _task_words(data: dict[str, Any]) -> str:
    return "multi-label" if data.get("task") == "multi_label" else "single-label"


def _decision_words(data: dict[str, Any]) -> str:
    if data.get("task") == "multi_label":
        return ("a text gets every label whose score reaches that label's threshold "
                "(thresholds.json), possibly none.")
    return "any text gets one of them, related or not."


def _weights_lines(train: dict[str, Any]) -> list[str]:
    """A line saying the weights are a moving average, for ``train.ema_decay > 0``."""
    if not train.get("ema_decay"):
        return []
    return [f"- weights: the exponential moving average of the weights at the best step "
            f"(`train.ema_decay {train['ema_decay']:g}`), not the raw weights of that step"]


def _length_words(data: dict[str, Any], meta: dict[str, Any]) -> str:
    n = data.get("max_length", meta.get("max_length", "?"))
    mode = data.get("long_text", "truncate")
    if mode == "chunks":
        return f"long texts read in overlapping windows of {n} tokens, pooled per text"
    if mode == "head_tail":
        return f"long texts cut to their first and last tokens ({n} in all)"
    return f"texts truncated to {n} tokens"


def _long_text_words(data: dict[str, Any]) -> str:
    mode = data.get("long_text", "truncate")
    if mode == "chunks":
        return "Texts longer than the token limit are read whole, window by window."
    if mode == "head_tail":
        return "Texts longer than the token limit are judged on their beginning and end only."
    return "Texts longer than the token limit are judged on their beginning only."


def command_line(argv: list[str]) -> str:
    """``sys.argv`` as a copy-pasteable shell line."""
    return shlex.join(str(a) for a in argv)


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    if not metrics:
        return ["(no metrics recorded)"]
    keys = [k for k in CARD_METRICS if any(k in (m or {}) for m in metrics.values())]
    if "subset_accuracy" in keys:  # multi-label: "accuracy" is the same number
        keys.remove("accuracy")
    out = ["| split | " + " | ".join(keys) + " |", "| --- |" + " --- |" * len(keys)]
    for split, values in metrics.items():
        values = values or {}
        out.append(f"| {split} | " + " | ".join(_num(values.get(k)) for k in keys) + " |")
    return out


def _usage_lines(library_name: str) -> list[str]:
    if library_name == "transformers":
        return ["## Use", "", "```python", "from transformers import pipeline", "",
                'clf = pipeline("text-classification", model="THIS_DIRECTORY")',
                'clf("央行宣布下调存款准备金率", top_k=None, truncation=True)', "```"]
    return ["## Use", "", "```python", "from zhcls import Classifier", "",
            'clf = Classifier.from_pretrained("THIS_DIRECTORY")  # or a Hub repo id',
            'clf.predict("央行宣布下调存款准备金率")', "```"]


def _is_hub_name(name: str) -> bool:
    return bool(name) and not name.startswith(("/", ".", "~")) and not Path(name).exists() \
        and name.count("/") <= 1


def _compact(section: dict[str, Any]) -> str:
    return json.dumps(section, ensure_ascii=False, separators=(", ", ": "))


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)
