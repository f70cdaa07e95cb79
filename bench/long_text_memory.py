"""Peak memory of predicting ONE 100,000-character text with a ``data.long_text: chunks``
checkpoint: ``Classifier.predict`` (windows run ``--batch-size`` at a time, pooled after the
encoder) against a single ``model(..., chunk_mask)`` call over every window at once (what an
unbounded implementation would do). Each measurement runs in a fresh process and reports the
growth of peak RSS (``ru_maxrss``) over the process after loading and a warm-up prediction,
``encode`` measures the tokenisation alone; plus Python's own peak allocation (tracemalloc: token ids, window lists; tensors not included).

    python bench/long_text_memory.py --chars 100000 --max-length 256 --batch-sizes 8,32,128

Builds a random BERT (``--layers``, ``--hidden``; the bert-base-chinese vocabulary from
``../shared/data``) with ``zhcls init-tiny`` and saves an untrained chunks checkpoint in a
temporary directory; the text is real reviews from ``../shared/data/reviews`` concatenated.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def long_text(chars: int) -> str:
    lines = [ln.split("\t")[0] for ln in
             (SHARED / "reviews" / "train.txt").read_text("utf-8").splitlines()]
    out, n = [], 0
    for line in lines:
        out.append(line)
        n += len(line)
        if n >= chars:
            break
    return "".join(out)[:chars]


def build_checkpoint(out: Path, args) -> Path:
    import torch

    from zhcls.config import load_config
    from zhcls.modeling.checkpoint import save_checkpoint
    from zhcls.modeling.encoder import load_encoder, load_tokenizer
    from zhcls.modeling.model import build_model
    from zhcls.modeling.tiny import init_tiny

    tiny = init_tiny(out / "tiny", vocab=SHARED / "bert-base-chinese-vocab.txt",
                     layers=args.layers, hidden=args.hidden, heads=max(1, args.hidden // 64))
    config = load_config(REPO / "configs" / "tiny.yaml", [
        "--model.pretrained", str(tiny), "--data.max_length", str(args.max_length),
        "--data.long_text", "chunks"])
    torch.manual_seed(0)
    model = build_model(load_encoder(str(tiny)), config, 2).eval()
    return save_checkpoint(out / "ckpt", model, load_tokenizer(str(tiny)), config, ["a", "b"])


def measure(ckpt: str, chars: int, batch_size: int, mode: str) -> dict:
    """In this (fresh) process: peak RSS growth and tracemalloc peak of one prediction."""
    import torch

    from zhcls.inference.classifier import Classifier

    torch.set_num_threads(1)
    clf = Classifier.load(ckpt, "cpu", batch_size=batch_size)
    clf.predict("短评一条")  # warm-up: lazy imports, first allocations
    text = long_text(chars)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    if mode == "encode":
        clf.encode([text])
    elif mode == "bounded":
        clf.predict_logits([text])
    else:  # unbounded: every window in one encoder call
        from zhcls.data.dataset import collate_windows

        arrays = collate_windows(clf.encode([text]), clf.tokenizer.pad_token_id)
        with torch.inference_mode():
            clf.checkpoint.model(*(torch.from_numpy(a) for a in arrays[:2]),
                                 chunk_mask=torch.from_numpy(arrays[2]))
    _, py_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    windows = len(clf.encode([text])[0])
    return {"mode": mode, "chars": len(text), "windows": windows, "batch_size": batch_size,
            "rss_base_mib": round(base / 1024, 1), "rss_growth_mib": round((peak - base) / 1024, 1),
            "tracemalloc_peak_mib": round(py_peak / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chars", type=int, default=100_000)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-sizes", default="32", help="comma-separated, for bounded")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--modes", default="encode,bounded,unbounded")
    p.add_argument("--_child", nargs=3, metavar=("CKPT", "MODE", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args._child:
        ckpt, mode, batch = args._child
        print(json.dumps(measure(ckpt, args.chars, int(batch), mode)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = build_checkpoint(Path(tmp), args)
        runs = [(m, int(b)) for m in args.modes.split(",")
                for b in (args.batch_sizes.split(",") if m == "bounded" else ["0"])]
        for mode, batch in runs:
            out = subprocess.run([sys.executable, __file__, "--chars", str(args.chars),
                                  "--_child", str(ckpt), mode, str(batch or 64)],
                                 capture_output=True, text=True, check=True)
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(max_length=args.max_length, layers=args.layers, hidden=args.hidden)
            print(json.dumps(row, ensure_ascii=False))


if __name__ == "__main__":
    main()
