"""``zhcls report RUN_DIR [RUN_DIR ...] [--out DIR] [--data DIR] [--split dev]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="HTML report of a training run, or a comparison of several",
        description="Write RUN_DIR/report/report.html: training curves, confusion matrices, "
        "per-class scores, a t-SNE map of the dev representations with its silhouette score, "
        "the most confused class pairs with examples, metrics and config. With two or more "
        "runs, also a comparison page with the maps side by side (in --out, default "
        "RUN_A/report_vs_<B>/).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="output directory of zhcls train")
    p.add_argument("--out", help="where to write (default: RUN_DIR/report, or "
                   "RUN_A/report_vs_<B> for a comparison)")
    p.add_argument("--data", help="dataset directory (default: data.dir from the run's config)")
    p.add_argument("--split", default="dev", help="split to analyse (default: dev)")
    p.add_argument("--max-points", type=int, default=2000,
                   help="examples drawn and scored in the representation maps (default: 2000)")
    p.add_argument("--method", choices=("tsne", "pca"), default="tsne",
                   help="2-D projection of the maps (default: tsne; pca is much faster)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--baseline", metavar="CKPT", help="a `zhcls baseline` checkpoint whose "
                   "numbers go beside the model's, per class (default: RUN_DIR/baseline when "
                   "it exists)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from zhcls.report.run_report import build_report
    from zhcls.utils import check_out_not_file

    if args.out:
        check_out_not_file(args.out)
    page = build_report(args.runs, args.out, data_dir=args.data, split=args.split,
                        max_points=args.max_points, method=args.method,
                        device=args.device, baseline=args.baseline)
    summary = page.parent / ("comparison.json" if len(args.runs) > 1 else "report.json")
    scores = json.loads(summary.read_text(encoding="utf-8"))["silhouette"]
    if isinstance(scores, dict):
        for name, score in scores.items():
            print(f"{name}: silhouette {score:.3f}")
    else:
        print(f"silhouette {scores:.3f}")
    print(f"report: {Path(page).resolve()}")
    return 0
