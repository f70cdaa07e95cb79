"""``zhcls explain CKPT "文本" [--method auto|attention|ig|all] [--format png|json]``"""

from __future__ import annotations

import argparse


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
    p.add_argument("--out", help="PNG path (default explain.png; several texts: explain-N.png)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from zhcls.inference.classifier import Classifier
    from zhcls.inference.explain import explain_texts, plot_explanation

    clf = Classifier.load(args.checkpoint, args.device)
    explanations = explain_texts(clf, args.texts, method=args.method, target=args.target,
                                 steps=args.steps)
    if args.format == "json":
        for expl in explanations:
            print(json.dumps(expl.to_dict(), ensure_ascii=False))
    if args.format == "json" and not args.out:
        return 0
    out = Path(args.out or "explain.png")
    if not out.suffix:  # matplotlib would save OUT.png and the summary would name OUT
        out = out.with_suffix(".png")
    for i, expl in enumerate(explanations, start=1):
        path = out if len(explanations) == 1 else out.with_name(f"{out.stem}-{i}{out.suffix}")
        plot_explanation(expl, path)
        if args.format == "png":
            print(_summary(expl, path))
    return 0


def _summary(expl, path) -> str:
    if expl.task == "multi_label":
        return _multilabel_summary(expl, path)
    lines = [f"{expl.text}", f"  predicted {expl.label} ({expl.probs[expl.label_id]:.1%})"]
    for method, scores in expl.scores.items():
        ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:5]
        top = "  ".join(f"{expl.tokens[i]} {scores[i]:+.3f}" for i in ranked)
        lines.append(f"  {method:<9} top: {top}")
    if expl.reading_note:
        lines.append(f"  note: {expl.reading_note}")
    lines.append(f"  heatmap: {path}")
    return "\n".join(lines)


def _multilabel_summary(expl, path) -> str:
    chosen = ", ".join(f"{expl.labels[j]} ({expl.probs[j]:.1%})" for j in expl.predicted)
    lines = [f"{expl.text}", f"  predicted {chosen or '(no label above its threshold)'}"]
    for t in expl.targets:
        scores = expl.per_target.get(t, {}).get("ig")
        if scores:
            ranked = sorted(range(len(scores)), key=lambda i: -scores[i])[:5]
            top = "  ".join(f"{expl.tokens[i]} {scores[i]:+.3f}" for i in ranked)
            lines.append(f"  ig {expl.labels[t]} top: {top}")
    if expl.reading_note:
        lines.append(f"  note: {expl.reading_note}")
    lines.append(f"  heatmap: {path}")
    return "\n".join(lines)
