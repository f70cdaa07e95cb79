"""Installs tests/rank_digest.py in processes started by the tests (torchrun workers) when
``ZHCLS_RANK_DIGEST_DIR`` is set; Python imports this at start-up when this directory is on
PYTHONPATH. Not part of zhcls."""

import os
import sys

if os.environ.get("ZHCLS_RANK_DIGEST_DIR"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import rank_digest

    rank_digest.install()
