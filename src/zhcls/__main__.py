"""``python -m zhcls`` (also what ``torchrun -m zhcls train ...`` runs)."""

import sys

from zhcls.cli import main

sys.exit(main())
