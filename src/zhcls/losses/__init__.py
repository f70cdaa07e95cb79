"""Loss modules: cross-entropy, SupCon, KD, their multi-label versions (per-class BCE,
per-class KD, label-overlap SupCon) and their named combinations (one loss per module)."""

from zhcls.losses.bce import BCELoss
from zhcls.losses.ce import CELoss
from zhcls.losses.kd import KDLoss
from zhcls.losses.kd_multilabel import MultiLabelKDLoss
from zhcls.losses.objective import OBJECTIVES, TASKS, TERMS, Objective, ObjectiveOutput
from zhcls.losses.supcon import SupConLoss
from zhcls.losses.supcon_multilabel import MultiLabelSupConLoss

__all__ = [
    "OBJECTIVES",
    "BCELoss",
    "CELoss",
    "KDLoss",
    "MultiLabelKDLoss",
    "MultiLabelSupConLoss",
    "Objective",
    "ObjectiveOutput",
    "SupConLoss",
    "TASKS",
    "TERMS",
]
