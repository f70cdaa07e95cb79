"""zhcls: Chinese text classification with BERT-family encoders.

``from zhcls import Classifier`` is resolved lazily so importing the package stays cheap.
"""

from __future__ import annotations

from zhcls._version import __version__

__all__ = ["Classifier", "__version__"]


def __getattr__(name: str):
    if name == "Classifier":
        from zhcls.inference.classifier import Classifier

        return Classifier
    raise AttributeError(f"module 'zhcls' has no attribute {name!r}")
