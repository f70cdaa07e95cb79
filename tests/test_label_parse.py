"""Unit tests of the pure parts of ``zhcls label --llm``: answer parsing and prompts."""

from __future__ import annotations

import json
import math

import pytest

from zhcls.errors import DataError
from zhcls.label.parse import (
    average,
    choice_labels,
    normalize_name,
    parse_answer,
    parse_top_logprobs,
    to_number,
)
from zhcls.label.prompt import (
    PLACEHOLDERS,
    build_prompt,
    check_template,
    pick_few_shot,
    read_descriptions,
)

NAMES = ["finance", "realty", "sports"]
ZH = ["财经", "房产", "体育"]


def approx(values, expected):
    return all(math.isclose(a, b, abs_tol=1e-9) for a, b in zip(values, expected, strict=True))


# ------------------------------------------------------------------------- clean answers
def test_plain_json():
    r = parse_answer('{"finance": 0.7, "realty": 0.2, "sports": 0.1}', NAMES)
    assert r.ok and approx(r.probs, [0.7, 0.2, 0.1])
    assert not r.percent and not r.renormalised and r.missing == 0 and r.unknown == []


def test_chinese_class_names():
    r = parse_answer('{"财经": 0.1, "房产": 0.8, "体育": 0.1}', ZH)
    assert approx(r.probs, [0.1, 0.8, 0.1])


@pytest.mark.parametrize("raw", [
    '```json\n{"finance": 0.7, "realty": 0.2, "sports": 0.1}\n```',
    '```\n{"finance": 0.7, "realty": 0.2, "sports": 0.1}\n```',
    '结果如下：\n```JSON\n{\n  "finance": 0.7,\n  "realty": 0.2,\n  "sports": 0.1\n}\n```\n希望有帮助。',
])
def test_fenced_json(raw):
    assert approx(parse_answer(raw, NAMES).probs, [0.7, 0.2, 0.1])


def test_prose_around_json():
    raw = ('好的，我认为这条新闻属于财经类。{"finance": 0.7, "realty": 0.2, "sports": 0.1} '
           '以上是概率，注意 {这不是 JSON}。')
    assert approx(parse_answer(raw, NAMES).probs, [0.7, 0.2, 0.1])


def test_prose_with_braces_before_the_json():
    raw = '分析{见下}：{"finance": 0.5, "realty": 0.5, "sports": 0}'
    assert approx(parse_answer(raw, NAMES).probs, [0.5, 0.5, 0.0])


# ----------------------------------------------------------------------- name variants
@pytest.mark.parametrize("raw", [
    '{" Finance ": 0.7, "REALTY": 0.2, "sports ": 0.1}',                     # spaces, case
    '{"ｆｉｎａｎｃｅ": 0.7, "ＲＥＡＬＴＹ": 0.2, "sports": 0.1}',               # full-width letters
    '｛"finance"：0.7，"realty"：0.2，"sports"：0.1｝',                          # full-width punct.
    '{"「finance」": 0.7, "realty：": 0.2, "　sports": 0.1}',                    # brackets, ideogr. space
    "{'finance': 0.7, 'realty': 0.2, 'sports': 0.1}",                         # single quotes
    '{“finance”: 0.7, “realty”: 0.2, “sports”: 0.1}',                          # curly quotes
    '{"finance": 0.7, "realty": 0.2, "sports": 0.1,}',                        # trailing comma
    "{finance: 0.7, realty: 0.2, sports: 0.1}",                               # bare keys
])
def test_name_and_syntax_variants(raw):
    r = parse_answer(raw, NAMES)
    assert r.ok, r.error
    assert approx(r.probs, [0.7, 0.2, 0.1])


def test_normalize_name():
    assert normalize_name(" ＦＩＮＡＮＣＥ： ") == "finance"
    assert normalize_name("「体育」") == "体育"
    assert normalize_name("real estate") == normalize_name("Real  Estate") == "realestate"


# ---------------------------------------------------------------------------- numbers
def test_percentages_summing_to_100():
    r = parse_answer('{"finance": 70, "realty": 20, "sports": 10}', NAMES)
    assert approx(r.probs, [0.7, 0.2, 0.1]) and r.percent and not r.renormalised


def test_percent_strings():
    r = parse_answer('{"finance": "70%", "realty": "20 %", "sports": "10％"}', NAMES)
    assert approx(r.probs, [0.7, 0.2, 0.1]) and r.percent and not r.renormalised


def test_bare_percent_values_are_repaired():
    r = parse_answer('{"finance": 70%, "realty": 20%, "sports": 10%}', NAMES)
    assert approx(r.probs, [0.7, 0.2, 0.1]) and r.percent


def test_numeric_strings():
    assert approx(parse_answer('{"finance": "0.7", "realty": "0.2", "sports": ".1"}',
                               NAMES).probs, [0.7, 0.2, 0.1])


@pytest.mark.parametrize("total", [80, 801, 0.5, 3])
def test_sums_not_one_are_renormalised(total):
    values = [0.7 * total, 0.2 * total, 0.1 * total]
    r = parse_answer(json.dumps(dict(zip(NAMES, values, strict=True))), NAMES)
    assert approx(r.probs, [0.7, 0.2, 0.1]) and r.renormalised and not r.percent


def test_small_rounding_is_not_flagged():
    r = parse_answer('{"finance": 0.33, "realty": 0.33, "sports": 0.33}', NAMES)
    assert not r.renormalised and math.isclose(sum(r.probs), 1.0)


def test_missing_classes_filled_with_zero_then_renormalised():
    r = parse_answer('{"realty": 0.6, "sports": 0.2}', NAMES)
    assert approx(r.probs, [0.0, 0.75, 0.25]) and r.missing == 1 and r.renormalised


def test_unknown_class_names_with_probability_fail_the_answer():
    r = parse_answer('{"finance": 0.7, "realty": 0.2, "sports": 0.1, "其他": 0.3, "x": 1}', NAMES)
    assert not r.ok and r.kind == "unknown_class" and sorted(r.unknown) == ["x", "其他"]
    assert "'其他'" in r.error and "'x'" in r.error


def test_unknown_names_without_probability_are_ignored_and_counted():
    raw = '{"finance": 0.7, "realty": 0.2, "sports": 0.1, "其他": 0, "理由": "央行相关"}'
    r = parse_answer(raw, NAMES)
    assert approx(r.probs, [0.7, 0.2, 0.1]) and sorted(r.unknown) == ["其他", "理由"]


@pytest.mark.parametrize("names, key, gold", [
    (NAMES, "sport", 2), (NAMES, "finanse", 0), (NAMES, "Real-ty", 1),
    (ZH, "体育类", 2), (ZH, "体育新闻", 2), (["stocks", "society"], "socks", 0),
])
def test_misspelt_class_is_renamed_when_the_match_is_unique(names, key, gold):
    others = {n: 0.05 for i, n in enumerate(names) if i != gold}
    r = parse_answer(json.dumps({key: 0.9, **others}, ensure_ascii=False), names)
    assert r.ok and max(range(len(names)), key=r.probs.__getitem__) == gold
    assert r.renamed == [key] and r.unknown == []


@pytest.mark.parametrize("names, key", [
    (["sport", "esports", "game"], "sports"),   # contains one name, is contained in another
    (["国际足球", "国内足球", "体育"], "足球"),    # contained in two names
    (ZH, "体肓"),                               # one character off in a two-character name
    (ZH, "育"),                                 # too short to match anything
    (NAMES, "politics"),
])
def test_ambiguous_or_distant_names_are_not_renamed(names, key):
    others = {n: 0.05 for n in names[1:]}
    r = parse_answer(json.dumps({key: 0.9, **others}, ensure_ascii=False), names)
    assert not r.ok and r.kind == "unknown_class" and r.unknown == [key]


def test_every_misspelling_the_fault_server_injects_is_repaired():
    from llm_server import SYNTHETIC_CLASSES, misspell

    thucnews = ["finance", "realty", "stocks", "education", "science", "society", "politics",
                "sports", "game", "entertainment"]
    for names in (thucnews, SYNTHETIC_CLASSES):
        for gold, name in enumerate(names):
            obj = {misspell(n) if n == name else n: 0.9 if n == name else 0.01 for n in names}
            r = parse_answer(json.dumps(obj, ensure_ascii=False), names)
            assert r.ok and r.probs.index(max(r.probs)) == gold, (name, r.error)


def test_duplicate_keys_after_normalisation_keep_the_larger_value():
    r = parse_answer('{"finance": 0.1, "Finance ": 0.7, "realty": 0.2, "sports": 0.1}', NAMES)
    assert approx(r.probs, [0.7, 0.2, 0.1])


def test_to_number():
    assert to_number(0.5) == (0.5, False)
    assert to_number(3) == (3.0, False)
    assert to_number("85%") == (0.85, True)
    assert to_number(" ８５．５％ ") == (0.855, True)
    assert to_number("1e-3") == (0.001, False)
    for bad in (True, None, "high", "nan", float("nan"), float("inf"), [1], {"p": 1}):
        assert to_number(bad) is None


# ------------------------------------------------------------------------ wrappers
def test_nested_probabilities_object():
    raw = '{"label": "finance", "probabilities": {"finance": 0.7, "realty": 0.2, "sports": 0.1}}'
    assert approx(parse_answer(raw, NAMES).probs, [0.7, 0.2, 0.1])


def test_list_of_records():
    raw = json.dumps([{"label": "finance", "probability": 0.7},
                      {"类别": "realty", "概率": "20%"}, {"class": "sports", "score": 0.1}],
                     ensure_ascii=False)
    assert approx(parse_answer(raw, NAMES).probs, [0.7, 0.2, 0.1])


def test_key_value_lines_without_json():
    raw = "finance: 70%\nrealty：20%\n- sports = 10%"
    assert approx(parse_answer(raw, NAMES).probs, [0.7, 0.2, 0.1])


# --------------------------------------------------------------------- unparseable
@pytest.mark.parametrize("raw, why", [
    ("", "empty"),
    ("   ", "empty"),
    ('{"finance": 0.7, "realty": 0.2, "spo', "no complete JSON"),          # truncated
    ('```json\n{"finance": 0.7, "realty": 0.2,\n', "no complete JSON"),    # truncated fence
    ('{"finance": 0, "realty": 0, "sports": 0}', "all probabilities are 0"),
    ('{"politics": 0.9, "game": 0.1}', "no known class"),
    ('{"finance": "high", "realty": 0.1}', "expected a number"),
    ('{"finance": true, "realty": 0.1}', "expected a number"),
    ('{"finance": -0.2, "realty": 1.2}', "negative"),
    ('{"finance": NaN, "realty": 0.2}', "expected a number"),
    ("我无法判断这条新闻的类别。", "no JSON object"),
    ("[1, 2, 3]", "JSON list"),
])
def test_unparseable(raw, why):
    r = parse_answer(raw, NAMES)
    assert not r.ok and r.probs is None
    assert why in r.error, r.error


def test_truncated_answer_is_not_repaired_even_if_it_names_classes():
    raw = '{"finance": 0.9, "realty": 0.05'
    assert not parse_answer(raw, NAMES).ok


def test_unknown_names_counted_on_failure_too():
    r = parse_answer('{"politics": 0.9}', NAMES)
    assert not r.ok and r.unknown == ["politics"]


# ------------------------------------------------------------------------- logprobs
def test_top_logprobs():
    top = [{"token": " 1", "logprob": math.log(0.6)}, {"token": "0", "logprob": math.log(0.2)},
           {"token": "1.", "logprob": math.log(0.1)}, {"token": "hello", "logprob": -1.0}]
    r = parse_top_logprobs(top, ["0", "1", "2"])
    assert approx(r.probs, [0.2 / 0.9, 0.7 / 0.9, 0.0])
    assert r.missing == 1 and r.unknown == ["hello"]


def test_top_logprobs_without_any_code():
    r = parse_top_logprobs([{"token": "x", "logprob": -0.1}], ["0", "1"])
    assert not r.ok and "no class code" in r.error
    assert not parse_top_logprobs([], ["0"]).ok


def test_choice_labels():
    assert choice_labels(3) == ["0", "1", "2"]
    assert choice_labels(10)[-1] == "9"
    assert choice_labels(11)[:2] == ["A", "B"] and choice_labels(26)[-1] == "Z"
    with pytest.raises(ValueError, match="at most 26"):
        choice_labels(27)


def test_average():
    assert approx(average([[1.0, 0.0], [0.5, 0.5]]), [0.75, 0.25])
    with pytest.raises(ValueError):
        average([])


# --------------------------------------------------------------------------- prompts
def test_default_prompt_lists_classes_and_text():
    prompt = build_prompt(ZH)
    rendered = prompt.render("央行宣布降准")
    assert "央行宣布降准" in rendered and "<<<\n央行宣布降准\n>>>" in rendered
    for name in ZH:
        assert f"- {name}" in rendered and f'"{name}"' in rendered
    assert "{text}" not in rendered and "{classes}" not in rendered


def test_prompt_hash_ignores_text_but_not_settings():
    a = build_prompt(ZH)
    assert a.hash == build_prompt(ZH).hash
    assert a.render("甲") != a.render("乙")
    assert a.hash != build_prompt(ZH, descriptions={"财经": "金融市场"}).hash
    assert a.hash != build_prompt(ZH, few_shot=[("某新闻", 0)]).hash
    assert a.hash != build_prompt(ZH, logprobs=True).hash


def test_text_with_braces_is_inserted_verbatim():
    prompt = build_prompt(ZH)
    assert "{classes} 与 {{x}}" in prompt.render("{classes} 与 {{x}}")


def test_custom_template_placeholders_and_literal_braces(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text('类别：{class_names}（{num_classes}）\n{{"示例": 1}} {"字面": 2}\n文本：{text}',
                    encoding="utf-8")
    out = build_prompt(ZH, template_path=path).render("新闻")
    assert out == '类别：财经、房产、体育（3）\n{"示例": 1} {"字面": 2}\n文本：新闻'


def test_template_errors(tmp_path):
    with pytest.raises(DataError, match="no {text} placeholder"):
        check_template("{classes}", "t.txt")
    with pytest.raises(DataError, match=r"unknown placeholder\(s\) \{clases\}"):
        check_template("{clases} {text}", "t.txt")
    with pytest.raises(DataError, match="prompt template not found"):
        build_prompt(ZH, template_path=tmp_path / "missing.txt")
    assert "text" in PLACEHOLDERS


def test_logprobs_prompt_numbers_the_classes():
    out = build_prompt(ZH, logprobs=True, descriptions={"房产": "楼市"}).render("新闻")
    assert "0. 财经" in out and "1. 房产：楼市" in out and "0、1、2" in out


def test_descriptions_json_and_tsv(tmp_path):
    j = tmp_path / "d.json"
    j.write_text(json.dumps({"财经": "股市、银行", "体育": "比赛"}, ensure_ascii=False), "utf-8")
    assert read_descriptions(j, ZH) == {"财经": "股市、银行", "体育": "比赛"}
    t = tmp_path / "d.tsv"
    t.write_text("财经\t股市、银行\n\n体育\t比赛\n", encoding="utf-8")
    assert read_descriptions(t, ZH) == {"财经": "股市、银行", "体育": "比赛"}
    rendered = build_prompt(ZH, descriptions=read_descriptions(t, ZH)).render("x")
    assert "- 财经：股市、银行" in rendered and "- 房产\n" in rendered


def test_descriptions_errors(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("财经\t股市\n军事\t战争\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:2: class '军事' is not in class.txt"):
        read_descriptions(bad, ZH)
    notab = tmp_path / "notab.txt"
    notab.write_text("财经 股市\n", encoding="utf-8")
    with pytest.raises(DataError, match="found no tab"):
        read_descriptions(notab, ZH)
    with pytest.raises(DataError, match="not found"):
        read_descriptions(tmp_path / "nope.json", ZH)


def test_few_shot_is_deterministic_and_covers_classes():
    pool = [(f"新闻{i}", i % 3) for i in range(30)]
    first = pick_few_shot(pool, 4)
    assert first == pick_few_shot(list(reversed(pool)), 4)
    assert sorted({label for _, label in first[:3]}) == [0, 1, 2] and len(first) == 4
    assert pick_few_shot(pool, 0) == []
    assert len(pick_few_shot(pool[:2], 5)) == 2
    rendered = build_prompt(ZH, few_shot=first).render("x")
    assert f"文本：{first[0][0]}\n类别：{ZH[first[0][1]]}" in rendered


def test_reasoning_block_is_ignored():
    raw = ('<think>草稿：{"finance": 0.1, "realty": 0.8, "sports": 0.1}，再想想。</think>\n'
           '{"finance": 0.7, "realty": 0.2, "sports": 0.1}')
    assert approx(parse_answer(raw, NAMES).probs, [0.7, 0.2, 0.1])
