"""The ``zhcls label --llm`` options are declared once (:class:`LLMOptions`): the CLI flags
are generated from it and the Python API takes it."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from zhcls.errors import ZhclsError
from zhcls.label.options import LLMOptions, add_arguments, from_namespace

ALL_FLAGS = [
    "--llm", "m1", "--base-url", "http://h:1/v1", "--api-key-env", "none", "--concurrency", "3",
    "--samples", "2", "--temperature", "0.5", "--max-tokens", "10", "--timeout", "5",
    "--rpm", "60", "--tpm", "600", "--max-retries", "1", "--parse-retries", "0",
    "--backoff-base", "0.1", "--backoff-max", "1", "--prompt", "p.txt", "--descriptions",
    "d.json", "--few-shot", "2", "--use-logprobs", "--json-mode", "--extra-body", '{"a": 1}',
    "--cache", "c.sqlite", "--no-retry-failed", "--price-in", "1", "--price-out", "2",
    "--abort-after-failures", "3", "--dry-run", "--no-progress", "--wait-lock",
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_arguments(p.add_argument_group("--llm options"), p)
    return p


def test_every_flag_sets_its_field():
    opts = from_namespace(parser().parse_args(ALL_FLAGS))
    assert opts == LLMOptions(
        model="m1", base_url="http://h:1/v1", api_key_env=None, concurrency=3, samples=2,
        temperature=0.5, max_tokens=10, timeout=5.0, rpm=60.0, tpm=600.0, max_retries=1,
        parse_retries=0, backoff_base=0.1, backoff_max=1.0, prompt="p.txt",
        descriptions="d.json", few_shot=2, use_logprobs=True, json_mode=True,
        extra_body={"a": 1}, cache="c.sqlite", retry_failed=False, price_in=1.0,
        price_out=2.0, abort_after_failures=3, dry_run=True, progress=False, wait_lock=True)


def test_no_flags_give_the_dataclass_defaults(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert from_namespace(parser().parse_args(["--llm", "m"])) == LLMOptions(model="m")


def test_every_field_has_a_flag_with_help():
    helptext = parser().format_help()
    for f in dataclasses.fields(LLMOptions):
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        assert flag in helptext and f.metadata["help"], f.name
    assert "(default: 8)" in helptext  # defaults come from the dataclass


def test_cli_passes_one_options_object(monkeypatch, tmp_path):
    from zhcls.cli import main
    from zhcls.label import llm

    seen = []
    monkeypatch.setattr(llm, "label_with_llm",
                        lambda *args: seen.append(args) or llm.LabelReport(
                            split="train", model="m", output=None, cache="c", rows=0,
                            unique_texts=0))
    assert main(["label", "--data", "d", "--out", "o", "--split", "dev", *ALL_FLAGS]) == 0
    (data, split, out, opts), = seen
    assert (data, split, out) == ("d", "dev", "o")
    assert opts == from_namespace(parser().parse_args(ALL_FLAGS))


@pytest.mark.parametrize("change, flag", [
    ({"concurrency": 0}, "--concurrency"), ({"samples": 0}, "--samples"),
    ({"timeout": 0}, "--timeout"), ({"rpm": -1.0}, "--rpm"), ({"tpm": 0.0}, "--tpm"),
    ({"base_url": "api.example.com"}, "--base-url"), ({"model": ""}, "--llm"),
    ({"max_retries": -1}, "--max-retries"), ({"backoff_max": -1.0}, "--backoff-max"),
])
def test_bad_values_name_the_flag(change, flag):
    with pytest.raises(ZhclsError, match=flag):
        LLMOptions(**{"model": "m", **change})


def test_bad_extra_body_is_a_one_line_error():
    with pytest.raises(ZhclsError, match="--extra-body is not valid JSON"):
        from_namespace(parser().parse_args(["--llm", "m", "--extra-body", "{"]))


def test_resolved_fills_the_automatic_defaults():
    assert LLMOptions(model="m").resolved().temperature == 0.0
    assert LLMOptions(model="m", samples=3).resolved().temperature == 0.7
    assert LLMOptions(model="m").resolved().max_tokens == 512
    lp = LLMOptions(model="m", use_logprobs=True, samples=3).resolved()
    assert (lp.max_tokens, lp.samples) == (1, 1)


def test_python_api_takes_the_options_object_and_keyword_overrides(tmp_path):
    from zhcls.label.llm import label_with_llm

    data = tmp_path / "d"
    data.mkdir()
    (data / "class.txt").write_text("a\nb\n", encoding="utf-8")
    (data / "train.txt").write_text("文本\t0\n", encoding="utf-8")
    opts = LLMOptions(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=None)
    report = label_with_llm(data, "train", tmp_path / "o", opts, dry_run=True)
    assert report.dry_run and report.model == "m" and report.estimated_requests == 1
    with pytest.raises(TypeError, match="no_such_option"):
        label_with_llm(data, "train", tmp_path / "o", opts, no_such_option=1)
