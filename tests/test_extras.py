"""Optional extras: the core install predicts without them; a feature whose extra is missing
says so in one line with the pip command; pyproject's extras match what the code asks for."""

from __future__ import annotations

import re
import sys

import pytest

from conftest import REPO
from predict_fixtures import head_checkpoint
from zhcls.cli import main
from zhcls.utils import EXTRAS, MissingExtraError, require_extra

EXTRA_MODULES = [m for mods in EXTRAS.values() for m in mods]


def hide(monkeypatch, *modules: str) -> None:
    """Make ``import NAME`` fail as if the package were not installed."""
    for name in modules:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_require_extra_names_the_pip_command(monkeypatch):
    require_extra("serve")  # installed here: no error
    hide(monkeypatch, "captum")
    with pytest.raises(MissingExtraError) as info:
        require_extra("explain")
    message = str(info.value)
    assert "captum is not installed" in message and "pip install 'zhcls[explain]'" in message
    assert "\n" not in message


def test_core_predicts_without_any_extra(monkeypatch, tmp_path_factory, tiny_model):
    from zhcls.inference.classifier import Classifier

    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    hide(monkeypatch, *EXTRA_MODULES)
    pred = Classifier.load(ckpt, "cpu").predict("央行宣布下调存款准备金率")
    assert pred.label in ("体育", "财经", "科技")


@pytest.mark.parametrize(("argv", "extra"), [
    (["serve", "CKPT"], "serve"),
    (["export", "CKPT", "--out", "OUT"], "export"),
])
def test_cli_without_the_extra_is_a_one_line_error(monkeypatch, tmp_path_factory, tiny_model,
                                                   tmp_path, caplog, argv, extra):
    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    hide(monkeypatch, *EXTRAS[extra])
    argv = [str(ckpt) if a == "CKPT" else str(tmp_path / "o") if a == "OUT" else a
            for a in argv]
    assert main(argv) == 2
    assert f"pip install 'zhcls[{extra}]'" in caplog.text


def test_explain_ig_without_captum(monkeypatch, tmp_path_factory, tiny_model):
    from zhcls.inference.classifier import Classifier
    from zhcls.inference.explain import explain_texts

    ckpt = head_checkpoint(tmp_path_factory.getbasetemp(), tiny_model, "bert")
    hide(monkeypatch, "captum")
    with pytest.raises(MissingExtraError, match=r"zhcls\[explain\]"):
        explain_texts(Classifier.load(ckpt, "cpu"), ["央行宣布下调存款准备金率"])


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!\[ ;]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in requirements}


def test_pyproject_extras_match_the_code():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    core = _names(project["dependencies"])
    for extra, modules in EXTRAS.items():
        declared = _names(optional[extra])
        assert {m.replace("_", "-") for m in modules} == declared, extra
        assert not declared & core, f"[{extra}] packages must not be core dependencies"
    assert f"zhcls[{','.join(EXTRAS)}]" in optional["all"]
    assert "zhcls[all]" in optional["dev"], "the README's `pip install -e .[dev]` gives all"
