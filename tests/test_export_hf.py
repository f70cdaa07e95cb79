"""``zhcls export --format hf``: the bert and ERNIE heads load with transformers alone (a child
Python in isolated mode where ``import zhcls`` fails) and give zhcls' probabilities; the other
heads are refused with the reason."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from predict_fixtures import head_checkpoint, sample_texts
from zhcls.cli import main
from zhcls.errors import ZhclsError
from zhcls.inference.classifier import Classifier
from zhcls.inference.export_hf import export_hf

# Runs in `python -I` (no PYTHONPATH, no cwd, no user site) with zhcls made unimportable.

pytestmark = pytest.mark.slow  # end-to-end; CI runs it (python -m pytest -m '')

CHILD = r"""
import json, sys
sys.modules["zhcls"] = None  # the venv's editable install must not help
try:
    import zhcls  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("zhcls is importable in the child")
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

texts = json.loads(sys.argv[1])
results = {}
for out in sys.argv[2:]:
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        enc = tok(texts, truncation=True, padding=True, return_tensors="pt")
        auto = torch.softmax(model(**enc).logits, -1).tolist()
    clf = pipeline("text-classification", model=out, device="cpu")
    label2id = model.config.label2id
    piped = [[0.0] * len(label2id) for _ in texts]
    for i, row in enumerate(clf(texts, top_k=None, truncation=True)):
        for item in row:
            piped[i][label2id[item["label"]]] = item["score"]
    results[out] = {"auto": auto, "pipeline": piped, "id2label": model.config.id2label,
                    "label2id": label2id}
print(json.dumps({"results": results, "zhcls_loaded": sys.modules.get("zhcls") is not None}))
"""


def test_hf_export_loads_without_zhcls_and_matches(tmp_path_factory, tiny_model):
    """One child process checks both heads (its imports dominate the time)."""
    base = tmp_path_factory.getbasetemp()
    ckpts, outs = {}, {}
    for head in ("bert", "ERNIE"):
        ckpts[head] = head_checkpoint(base, tiny_model, head)
        outs[head] = tmp_path_factory.mktemp(f"hf-{head}")
        assert export_hf(ckpts[head], outs[head]).max_abs_prob_diff < 1e-5
        assert not list(outs[head].glob("*.py")), "the export must not need remote code"
    texts = sample_texts(40)  # the last ones are longer than max_length: truncation matters
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-I", "-c", CHILD, json.dumps(texts),
                           *map(str, outs.values())], capture_output=True, text=True, env=env,
                          timeout=300, cwd=str(tmp_path_factory.mktemp("child-cwd")))
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not got["zhcls_loaded"]
    for head, out in outs.items():
        clf = Classifier.load(ckpts[head], "cpu")
        expected = clf.predict_proba(texts)  # (40, 3)
        # The probabilities must depend on the text well beyond the 1e-5 tolerance below, or an
        # export that ignored its input (or truncated differently) could pass. (Their size does
        # not matter: without ../shared's vocab this untrained model is near-uniform, ~0.42.)
        spread = float(np.ptp(expected, axis=0).max())
        assert spread > 1e-3, f"probabilities barely depend on the text ({spread:.1e})"
        res = got["results"][str(out)]
        for name in ("auto", "pipeline"):
            diff = float(np.abs(np.asarray(res[name]) - expected).max())
            assert diff < 1e-5, f"{head} via {name}: max |p_hf - p_zhcls| = {diff:.2e}"
        assert res["id2label"] == {str(i): name for i, name in enumerate(clf.labels)}
        assert res["label2id"] == {name: i for i, name in enumerate(clf.labels)}
        card = (out / "README.md").read_text(encoding="utf-8")
        assert "library_name: transformers" in card and "text-classification" in card


def test_other_heads_are_refused_with_the_reason(tmp_path_factory, tiny_model, tmp_path):
    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert_CNN")
    with pytest.raises(ZhclsError, match=r"bert_CNN.*own layers.*--format onnx"):
        export_hf(ckpt, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_export_hf(tmp_path_factory, tiny_model, tmp_path, capsys, caplog):
    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    assert main(["export", str(ckpt), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert "BertForSequenceClassification" in capsys.readouterr().out
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == \
        ["BertForSequenceClassification"]
    assert main(["export", str(ckpt), "--format", "hf", "--quantize", "int8",
                 "--out", str(tmp_path / "hf2")]) == 2
    assert "--quantize applies to --format onnx only" in caplog.text
