"""Find a font that can draw Chinese and let zhcls' plots use it, without touching the
caller's matplotlib settings.

Matplotlib's default DejaVu Sans has no CJK glyphs, so Chinese class names come out as
boxes. :func:`setup_cjk_font` looks for a CJK font once per process: ``ZHCLS_CJK_FONT`` first,
then the system fonts (known family names in matplotlib's font list, well-known file paths,
font files whose names look CJK; skipped when ``ZHCLS_SYSTEM_FONTS=0``), then the Noto Sans SC
file that the ``pylopdf-fonts-zh-cn`` dependency ships (SIL Open Font License 1.1), so a plain
``pip install`` renders Chinese on a machine without CJK fonts. The font is registered with
matplotlib's font manager (``fontManager.addfont``); it is applied only inside
:func:`cjk_font_context` (a ``matplotlib.rc_context``) or functions decorated with
:func:`with_cjk_font`, so a notebook user's ``rcParams`` stay as they were. When nothing is
found it logs one warning per process with the fix.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

ENV_VAR = "ZHCLS_CJK_FONT"
SYSTEM_ENV_VAR = "ZHCLS_SYSTEM_FONTS"  # "0": skip the system fonts, use the packaged one
# The dependency that ships Noto Sans SC (OFL-1.1), and its accessor for the file's path.
PACKAGED_FONT = ("pylopdf_fonts_zh_cn", "sans_path")
# Characters a usable font must cover (Simplified Chinese as used in THUCNews class names).
PROBE_TEXT = "中文金融房产股票"
INSTALL_HINT = (
    "reinstall zhcls's font dependency (`pip install pylopdf-fonts-zh-cn`), install a CJK font (Debian/Ubuntu: `apt-get install fonts-wqy-microhei` (~4 MB) or "
    f"`apt-get install fonts-noto-cjk`) or set {ENV_VAR}=/path/to/font.ttf|.ttc|.otf"
)

CJK_FAMILIES = (
    "Noto Sans CJK SC", "Noto Sans SC", "Noto Sans CJK JP", "Noto Sans CJK TC",
    "Source Han Sans SC", "Source Han Sans CN", "Source Han Sans",
    "WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei Mono",
    "AR PL UMing CN", "AR PL UKai CN", "AR PL UMing", "AR PL UKai",
    "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC", "STHeiti", "Hiragino Sans GB",
    "Arial Unicode MS", "Droid Sans Fallback",
)

CJK_FONT_PATHS = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/source-han-sans/SourceHanSans-Regular.ttc",
    "/usr/share/fonts/truetype/arphic/uming.ttc",
    "/usr/share/fonts/truetype/arphic/ukai.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
    "/System/Library/Fonts/PingFang.ttc",
    "/System/Library/Fonts/STHeiti Medium.ttc",
    "/Library/Fonts/Arial Unicode.ttf",
    "C:/Windows/Fonts/msyh.ttc",
    "C:/Windows/Fonts/simhei.ttf",
)

# Lower-case substrings of font file names worth probing when nothing else matched.
_FILENAME_HINTS = ("wqy", "cjk", "sourcehan", "droidsansfallback", "uming", "ukai",
                   "simhei", "msyh", "pingfang", "heiti", "notosanssc")


@dataclass(frozen=True)
class CJKFont:
    """A font file that covers :data:`PROBE_TEXT`, and the family name matplotlib knows."""

    family: str
    path: str


_state: dict[str, object] = {"done": False, "font": None}


def font_covers(path: str | Path, text: str = PROBE_TEXT) -> bool:
    """True if the font file at ``path`` has a glyph for every character of ``text``."""
    from matplotlib import ft2font

    try:
        charmap = ft2font.FT2Font(str(path)).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(ch) in charmap for ch in text if not ch.isspace())


def system_fonts_enabled() -> bool:
    """False when ``ZHCLS_SYSTEM_FONTS=0`` asks for the packaged font only."""
    return os.environ.get(SYSTEM_ENV_VAR, "1").strip().lower() not in ("0", "false", "no")


def find_cjk_font() -> CJKFont | None:
    """Locate a CJK-capable font without changing matplotlib's settings: the environment
    variable, then the system fonts, then the packaged font."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        found = _from_file(env)
        if found is not None:
            return found
        logger.warning(
            "%s=%s is not a readable font file covering Chinese (expected a .ttf/.ttc/.otf "
            "with glyphs for %r); ignoring it and searching the system fonts",
            ENV_VAR, env, PROBE_TEXT,
        )
    if system_fonts_enabled():
        found = _from_font_manager() or _from_known_paths() or _from_system_files()
        if found is not None:
            return found
    return _from_package()


def setup_cjk_font(*, refresh: bool = False) -> str | None:
    """Find a CJK font and register it with matplotlib's font manager; return its family,
    or None (one warning per process) if none was found. ``rcParams`` are not changed: use
    :func:`cjk_font_context` to draw with it.

    Runs the search once per process (``refresh=True`` searches again, e.g. after the
    environment variables changed).
    """
    from matplotlib import font_manager

    if _state["done"] and not refresh:
        font = _state["font"]
        return font.family if isinstance(font, CJKFont) else None
    font = find_cjk_font()
    _state["done"], _state["font"] = True, font
    if font is None:
        logger.warning("no font that can draw Chinese was found; Chinese text in plots will "
                       "show as boxes. To fix: %s", INSTALL_HINT)
        return None
    if not any(f.fname == font.path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(font.path)
    logger.debug("using CJK font %s (%s)", font.family, font.path)
    return font.family


def cjk_rc(family: str) -> dict[str, Any]:
    """The ``rcParams`` that draw with ``family`` first: sans-serif with the CJK family in
    front, and ``axes.unicode_minus=False`` (CJK fonts often lack U+2212)."""
    import matplotlib

    rest = [f for f in matplotlib.rcParams["font.sans-serif"] if f != family]
    return {"font.family": ["sans-serif"], "font.sans-serif": [family, *rest],
            "axes.unicode_minus": False}


@contextmanager
def cjk_font_context() -> Iterator[str | None]:
    """Inside: matplotlib draws Chinese (yields the family, or None when no font was found);
    the caller's ``rcParams`` are restored on exit. Create *and* save figures inside it."""
    import matplotlib

    family = setup_cjk_font()
    if family is None:
        yield None
        return
    with matplotlib.rc_context(cjk_rc(family)):
        yield family


F = TypeVar("F", bound=Callable[..., Any])


def with_cjk_font(fn: F) -> F:
    """Decorator: run a plotting function inside :func:`cjk_font_context`."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with cjk_font_context():
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def current_cjk_font() -> CJKFont | None:
    """The font chosen by the last :func:`setup_cjk_font` call (None before or if none)."""
    font = _state["font"]
    return font if isinstance(font, CJKFont) else None


def _from_file(path: str) -> CJKFont | None:
    p = Path(path).expanduser()
    if not p.is_file() or not font_covers(p):
        return None
    from matplotlib import font_manager

    try:
        family = font_manager.FontProperties(fname=str(p)).get_name()
    except (OSError, RuntimeError, ValueError):
        return None
    return CJKFont(family=family, path=str(p))


def _from_font_manager() -> CJKFont | None:
    from matplotlib import font_manager

    by_name: dict[str, str] = {}
    for entry in font_manager.fontManager.ttflist:
        by_name.setdefault(entry.name, entry.fname)
    for family in CJK_FAMILIES:
        path = by_name.get(family)
        if path and font_covers(path):
            return CJKFont(family=family, path=path)
    return None


def _from_known_paths() -> CJKFont | None:
    for path in CJK_FONT_PATHS:
        found = _from_file(path)
        if found is not None:
            return found
    return None


def _from_package() -> CJKFont | None:
    module_name, accessor = PACKAGED_FONT
    try:
        path = getattr(importlib.import_module(module_name), accessor)()
    except (ImportError, AttributeError, OSError) as exc:
        logger.debug("packaged CJK font unavailable: %s", exc)
        return None
    return _from_file(str(path))


def _from_system_files() -> CJKFont | None:
    from matplotlib import font_manager

    for path in sorted(font_manager.findSystemFonts()):
        name = Path(path).name.lower().replace("-", "").replace("_", "")
        if any(hint in name for hint in _FILENAME_HINTS):
            found = _from_file(path)
            if found is not None:
                return found
    return None
