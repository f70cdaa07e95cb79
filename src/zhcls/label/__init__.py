"""Teacher soft labels for knowledge distillation.

``label_with_llm`` asks an LLM over an OpenAI-compatible chat-completions API (see
:mod:`zhcls.label.llm`); ``write_labelled_dataset`` writes the resulting KD dataset (shared
with the local-checkpoint teacher). Names are imported lazily so ``import zhcls.label`` is
cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LabelReport", "label_with_llm", "write_labelled_dataset"]

_LAZY = {
    "label_with_llm": "zhcls.label.llm",
    "LabelReport": "zhcls.label.writer",
    "write_labelled_dataset": "zhcls.label.writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'zhcls.label' has no attribute {name!r}")
