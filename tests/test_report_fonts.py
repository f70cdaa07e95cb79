"""CJK font discovery: the found font really covers Chinese and rendering shows no boxes; the
packaged font works without any system font; the caller's rcParams are never changed."""

from __future__ import annotations

import contextlib
import logging
import warnings

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from zhcls.report import fonts  # noqa: E402

SAMPLE = "金融 房产 股票"
NO_FONT_REASON = ("no CJK font installed (apt-get install fonts-wqy-microhei, or set "
                  "ZHCLS_CJK_FONT); see .ci/apt-packages.txt")


@pytest.fixture(autouse=True)
def _restore_matplotlib(monkeypatch):
    monkeypatch.delenv(fonts.ENV_VAR, raising=False)
    saved = matplotlib.rcParams.copy()
    yield
    matplotlib.rcParams.update(saved)
    fonts._state.update(done=False, font=None)


@pytest.fixture
def cjk_font() -> fonts.CJKFont:
    found = fonts.find_cjk_font()
    if found is None:
        pytest.skip(NO_FONT_REASON)
    return found


def _render(text: str, cjk: bool = True) -> list[str]:
    """Draw ``text`` on a fresh Agg figure; return every warning / log message raised."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    messages: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    handler = _Collect(level=logging.WARNING)
    mpl_logger = logging.getLogger("matplotlib")
    mpl_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with fonts.cjk_font_context() if cjk else contextlib.nullcontext():
                fig = Figure(figsize=(3, 1))
                FigureCanvasAgg(fig)
                ax = fig.add_subplot()
                ax.set_title(text)
                ax.set_xticks(range(len(text.split())), text.split())
                fig.canvas.draw()
    finally:
        mpl_logger.removeHandler(handler)
    return messages + [str(w.message) for w in caught]


def _missing_glyph(messages: list[str]) -> list[str]:
    return [m for m in messages if "missing from" in m.lower() or "glyph" in m.lower()]


def test_found_font_has_glyphs_for_chinese(cjk_font):
    assert fonts.font_covers(cjk_font.path, SAMPLE)
    try:
        from fontTools.ttLib import TTCollection, TTFont
    except ImportError:
        return
    if cjk_font.path.lower().endswith((".ttc", ".otc")):
        cmap = TTCollection(cjk_font.path).fonts[0].getBestCmap()
    else:
        cmap = TTFont(cjk_font.path).getBestCmap()
    assert all(ord(ch) in cmap for ch in SAMPLE.replace(" ", ""))


def test_setup_registers_the_font_and_leaves_rcparams_alone(cjk_font):
    before = matplotlib.rcParams.copy()
    family = fonts.setup_cjk_font(refresh=True)
    assert family == cjk_font.family
    assert dict(matplotlib.rcParams) == dict(before)
    assert fonts.current_cjk_font() == cjk_font
    assert fonts.setup_cjk_font() == family  # cached
    with fonts.cjk_font_context() as inside:
        assert inside == family and matplotlib.rcParams["font.sans-serif"][0] == family
        assert matplotlib.rcParams["axes.unicode_minus"] is False
    assert dict(matplotlib.rcParams) == dict(before)


def test_plotting_keeps_a_notebook_users_settings(cjk_font, tmp_path):
    from zhcls.report.plots import plot_confusion_matrix

    matplotlib.rcParams["font.family"] = ["serif"]
    matplotlib.rcParams["axes.unicode_minus"] = True
    backend = matplotlib.get_backend()
    plot_confusion_matrix(np.eye(2, dtype=int), ["体育", "财经"], tmp_path / "cm.png")
    assert matplotlib.rcParams["font.family"] == ["serif"]
    assert matplotlib.rcParams["axes.unicode_minus"] is True
    assert matplotlib.get_backend() == backend


def test_rendering_chinese_has_no_missing_glyphs(cjk_font):
    fonts.setup_cjk_font(refresh=True)
    assert _missing_glyph(_render(SAMPLE)) == []


def test_packaged_font_renders_chinese_without_system_fonts(monkeypatch, caplog):
    """A fresh server with no CJK font: the font shipped by the dependency is used."""
    monkeypatch.setenv(fonts.SYSTEM_ENV_VAR, "0")
    with caplog.at_level(logging.WARNING, logger="zhcls.report.fonts"):
        family = fonts.setup_cjk_font(refresh=True)
        messages = _render("体育 财经 科技 娱乐 时尚")
    assert family == "Noto Sans SC", "pylopdf-fonts-zh-cn (a core dependency) is missing"
    assert "pylopdf_fonts_zh_cn" in fonts.current_cjk_font().path
    assert _missing_glyph(messages) == [] and not caplog.records


def test_missing_glyphs_are_detected_without_cjk_font():
    """Control for the tests above: DejaVu Sans alone must produce missing-glyph warnings."""
    matplotlib.rcParams["font.family"] = ["sans-serif"]
    matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans"]
    assert _missing_glyph(_render(SAMPLE, cjk=False)), "expected missing-glyph warnings"


def test_env_var_overrides(cjk_font, monkeypatch):
    monkeypatch.setenv(fonts.ENV_VAR, cjk_font.path)
    assert fonts.find_cjk_font() == cjk_font
    assert fonts.setup_cjk_font(refresh=True) == cjk_font.family


def test_bad_env_var_warns_and_falls_back(cjk_font, monkeypatch, caplog, tmp_path):
    bogus = tmp_path / "not-a-font.ttf"
    bogus.write_text("nope")
    monkeypatch.setenv(fonts.ENV_VAR, str(bogus))
    with caplog.at_level(logging.WARNING, logger="zhcls.report.fonts"):
        found = fonts.find_cjk_font()
    assert found is not None and found.path != str(bogus)
    assert fonts.ENV_VAR in caplog.text and str(bogus) in caplog.text


def test_no_font_warns_once_with_install_hint(monkeypatch, caplog):
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: None)
    with caplog.at_level(logging.WARNING, logger="zhcls.report.fonts"):
        assert fonts.setup_cjk_font(refresh=True) is None
        assert fonts.setup_cjk_font() is None
    warnings_ = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings_) == 1
    message = warnings_[0].getMessage()
    assert "fonts-wqy-microhei" in message and fonts.ENV_VAR in message


def test_font_covers_rejects_non_font(tmp_path):
    path = tmp_path / "x.ttf"
    path.write_bytes(b"\0" * 64)
    assert not fonts.font_covers(path)
    assert not fonts.font_covers(tmp_path / "missing.ttf")
