"""``zhcls label`` on multi-label data: the prompt asks for every applicable class with an
independent probability, the parser reads such answers (and refuses bad ones), the writer
stores them in the JSONL the readers read, and ``--teacher`` with a multi-label baseline
writes its per-class probabilities. Uses the fake server of tests/llm_server.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llm_server import LLMTestServer
from zhcls.label.llm import label_with_llm
from zhcls.label.parse import parse_answer

KEY_ENV = "ZHCLS_TEST_LLM_KEY"
FAST = dict(timeout=5.0, max_retries=1, backoff_base=0.01, backoff_max=0.05, progress=False,
            api_key_env=KEY_ENV)
NAMES = ["价格", "动力", "外观"]
ROWS = [("这车价格太贵了", [0]), ("动力强劲，外观也漂亮", [1, 2]), ("今天去提车了", []),
        ("加速有力", [1]), ("性价比高，颜值在线", [0, 2])]
P_IN, P_OUT = 0.9, 0.05


class MultiLabelServer(LLMTestServer):
    """Answers every text with P_IN for its gold classes and P_OUT for the others (or what
    ``reply`` gives); gold maps text → list of class ids."""

    def __init__(self, *args, reply=None, **kwargs):
        super().__init__(*args, faults=False, **kwargs)
        self.reply = reply

    def _choice(self, text: str, fault: str, body: dict, index: int) -> dict:
        gold = self.gold[text]
        obj = {n: (P_IN if i in gold else P_OUT) for i, n in enumerate(self.class_names)}
        content = self.reply(text) if self.reply else json.dumps(obj, ensure_ascii=False)
        return {"index": index, "message": {"role": "assistant", "content": content},
                "finish_reason": "stop"}


@pytest.fixture(autouse=True)
def _api_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")


def make_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "class.txt").write_text("\n".join(NAMES), encoding="utf-8")
    body = "".join(json.dumps({"text": t, "labels": [NAMES[i] for i in ls]}, ensure_ascii=False)
                   + "\n" for t, ls in ROWS)
    (root / "train.jsonl").write_text(body, encoding="utf-8")
    (root / "dev.jsonl").write_text(body, encoding="utf-8")
    return root


# ------------------------------------------------------------------------------- parser
def test_parser_keeps_independent_probabilities():
    got = parse_answer('好的：{"价格": 0.8, "动力": 0.7, "外观": 0.1}', NAMES, multi_label=True)
    assert got.ok and got.probs == [0.8, 0.7, 0.1] and not got.renormalised
    single = parse_answer('{"价格": 0.8, "动力": 0.7, "外观": 0.1}', NAMES)
    assert sum(single.probs) == pytest.approx(1.0)  # single-label unchanged: a distribution
    none = parse_answer('{"价格": 0, "动力": 0, "外观": 0}', NAMES, multi_label=True)
    assert none.ok and none.probs == [0.0, 0.0, 0.0]  # no class applies: allowed
    missing = parse_answer('{"动力": "85%"}', NAMES, multi_label=True)
    assert missing.probs == [0.0, 0.85, 0.0] and missing.missing == 2 and missing.percent
    bare = parse_answer('{"价格": 90, "动力": 10, "外观": 0}', NAMES, multi_label=True)
    assert bare.probs == pytest.approx([0.9, 0.1, 0.0]) and bare.percent


@pytest.mark.parametrize("answer, reason", [
    ('{"价格": 1.5, "动力": 250, "外观": 0}', "outside [0, 1]"),
    ('{"价格": -0.2, "动力": 0.5, "外观": 0}', "outside [0, 1]"),
    ('{"价格": 0.9, "天窗": 0.8, "外观": 0}', "no class"),
    ('{"价格": 0.9, "动力": "高", "外观": 0}', "expected a number"),
    ('{"价格": 0.9, "动力": 0.', "truncated"),
])
def test_parser_refuses_bad_answers_with_a_reason(answer, reason):
    got = parse_answer(answer, NAMES, multi_label=True)
    assert not got.ok and reason in got.error


# ------------------------------------------------------------------------------- prompt
def test_prompt_asks_for_every_applicable_class():
    from zhcls.errors import ConfigError
    from zhcls.label.prompt import build_prompt

    prompt = build_prompt(NAMES, multi_label=True, few_shot=[("动力强劲，外观也漂亮", (1, 2)),
                                                             ("今天去提车了", ())])
    text = prompt.render("油耗不高")
    assert "油耗不高" in text and "不必为 1" in text and "可能同时涉及多个类别" in text
    assert "类别：动力、外观" in text and "类别：无" in text
    assert prompt.hash != build_prompt(NAMES).hash  # other prompt, other cache entries
    with pytest.raises(ConfigError, match="--use-logprobs"):
        build_prompt(NAMES, multi_label=True, logprobs=True)


# ------------------------------------------------------------------------- end to end
def test_llm_labels_multi_label_data_into_readable_jsonl(tmp_path):
    from zhcls.data.formats import read_split

    data, out = make_data(tmp_path / "data"), tmp_path / "out"
    with MultiLabelServer(NAMES, {t: ls for t, ls in ROWS}) as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                few_shot=2, **FAST)
        prompt = server.bodies[0]["messages"][-1]["content"]
    assert "不必为 1" in prompt and "示例" in prompt
    assert report.labelled == 5 and report.failed == 0 and report.agreement == 1.0
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text("utf-8").splitlines()]
    assert [r["labels"] for r in lines] == [[NAMES[i] for i in ls] for _, ls in ROWS]
    assert lines[1]["teacher_probs"] == [P_OUT, P_IN, P_IN]  # not renormalised
    assert not (out / "train.txt").exists() and (out / "dev.jsonl").is_file()
    split = read_split(out / "train.jsonl", NAMES, task="multi_label")
    assert [e.label for e in split.examples] == [ls for _, ls in ROWS]


def test_unusable_answers_fail_per_line_and_the_rest_is_written(tmp_path):
    data, out = make_data(tmp_path / "data"), tmp_path / "out"
    bad = ROWS[3][0]

    def reply(text: str) -> str:
        return '{"价格": 3, "动力": 700, "外观": 0}' if text == bad else \
            json.dumps({n: 0.6 for n in NAMES}, ensure_ascii=False)

    with MultiLabelServer(NAMES, {t: ls for t, ls in ROWS}, reply=reply) as server:
        report = label_with_llm(data, "train", out, model="m", base_url=server.base_url,
                                parse_retries=1, **FAST)
    assert report.failed == 1 and report.failure_kinds == {"unparseable": 1}
    assert report.failed_lines == [4]
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text("utf-8").splitlines()]
    assert "teacher_probs" not in lines[3] and lines[0]["teacher_probs"] == [0.6] * 3


def test_teacher_baseline_writes_per_class_probabilities(tmp_path):
    pytest.importorskip("skops")
    from zhcls.label.local import label_with_checkpoint
    from zhcls.modeling.ngram import BaselineBackend, load_baseline
    from zhcls.workflows.baseline import train_baseline

    data = make_data(tmp_path / "data")
    rows = [json.loads(x) for x in (data / "train.jsonl").read_text("utf-8").splitlines()]
    (data / "train.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                              for r in rows * 4), encoding="utf-8")
    base = train_baseline(data, tmp_path / "base", classifier="logreg", thresholds="fixed")
    label_with_checkpoint(base.checkpoint, data, "dev", tmp_path / "kd")
    lines = [json.loads(x) for x in (tmp_path / "kd" / "dev.jsonl").read_text().splitlines()]
    probs = np.array([r["teacher_probs"] for r in lines])  # (5, 3)
    want = BaselineBackend(load_baseline(base.checkpoint)).probs([t for t, _ in ROWS])
    np.testing.assert_allclose(probs, want, atol=1e-5)
    assert probs[1, 1] > 0.5 and probs[1, 2] > 0.5  # two classes at once


def test_cli_dry_run_shows_the_multi_label_prompt(tmp_path, capsys):
    from zhcls.cli import main

    data = make_data(tmp_path / "data")
    with MultiLabelServer(NAMES, {t: ls for t, ls in ROWS}) as server:
        code = main(["label", "--llm", "m", "--base-url", server.base_url, "--data", str(data),
                     "--out", str(tmp_path / "out"), "--api-key-env", KEY_ENV, "--dry-run",
                     "--task", "multi_label"])
        assert code == 0 and server.total_hits == 0
        assert main(["label", "--llm", "m", "--base-url", server.base_url, "--data", str(data),
                     "--out", str(tmp_path / "out"), "--use-logprobs", "--dry-run"]) == 2
    printed = capsys.readouterr().out
    assert "不必为 1" in printed and ROWS[0][0] in printed
