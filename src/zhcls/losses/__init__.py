"""Loss modules: cross-entropy, SupCon, KD and their named combinations (one loss per module)."""

from zhcls.losses.ce import CELoss
from zhcls.losses.kd import KDLoss
from zhcls.losses.objective import OBJECTIVES, TERMS, Objective, ObjectiveOutput
from zhcls.losses.supcon import SupConLoss

__all__ = [
    "OBJECTIVES",
    "CELoss",
    "KDLoss",
    "Objective",
    "ObjectiveOutput",
    "SupConLoss",
    "TERMS",
]
