"""Dev accuracy of linear n-gram variants around the zhcls baseline (docs/experiments.md
section 7, "reviews: where the errors are"): is the baseline's feature set what limits it?

    python experiments/linear_variants.py --data ../shared/data/reviews

Each row fits scikit-learn on ``DATA/train.txt`` and prints its accuracy on ``DATA/dev.txt``
(test is not read): character TF-IDF (1-3 and 1-4 grams, with and without sublinear tf) with
a linear SVM; NB-weighted binary character n-grams with logistic regression (Wang & Manning
2012, "Baselines and Bigrams", the NBSVM features); jieba words (1-2 grams) alone and beside
the characters (skipped when jieba is not installed: ``pip install jieba``). These are plain
LinearSVC / LogisticRegression scores; ``zhcls baseline`` calibrates its SVM, so its own dev
number differs slightly from the fourth row (its features: char 1-3, sublinear tf, C 1). The
splits are read as zhcls reads them; single-label tasks of two classes only (the NB rows weigh
class id 1 against class id 0).
Nothing here is imported by the package.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
from scipy.sparse import diags, hstack
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from zhcls.errors import ZhclsError
from zhcls.evaluation.metrics import headline_metrics
from zhcls.label.writer import read_label_data


def _read(data_dir: Path, split: str) -> tuple[list[str], np.ndarray]:
    try:
        data = read_label_data(data_dir, split, task="single_label")
    except ZhclsError as exc:
        sys.exit(str(exc))
    if len(data.class_names) != 2:
        sys.exit(f"{data_dir / 'class.txt'}: {len(data.class_names)} classes; this script "
                 "handles two-class tasks only")
    return [e.text for e in data.examples], np.array([e.label for e in data.examples])


def _acc(model, train, y_train, dev, y_dev) -> float:
    pred = model.fit(train, y_train).predict(dev)  # (N,)
    return 100 * headline_metrics(y_dev, pred, 2)["accuracy"]


def _char_rows(tr, ytr, dv, ydv) -> None:
    for orders, sublinear in (((1, 3), False), ((1, 3), True), ((1, 4), False), ((1, 4), True)):
        vec = TfidfVectorizer(analyzer="char", ngram_range=orders, sublinear_tf=sublinear)
        a, b = vec.fit_transform(tr), vec.transform(dv)
        for c in (0.3, 1.0):
            print(f"char TF-IDF {orders[0]}-{orders[1]}, sublinear_tf {sublinear}, SVM C {c}: "
                  f"{_acc(LinearSVC(C=c), a, ytr, b, ydv):.2f}")


def _nb_rows(tr, ytr, dv, ydv) -> None:
    for orders in ((1, 3), (1, 4)):
        vec = CountVectorizer(analyzer="char", ngram_range=orders, binary=True)
        a, b = vec.fit_transform(tr), vec.transform(dv)  # (N, V) binary counts
        pos, neg = 1 + a[ytr == 1].sum(0), 1 + a[ytr == 0].sum(0)  # (1, V) smoothed
        ratio = np.asarray(np.log((pos / pos.sum()) / (neg / neg.sum()))).ravel()  # (V,)
        a, b = a @ diags(ratio), b @ diags(ratio)
        for c in (0.1, 0.3, 1.0):
            model = LogisticRegression(C=c, max_iter=2000)
            print(f"NB-weighted binary char {orders[0]}-{orders[1]}, logistic C {c}: "
                  f"{_acc(model, a, ytr, b, ydv):.2f}")


def _word_rows(tr, ytr, dv, ydv) -> None:
    try:
        import jieba
    except ImportError:
        print("jieba rows skipped: jieba is not installed (pip install jieba)")
        return
    jieba.setLogLevel(logging.WARNING)

    def grams(words: list[str]) -> list[str]:
        return words + [f"{x} {y}" for x, y in zip(words, words[1:], strict=False)]

    wtr, wdv = [jieba.lcut(t) for t in tr], [jieba.lcut(t) for t in dv]
    words = TfidfVectorizer(analyzer=grams, sublinear_tf=True)
    chars = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True)
    a, b = words.fit_transform(wtr), words.transform(wdv)
    ca, cb = chars.fit_transform(tr), chars.transform(dv)
    for c in (0.3, 1.0):
        print(f"jieba words 1-2, SVM C {c}: {_acc(LinearSVC(C=c), a, ytr, b, ydv):.2f}")
        both_a, both_b = hstack([a, ca]).tocsr(), hstack([b, cb]).tocsr()
        print(f"jieba words 1-2 + char 1-3, SVM C {c}: "
              f"{_acc(LinearSVC(C=c), both_a, ytr, both_b, ydv):.2f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="dir with train.txt and dev.txt")
    args = p.parse_args(argv)
    tr, ytr = _read(args.data, "train")
    dv, ydv = _read(args.data, "dev")
    print(f"dev accuracy (%) on {args.data} dev ({len(dv)} texts), "
          f"fit on {len(tr)} train texts")
    _char_rows(tr, ytr, dv, ydv)
    _nb_rows(tr, ytr, dv, ydv)
    _word_rows(tr, ytr, dv, ydv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
