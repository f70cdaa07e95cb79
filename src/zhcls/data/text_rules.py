"""What counts as an empty text: one rule for reading a split (:func:`zhcls.data.formats.read_split`)
and for the texts handed to a classifier (:mod:`zhcls.inference`). It drops what a BERT
(WordPiece) tokenizer drops, so with the BERT-family tokenizers zhcls trains, a row that reads
cleanly is not refused later by prediction or evaluation. A tokenizer that drops still more
is caught by the classifier itself (``Classifier._check_not_blank``: no token left)."""

from __future__ import annotations

import unicodedata


def blank_text_reason(text: str) -> str | None:
    """Why ``text`` is empty after normalisation (None when it has a visible character).
    A BERT tokenizer drops whitespace, control and format characters (Unicode category C*:
    U+0000-U+001F, U+200B, U+FEFF, ...) and U+FFFD (the replacement character) when it cleans
    the text, and combining marks (category Mn, e.g. U+0301) when it strips accents, as the
    uncased and Chinese vocabularies do."""
    if any(_visible(ch) for ch in text):
        return None
    if not text:
        return "empty text"
    codes = sorted({ch for ch in text if not ch.isspace()})
    if not codes:
        return "empty text (whitespace only)"
    shown = " ".join(f"U+{ord(ch):04X}" for ch in codes[:4]) + (" ..." if len(codes) > 4 else "")
    return f"empty text after normalisation (only whitespace and invisible characters {shown})"


def _visible(ch: str) -> bool:
    category = unicodedata.category(ch)
    return not ch.isspace() and category[0] != "C" and category != "Mn" and ch != "\ufffd"
