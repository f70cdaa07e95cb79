"""Prediction throughput on CPU, all in one run: a naive one-text-at-a-time PyTorch loop (the
baseline), ``Classifier.predict`` (length-sorted batches), and the same API on onnxruntime
(fp32 and int8), plus ``zhcls predict --file ... --format jsonl`` end to end. Prints texts/s,
the speed-up over the naive loop, accuracy when the file has labels, and how far each path's
probabilities are from PyTorch's.

    python bench/predict_speed.py --checkpoint runs/x/best \\
        --file ../shared/data/thucnews/test.txt --n 2000 --naive-n 300

Needs a trained checkpoint (``zhcls train``); exports it to ONNX (with int8) in a temporary
directory unless ``--onnx-dir`` names an existing export.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def read_texts(path: Path, n: int) -> tuple[list[str], list[int] | None]:
    """``n`` texts spread evenly over the file (split files are often sorted by label)."""
    texts, labels = [], []
    with path.open(encoding="utf-8") as f:
        for raw in f:
            cols = raw.rstrip("\n").split("\t")
            if not cols[0].strip():
                continue
            texts.append(cols[0])
            labels.append(int(cols[1]) if len(cols) > 1 and cols[1].strip().isdigit() else -1)
    pick = np.linspace(0, len(texts) - 1, num=min(n, len(texts))).round().astype(int)
    # interleave so that any prefix (the naive loop's) is spread evenly as well
    pick = pick[np.argsort(np.arange(len(pick)) % 7, kind="stable")]
    texts, labels = [texts[i] for i in pick], [labels[i] for i in pick]
    return texts, (labels if all(x >= 0 for x in labels) else None)


def naive_loop(clf, texts: list[str]) -> tuple[float, np.ndarray]:
    """What a first attempt looks like: tokenise and run the model one text at a time."""
    model, tok = clf.backend.model, clf.tokenizer
    probs = []
    start = time.perf_counter()
    with torch.no_grad():
        for text in texts:
            enc = tok(text, truncation=True, max_length=clf.max_length, return_tensors="pt",
                      return_token_type_ids=False)
            logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
            probs.append(torch.softmax(logits, -1)[0].numpy())
    return time.perf_counter() - start, np.stack(probs)


def timed(clf, texts: list[str]) -> tuple[float, np.ndarray]:
    clf.predict_proba(texts[:64])  # warm-up (allocations, onnxruntime graph setup)
    start = time.perf_counter()
    probs = clf.predict_proba(texts)
    return time.perf_counter() - start, probs


def run_cli(target: Path, file: Path, extra: list[str], threads: int
            ) -> tuple[float, float | None]:
    """Wall time of ``zhcls predict --file`` (process start included) and its own texts/s.
    ``threads`` > 0 is passed as ``--threads``."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "zhcls", "predict", str(target), "--file",
                               str(file), "--format", "jsonl", "--out", f"{tmp}/out.jsonl",
                               "--device", "cpu", "--no-progress", *extra,
                              *(["--threads", str(threads)] if threads else [])],
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
        lines = len(Path(tmp, "out.jsonl").read_text(encoding="utf-8").splitlines())
    found = re.search(r"predicted (\d+) texts in [\d.]+ s \((\d+) texts/s", done.stderr)
    assert found and int(found.group(1)) == lines, done.stderr
    return wall, float(found.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--file", default="../shared/data/thucnews/test.txt")
    ap.add_argument("--n", type=int, default=2000, help="texts for the batched paths")
    ap.add_argument("--naive-n", type=int, default=300, help="texts for the naive loop")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--onnx-dir", help="existing export (with model.int8.onnx) to reuse")
    ap.add_argument("--skip-cli", action="store_true", help="skip the zhcls predict runs")
    ap.add_argument("--threads", type=int, default=0,
                    help="intra-op threads for torch and onnxruntime alike (0: library default)")
    args = ap.parse_args()

    import logging

    logging.basicConfig(level=logging.WARNING)
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.export import export_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    file = Path(args.file)
    texts, labels = read_texts(file, args.n)
    torch_clf = Classifier.load(args.checkpoint, "cpu", batch_size=args.batch_size)
    tmp = tempfile.TemporaryDirectory()
    onnx_dir = Path(args.onnx_dir) if args.onnx_dir else Path(tmp.name) / "onnx"
    if not args.onnx_dir:
        export_onnx(args.checkpoint, onnx_dir, quantize="int8")
    print(f"checkpoint {args.checkpoint} (head {torch_clf.head}), {len(texts)} texts from {file}, "
          f"threads {args.threads or 'default'} (torch uses {torch.get_num_threads()}), batch size {args.batch_size}")

    rows = []
    naive_s, naive_p = naive_loop(torch_clf, texts[: args.naive_n])
    rows.append(("naive loop (torch, 1 text/call)", args.naive_n, naive_s, naive_p))
    batched_s, torch_p = timed(torch_clf, texts)
    rows.append(("Classifier.predict (torch)", len(texts), batched_s, torch_p))
    for name, quantized in (("Classifier.predict (onnxruntime fp32)", False),
                            ("Classifier.predict (onnxruntime int8)", True)):
        clf = Classifier.load(onnx_dir, "cpu", batch_size=args.batch_size, quantized=quantized,
                              threads=args.threads or None)
        seconds, probs = timed(clf, texts)
        rows.append((name, len(texts), seconds, probs))
    report(rows, torch_p, labels)
    print(f"naive loop vs batched probabilities: max |Δp| = "
          f"{np.abs(naive_p - torch_p[: args.naive_n]).max():.2e}")
    if not args.skip_cli:
        print(f"\nzhcls predict --file {file} --format jsonl (whole file, process start included):")
        for name, target, extra in (("torch", Path(args.checkpoint), []),
                                    ("onnxruntime fp32", onnx_dir, []),
                                    ("onnxruntime int8", onnx_dir, ["--quantized"])):
            wall, own = run_cli(target, file, extra, args.threads)
            print(f"  {name:<18} wall {wall:6.1f} s   reported {own:8.0f} texts/s")
    tmp.cleanup()
    return 0


def report(rows, torch_p: np.ndarray, labels: list[int] | None) -> None:
    naive_rate = rows[0][1] / rows[0][2]
    print(f"\n{'path':<40} {'texts':>6} {'seconds':>8} {'texts/s':>9} {'x naive':>8} "
          f"{'accuracy':>9} {'max|Δp| vs torch':>17}")
    for name, n, seconds, probs in rows:
        acc = (f"{(probs.argmax(1) == np.asarray(labels[:n])).mean():.4f}"
               if labels is not None else "-")
        diff = np.abs(probs - torch_p[:n]).max()
        print(f"{name:<40} {n:>6} {seconds:>8.2f} {n / seconds:>9.0f} "
              f"{n / seconds / naive_rate:>7.1f}x {acc:>9} {diff:>17.2e}")
    print(json.dumps({name: round(n / s, 1) for name, n, s, _ in rows}))


if __name__ == "__main__":
    sys.exit(main())
