"""zhcls: Chinese text classification with BERT-family encoders.

``from zhcls import Classifier`` is resolved lazily so importing the package stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Classifier", "__version__"]


def __getattr__(name: str):
    if name == "Classifier":
        from zhcls.predict import Classifier

        return Classifier
    raise AttributeError(f"module 'zhcls' has no attribute {name!r}")
