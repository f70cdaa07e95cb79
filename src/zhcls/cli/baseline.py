"""``zhcls baseline --data DIR --out OUT [--classifier svm|logreg] [--C 1.0]``"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "baseline", help="character n-gram TF-IDF + linear classifier: the bar to beat",
        description="Fit a character 1-3-gram TF-IDF + linear classifier (scikit-learn) on "
        "DIR/train, evaluate it on dev and test, and save it as a checkpoint that zhcls "
        "evaluate / predict / label --teacher and Classifier.load accept. Multi-label data "
        "(JSONL with a \"labels\" list, or --task multi_label) gets one-vs-rest calibrated "
        "models and per-class decision thresholds.")
    p.add_argument("--data", required=True, help="dataset directory with class.txt and train")
    p.add_argument("--out", required=True, help="checkpoint directory to write")
    p.add_argument("--classifier", choices=("svm", "logreg"), default="svm",
                   help="svm: LinearSVC with sigmoid calibration (default); logreg: logistic")
    p.add_argument("--C", dest="c", type=float, default=1.0, help="inverse regularisation")
    p.add_argument("--ngram-max", type=int, default=3, help="longest character n-gram")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", choices=("auto", "single_label", "multi_label"), default="auto",
                   help="auto: detected from the train file (default)")
    ml = p.add_argument_group("multi-label decision")
    ml.add_argument("--thresholds", choices=("cv", "fixed", "dev"), default="cv",
                    help="per-class thresholds tuned on out-of-fold train predictions (cv, "
                    "default), --threshold for every class (fixed), or tuned on dev (dev: "
                    "dev scores are then optimistic)")
    ml.add_argument("--threshold", type=float, default=0.5,
                    help="global threshold (and the fallback of untuned classes; default 0.5)")
    ml.add_argument("--at-least-one", action="store_true",
                    help="a text with no class above threshold gets its best-scoring class")
    ml.add_argument("--cv-folds", type=int, default=3, help="folds for --thresholds cv")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zhcls.workflows.baseline import train_baseline

    result = train_baseline(args.data, args.out, classifier=args.classifier, c=args.c,
                            ngram_max=args.ngram_max, seed=args.seed, task=args.task,
                            thresholds=args.thresholds, threshold=args.threshold,
                            at_least_one=args.at_least_one, cv_folds=args.cv_folds)
    print(f"baseline ({args.classifier}, {result.task}) fitted in {result.fit_seconds:.2f} s: "
          f"{result.checkpoint}")
    for split, m in (("dev", result.dev_metrics), ("test", result.test_metrics)):
        if m and result.task == "multi_label":
            print(f"baseline {split} micro-F1 {m['micro_f1']:.4f}, macro-F1 {m['macro_f1']:.4f}"
                  f" at thresholds tuned on {m['thresholds_tuned_on'] or '-'}; micro-F1 "
                  f"{m['micro_f1_at_default']:.4f}, macro-F1 {m['macro_f1_at_default']:.4f} "
                  f"at {m['threshold_default']:g} ({m['num_examples']} examples)")
        elif m:
            print(f"baseline {split} accuracy {m['accuracy']:.4f}, macro-F1 "
                  f"{m['macro_f1']:.4f} ({m['num_examples']} examples)")
    return 0
