"""``zhcls export CKPT --format onnx|hf --out DIR [--quantize int8] [--opset 17]``"""

from __future__ import annotations

import argparse

from zhcls.errors import ZhclsError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (runs on onnxruntime) or to "
                                      "a plain Hugging Face transformers directory")
    p.add_argument("checkpoint", help="checkpoint directory (e.g. runs/x/best)")
    p.add_argument("--format", default="onnx", choices=("onnx", "hf"),
                   help="onnx: any head, onnxruntime; hf: bert/ERNIE heads as "
                        "AutoModelForSequenceClassification (loads without zhcls)")
    p.add_argument("--out", required=True, help="output directory, new or empty")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in --out (any other content is refused)")
    p.add_argument("--quantize", default="none", choices=("none", "int8"),
                   help="also write an int8 dynamically quantised model (model.int8.onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.format == "hf":
        return _run_hf(args)
    from zhcls.inference.export import export_onnx
    from zhcls.utils import require_extra

    require_extra("export")
    result = export_onnx(args.checkpoint, args.out, opset=args.opset, quantize=args.quantize,
                         overwrite=args.overwrite)
    print(f"wrote {result.model_path} (head {result.head}, opset {result.opset})")
    print(f"parity on {result.check_texts} texts: max |p_onnx - p_torch| = "
          f"{result.max_abs_prob_diff:.2e}")
    if result.int8_path is not None:
        print(f"wrote {result.int8_path}: max |p_int8 - p_torch| = "
              f"{result.int8_max_abs_prob_diff:.2e}, top-1 agreement "
              f"{result.int8_top1_agreement:.1%}")
    print(f"use it: zhcls predict {result.out_dir} \"文本\"  or  Classifier.load("
          f"{str(result.out_dir)!r})")
    return 0


def _run_hf(args: argparse.Namespace) -> int:
    from zhcls.inference.export_hf import export_hf

    if args.quantize != "none":
        raise ZhclsError("--quantize applies to --format onnx only; drop it for --format hf")
    result = export_hf(args.checkpoint, args.out, overwrite=args.overwrite)
    print(f"wrote {result.out_dir} ({result.extra['architecture']}, head {result.head})")
    print(f"parity on {result.check_texts} texts: max |p_transformers - p_zhcls| = "
          f"{result.max_abs_prob_diff:.2e}")
    print(f"use it: pipeline(\"text-classification\", model={str(result.out_dir)!r})")
    return 0
