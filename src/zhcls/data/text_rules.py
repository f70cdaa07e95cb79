"""What counts as an empty text: one rule for reading a split (:func:`zhcls.data.formats.read_split`)
and for the texts handed to a classifier (:mod:`zhcls.inference`), so a row that reads cleanly
is never refused later by prediction or evaluation."""

from __future__ import annotations

import unicodedata


def blank_text_reason(text: str) -> str | None:
    """Why ``text`` is empty after normalisation (None when it has a visible character):
    whitespace, control and format characters (Unicode category C*: U+0000-U+001F, U+200B,
    U+FEFF, ...) are what a BERT tokenizer drops before splitting."""
    if any(not ch.isspace() and unicodedata.category(ch)[0] != "C" for ch in text):
        return None
    if not text:
        return "empty text"
    codes = sorted({ch for ch in text if not ch.isspace()})
    if not codes:
        return "empty text (whitespace only)"
    shown = " ".join(f"U+{ord(ch):04X}" for ch in codes[:4]) + (" ..." if len(codes) > 4 else "")
    return f"empty text after normalisation (only whitespace and invisible characters {shown})"
