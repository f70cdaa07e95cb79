"""``zhcls explain CKPT "文本" [--method auto|attention|ig|all] [--format png|json]``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

#: the --out suffixes each --format writes (the first is added to a path without one)
OUT_SUFFIXES = {"png": (".png",), "json": (".json", ".jsonl")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="which characters drove a prediction (PNG or JSON)",
                       description="Integrated-gradients attribution (every head) and the "
                       "attention weights (bert_GRU_att) over the characters of each text.")
    p.add_argument("checkpoint", help="checkpoint directory (PyTorch; not an ONNX export)")
    p.add_argument("texts", nargs="+", help="text(s) to explain")
    p.add_argument("--method", default="auto", choices=("auto", "attention", "ig", "all"),
                   help="auto/all: attention (bert_GRU_att) and ig; default auto")
    p.add_argument("--target", help="explain this label instead of the predicted one")
    p.add_argument("--steps", type=int, default=50, help="integrated-gradients steps")
    p.add_argument("--format", default="png", choices=("png", "json"),
                   help="png: heatmap file(s) and a summary; json: one JSON object per text")
    p.add_argument("--out", help="png: the PNG path (default explain.png; several texts: "
                   "explain-N.png); json: a .jsonl file (one object per line, as on stdout) "
                   "or a .json file (the object; a list of them for several texts); "
                   "default for json: stdout")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def out_path(fmt: str, out: str | None) -> Path | None:
    """The file ``--out`` names for ``--format fmt`` (the format's suffix added to a path
    without one; None: JSON to stdout); a suffix the format cannot write is a ConfigError."""
    from zhcls.errors import ConfigError

    if out is None:
        return Path("explain.png") if fmt == "png" else None
    path = Path(out)
    allowed = OUT_SUFFIXES[fmt]
    if not path.suffix:  # matplotlib would save OUT.png and the summary would name OUT
        return path.with_suffix(allowed[0])
    if path.suffix.lower() not in allowed:
        other = "--format json --out NAME.json" if fmt == "png" else "--format png"
        raise ConfigError(f"--out {out}: --format {fmt} writes {' or '.join(allowed)} files, "
                          f"found {path.suffix!r}; use --out {path.with_suffix(allowed[0])} "
                          f"(or {other})")
    return path


def run(args: argparse.Namespace) -> int:
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.explain import explain_texts, json_lines, plot_explanation, write_json

    out = out_path(args.format, args.out)  # before loading the model and the IG work
    clf = Classifier.load(args.checkpoint, args.device)
    clf.check_texts(args.texts, offset=1)  # "text 1" is the first argument
    explanations = explain_texts(clf, args.texts, method=args.method, target=args.target,
                                 steps=args.steps)
    if args.format == "json":
        if out is None:
            print(json_lines(explanations), end="")
        else:
            write_json(explanations, out)
            print(f"explained {len(explanations)} text(s) → {out}", file=sys.stderr)
        return 0
    for i, expl in enumerate(explanations, start=1):
        path = out if len(explanations) == 1 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        plot_explanation(expl, path)
        print(_summary(expl, path))
    return 0


def _top(expl, scores: list[float]) -> str:
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:5]
    return "  ".join(f"{expl.tokens[i]} {scores[i]:+.3f}" for i in ranked)


def _summary(expl, path: Path) -> str:
    """The console summary: the prediction, then the top tokens of each method; the IG line
    names the label it explains (the prediction, or --target)."""
    if expl.task == "multi_label":
        return _multilabel_summary(expl, path)
    lines = [f"{expl.text}", f"  predicted {expl.label} ({expl.probs[expl.label_id]:.1%})"]
    for method, scores in expl.scores.items():
        name = f"ig {expl.labels[expl.target_id]}" if method == "ig" else method
        lines.append(f"  {name} top: {_top(expl, scores)}")
    if expl.reading_note:
        lines.append(f"  note: {expl.reading_note}")
    lines.append(f"  heatmap: {path}")
    return "\n".join(lines)


def _multilabel_summary(expl, path: Path) -> str:
    chosen = ", ".join(f"{expl.labels[j]} ({expl.probs[j]:.1%})" for j in expl.predicted)
    lines = [f"{expl.text}", f"  predicted {chosen or '(no label above its threshold)'}"]
    for t in expl.targets:
        scores = expl.per_target.get(t, {}).get("ig")
        if scores:
            lines.append(f"  ig {expl.labels[t]} top: {_top(expl, scores)}")
    if expl.reading_note:
        lines.append(f"  note: {expl.reading_note}")
    lines.append(f"  heatmap: {path}")
    return "\n".join(lines)
