"""``zhcls baseline --data DIR --out OUT [--classifier svm|logreg] [--C 1.0]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline", help="character n-gram TF-IDF + linear classifier: the bar to beat",
        description="Fit a character 1-3-gram TF-IDF + linear classifier (scikit-learn) on "
        "DIR/train, evaluate it on dev and test, and save it as a checkpoint that zhcls "
        "evaluate / predict / label --teacher and Classifier.load accept.")
    p.add_argument("--data", required=True, help="dataset directory with class.txt and train")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--classifier", choices=("svm", "logreg"), default="svm",
                   help="svm: LinearSVC with sigmoid calibration (default); logreg: logistic")
    p.add_argument("--C", dest="c", type=float, default=1.0, help="inverse regularisation")
    p.add_argument("--ngram-max", type=int, default=3, help="longest character n-gram")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.workflows.baseline import train_baseline

    result = train_baseline(args.data, args.out, classifier=args.classifier, c=args.c,
                            ngram_max=args.ngram_max, seed=args.seed)
    print(f"baseline ({args.classifier}) fitted in {result.fit_seconds:.2f} s: "
          f"{result.checkpoint}")
    for split, m in (("dev", result.dev_metrics), ("test", result.test_metrics)):
        if m:
            print(f"baseline {split} accuracy {m['accuracy']:.4f}, macro-F1 "
                  f"{m['macro_f1']:.4f} ({m['num_examples']} examples)")
    return 0
