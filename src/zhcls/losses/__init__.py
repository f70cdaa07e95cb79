"""Loss modules: cross-entropy, SupCon, KD, their named combinations and the projection head."""

from zhcls.losses.ce import CELoss
from zhcls.losses.kd import KDLoss
from zhcls.losses.objective import OBJECTIVES, Objective, ObjectiveOutput
from zhcls.losses.projection import ProjectionHead
from zhcls.losses.supcon import SupConLoss

__all__ = [
    "OBJECTIVES",
    "CELoss",
    "KDLoss",
    "Objective",
    "ObjectiveOutput",
    "ProjectionHead",
    "SupConLoss",
]
