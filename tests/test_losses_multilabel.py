"""Tests for the multi-label losses: BCELoss, MultiLabelKDLoss, MultiLabelSupConLoss and the
multi-label Objective. Expected values are computed by hand with ``math`` (or a plain Python
double loop), never with the code under test."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from zhcls.config import ObjectiveConfig
from zhcls.losses import (
    BCELoss,
    CELoss,
    MultiLabelKDLoss,
    MultiLabelSupConLoss,
    Objective,
    SupConLoss,
)


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _bce_cell(z: float, y: float, w: float = 1.0) -> float:
    return -(w * y * math.log(_sig(z)) + (1.0 - y) * math.log(1.0 - _sig(z)))


# ---------------------------------------------------------------- BCELoss

LOGITS = [[0.0, 2.0, -1.0], [-1.0, 0.5, 3.0]]
LABELS = [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]  # row 1 has no label: all negatives


def test_bce_hand_value_with_an_all_negative_row() -> None:
    cells = [_bce_cell(z, y) for zr, yr in zip(LOGITS, LABELS, strict=True)
             for z, y in zip(zr, yr, strict=True)]
    # the all-negative row contributes log(1 + e^z) per class
    assert cells[3] == pytest.approx(math.log(1 + math.exp(-1.0)))
    loss = BCELoss()(torch.tensor(LOGITS), torch.tensor(LABELS))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(sum(cells) / 6, rel=1e-6)


def test_bce_pos_weight_scales_only_the_positives() -> None:
    w = [3.0, 1.0, 0.5]
    expected = sum(_bce_cell(z, y, w[c]) for zr, yr in zip(LOGITS, LABELS, strict=True)
                   for c, (z, y) in enumerate(zip(zr, yr, strict=True))) / 6
    logits = torch.tensor(LOGITS, requires_grad=True)
    loss = BCELoss(torch.tensor(w))(logits, torch.tensor(LABELS))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    g = logits.grad
    # d/dz of -w*log(sigma(z)) is -w*(1 - sigma(z)); of -log(1 - sigma(z)) is sigma(z); / (B*C)
    assert g[0, 0].item() == pytest.approx(-3.0 * (1 - _sig(0.0)) / 6, rel=1e-6)
    assert g[0, 2].item() == pytest.approx(-0.5 * (1 - _sig(-1.0)) / 6, rel=1e-6)
    assert g[1, 0].item() == pytest.approx(_sig(-1.0) / 6, rel=1e-6)  # negatives: not weighted
    assert g[1, 2].item() == pytest.approx(_sig(3.0) / 6, rel=1e-6)
    unweighted = BCELoss()(torch.tensor(LOGITS), torch.tensor(LABELS)).item()
    assert loss.item() > unweighted  # the up-weighted class-0 positive dominates


def test_bce_fp16_logits_give_the_fp32_result_and_extreme_logits_stay_finite() -> None:
    half = torch.tensor(LOGITS, dtype=torch.float16)
    loss = BCELoss()(half, torch.tensor(LABELS, dtype=torch.bool))
    assert loss.dtype == torch.float32
    exact = sum(_bce_cell(float(z), y) for zr, yr in zip(half.tolist(), LABELS, strict=True)
                for z, y in zip(zr, yr, strict=True)) / 6
    assert loss.item() == pytest.approx(exact, rel=1e-6)
    big = torch.tensor([[80.0, -80.0]], requires_grad=True)
    out = BCELoss()(big, torch.tensor([[0.0, 1.0]]))  # confidently wrong: loss ~ 80
    out.backward()
    assert out.item() == pytest.approx(80.0, rel=1e-4) and torch.isfinite(big.grad).all()


def test_bce_refuses_class_ids_and_bad_pos_weight() -> None:
    with pytest.raises(ValueError, match=r"expected multi-hot labels of shape \(2, 3\)"):
        BCELoss()(torch.tensor(LOGITS), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="one weight per class"):
        BCELoss(torch.tensor([1.0, 2.0]))(torch.tensor(LOGITS), torch.tensor(LABELS))
    for bad in ([1.0, 0.0, 2.0], [1.0, float("nan")], [[1.0, 2.0]], []):
        with pytest.raises(ValueError, match="finite weights > 0"):
            BCELoss(torch.tensor(bad))
    with pytest.raises(ValueError, match="B >= 1"):
        BCELoss()(torch.zeros(0, 3), torch.zeros(0, 3))


# ---------------------------------------------------------------- MultiLabelKDLoss

def _bin_kl(q: float, s: float) -> float:
    return q * math.log(q / s) + (1 - q) * math.log((1 - q) / (1 - s))


# Teacher p = [0.8, 0.1] (no sum rule), T = 2: logit(0.8)/2 = ln 4 / 2 = ln 2 -> q = 2/3;
# logit(0.1)/2 = -ln 9 / 2 = -ln 3 -> q = 1/4. Student z = [1, -2] -> s = sigma(0.5), sigma(-1).
KD_HAND = 4.0 * (_bin_kl(2 / 3, _sig(0.5)) + _bin_kl(1 / 4, _sig(-1.0))) / 2


@pytest.mark.parametrize(("teacher_input", "teacher"),
                         [("probs", [[0.8, 0.1]]), ("logits", [[math.log(4), -math.log(9)]])])
def test_kd_hand_value(teacher_input: str, teacher: list[list[float]]) -> None:
    loss = MultiLabelKDLoss(2.0, teacher_input)(torch.tensor([[1.0, -2.0]]), torch.tensor(teacher))
    assert loss.item() == pytest.approx(KD_HAND, rel=1e-5)


def test_kd_is_zero_at_the_teacher_and_has_the_gradient_of_bce_on_soft_targets() -> None:
    p = torch.tensor([[0.9, 0.7, 0.05], [0.5, 0.5, 0.99]])  # rows sum to 1.65 and 1.99
    at_teacher = MultiLabelKDLoss(3.0)(torch.logit(p), p)
    assert abs(at_teacher.item()) < 1e-6  # the target entropy is subtracted: 0 at the optimum
    z = torch.tensor([[0.3, -1.0, 2.0], [1.5, 0.0, -0.5]], dtype=torch.float64,
                     requires_grad=True)
    MultiLabelKDLoss(3.0)(z, p.double()).backward()
    # BCE on the tempered soft targets q = sigma(logit(p)/T), times T^2, same gradient:
    q = torch.tensor([[_sig(math.log(v / (1 - v)) / 3) for v in row] for row in p.tolist()],
                     dtype=torch.float64)
    z2 = z.detach().clone().requires_grad_(True)
    (9.0 * F.binary_cross_entropy_with_logits(z2 / 3, q)).backward()
    assert torch.allclose(z.grad, z2.grad, rtol=1e-9, atol=1e-12)


def test_kd_mask_divides_by_the_whole_batch_and_ignores_nan_rows() -> None:
    gen = torch.Generator().manual_seed(5)
    student = torch.randn(4, 3, generator=gen, requires_grad=True)
    teacher = torch.rand(4, 3, generator=gen)
    teacher[0] = float("nan")  # rows without a teacher may hold NaN placeholders
    teacher[3] = float("nan")
    mask = torch.tensor([False, True, False, False])
    loss_fn = MultiLabelKDLoss(2.0)
    alone = loss_fn(student[1:2].detach(), teacher[1:2]).item()
    out = loss_fn(student, teacher, mask)
    assert out.item() == pytest.approx(alone / 4, rel=1e-6)  # weight 1/B, as KDLoss
    out.backward()
    assert torch.isfinite(student.grad).all() and student.grad[0].abs().sum().item() == 0.0
    none = loss_fn(student, teacher, torch.zeros(4, dtype=torch.bool))
    none.backward()
    assert none.item() == 0.0


def test_kd_teacher_of_exactly_0_or_1_is_finite_and_fp16_gives_fp32() -> None:
    z = torch.tensor([[3.0, -3.0, 0.0]], dtype=torch.float16, requires_grad=True)
    out = MultiLabelKDLoss(1.0)(z, torch.tensor([[1.0, 0.0, 1.0]]))
    out.backward()
    assert out.dtype == torch.float32 and math.isfinite(out.item())
    assert torch.isfinite(z.grad).all()
    # T = 1, p clamped to 1 - 1e-6 / 1e-6: KL is then about the BCE against hard targets
    hard = (_bce_cell(3.0, 1.0) + _bce_cell(-3.0, 0.0) + _bce_cell(0.0, 1.0)) / 3
    assert out.item() == pytest.approx(hard, abs=1e-4)


def test_kd_refuses_what_has_no_multilabel_meaning() -> None:
    with pytest.raises(ValueError, match="probs_as_logits is single-label"):
        MultiLabelKDLoss(2.0, "probs_as_logits")
    with pytest.raises(ValueError, match="temperature"):
        MultiLabelKDLoss(0.0)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        MultiLabelKDLoss(2.0, validate=True)(torch.zeros(1, 2), torch.tensor([[2.5, -1.0]]))
    with pytest.raises(ValueError, match="bool mask"):
        MultiLabelKDLoss(2.0)(torch.zeros(2, 2), torch.full((2, 2), 0.5), torch.ones(2))


# ---------------------------------------------------------------- MultiLabelSupConLoss

def _at_angles(degrees: list[float]) -> torch.Tensor:
    rad = [math.radians(d) for d in degrees]
    return torch.tensor([[math.cos(a), math.sin(a)] for a in rad], dtype=torch.float64)


def _naive(features: torch.Tensor, sets: list[set[int]], tau: float, positives: str) -> float:
    """Double loop over anchors/pairs with Python sets, no max trick."""
    f = F.normalize(features.double(), dim=1).tolist()
    b = len(sets)
    per_anchor, has_pos = [], []
    for i in range(b):
        s = [sum(x * y for x, y in zip(f[i], f[j], strict=True)) / tau for j in range(b)]
        denom = math.log(sum(math.exp(s[k]) for k in range(b) if k != i))
        w = [len(sets[i] & sets[j]) / len(sets[i] | sets[j])
             if j != i and sets[i] | sets[j] else 0.0 for j in range(b)]
        total = sum(w)
        has_pos.append(total > 0)
        per_anchor.append(-sum(w[j] * (s[j] - denom) for j in range(b)) / total if total else 0.0)
    if positives == "all":
        return sum(per_anchor) / b
    kept = [v for v, h in zip(per_anchor, has_pos, strict=True) if h]
    return sum(kept) / len(kept) if kept else 0.0


def _multi_hot(sets: list[set[int]], c: int) -> torch.Tensor:
    return torch.tensor([[1.0 if k in s else 0.0 for k in range(c)] for s in sets])


def test_supcon_hand_example_half_overlaps() -> None:
    # f at 0, 90, 180 degrees, tau = 1; labels {a, b}, {a}, {b}: w01 = w02 = 1/2, w12 = 0.
    # anchor 0: sims (0, -1), D = log(1 + e^-1); l0 = -(.5 * (0 - D) + .5 * (-1 - D)) / 1
    #   = D + 1/2.  anchor 1: only positive 0 (w 1/2), sims to 0 and 2 are both 0:
    #   l1 = -(.5 * (0 - log 2)) / .5 = log 2.  anchor 2: positive 0, sim -1, other sim 0:
    #   l2 = -(-1 - D) = 1 + D.
    d = math.log(1 + math.exp(-1))
    expected = (d + 0.5 + math.log(2) + 1 + d) / 3
    labels = _multi_hot([{0, 1}, {0}, {1}], 2)
    for mode in ("all", "only"):  # every anchor has a positive: both modes agree
        # (rel 1e-8: the 1e-9 added to sum_j w_ij shifts l_i by about 2e-9)
        loss = MultiLabelSupConLoss(1.0, mode)(_at_angles([0, 90, 180]), labels)
        assert loss.item() == pytest.approx(expected, rel=1e-8)


def test_supcon_anchors_without_positive_contribute_zero() -> None:
    # the 4th row has no label (all negatives), the 5th a label nobody else has
    sets = [{0, 1}, {0}, {1}, set(), {2}]
    feats = _at_angles([0, 90, 180, 270, 45])
    labels = _multi_hot(sets, 3)
    for mode in ("all", "only"):
        loss = MultiLabelSupConLoss(0.5, mode)(feats, labels)
        assert loss.item() == pytest.approx(_naive(feats, sets, 0.5, mode), rel=1e-8)
    only, every = (MultiLabelSupConLoss(0.5, m)(feats, labels).item() for m in ("only", "all"))
    assert every == pytest.approx(only * 3 / 5, rel=1e-8)  # 2 of 5 anchors count as 0
    # no anchor has a positive (empty or disjoint sets): exactly 0, finite zero gradients
    lonely = _at_angles([0, 120, 240]).requires_grad_(True)
    for mode in ("all", "only"):
        out = MultiLabelSupConLoss(0.1, mode)(lonely, _multi_hot([set(), {0}, {1}], 2))
        out.backward()
        assert out.item() == 0.0 and torch.isfinite(lonely.grad).all()
    one = MultiLabelSupConLoss()(torch.ones(1, 4), torch.ones(1, 2))
    assert one.item() == 0.0


@pytest.mark.parametrize("mode", ["all", "only"])
def test_supcon_matches_naive_loop_on_random_label_sets(mode: str) -> None:
    gen = torch.Generator().manual_seed(11)
    feats = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    labels = (torch.rand(9, 4, generator=gen) < 0.4).double()
    sets = [{k for k in range(4) if row[k] > 0} for row in labels.tolist()]
    loss = MultiLabelSupConLoss(0.3, mode)(feats, labels)
    assert loss.item() == pytest.approx(_naive(feats, sets, 0.3, mode), rel=1e-8)


@pytest.mark.parametrize("mode", ["all", "only"])
def test_supcon_one_hot_labels_equal_supcon_exactly(mode: str) -> None:
    gen = torch.Generator().manual_seed(7)
    ids = torch.tensor([0, 2, 2, 1, 0, 3, 2, 1])  # class 3 is a singleton anchor
    feats = [torch.randn(8, 6, generator=gen).requires_grad_(True)]
    feats.append(feats[0].detach().clone().requires_grad_(True))
    single = SupConLoss(0.1, mode)(feats[0], ids)
    multi = MultiLabelSupConLoss(0.1, mode)(feats[1], F.one_hot(ids, 4).float())
    assert torch.equal(single, multi)
    single.backward()
    multi.backward()
    assert torch.equal(feats[0].grad, feats[1].grad)


def test_supcon_refuses_class_ids_and_fp16_gives_fp32() -> None:
    with pytest.raises(ValueError, match=r"expected multi-hot labels of shape \(3, C\)"):
        MultiLabelSupConLoss()(torch.randn(3, 4), torch.tensor([0, 1, 1]))
    feats = _at_angles([0, 90, 180]).half()
    out = MultiLabelSupConLoss(1.0)(feats, _multi_hot([{0, 1}, {0}, {1}], 2))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("loss", [BCELoss(torch.tensor([2.0, 1.0])), BCELoss(),
                                  MultiLabelKDLoss(3.0, "logits"),
                                  MultiLabelSupConLoss(0.2, "only")])
def test_each_loss_records_its_config_and_citation(loss) -> None:
    rebuilt = type(loss)(**loss.config())
    assert rebuilt.config() == loss.config()
    assert all(f"{k}={v!r}" in repr(loss) for k, v in loss.config().items())
    assert re.search(r"(19|20)\d\d", loss.citation)


# ---------------------------------------------------------------- no host sync

def test_training_forward_makes_no_host_sync(monkeypatch) -> None:
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(6, 3, generator=gen, requires_grad=True)
    labels = (torch.rand(6, 3, generator=gen) < 0.5).float()
    labels[5] = 0.0  # a row with no label
    teacher = torch.rand(6, 3, generator=gen)
    mask = torch.tensor([True, False, True, True, False, True])
    feats = torch.randn(6, 4, generator=gen, requires_grad=True)
    bce = BCELoss(torch.tensor([2.0, 1.0, 4.0]))
    kd = MultiLabelKDLoss(2.0, "probs", validate=False)
    scl_all, scl_only = MultiLabelSupConLoss(0.1, "all"), MultiLabelSupConLoss(0.1, "only")
    objective = Objective("kd+scl", task="multi_label", pos_weight=torch.tensor([2.0, 1, 4]))

    def refuse(*_args, **_kwargs):
        raise AssertionError("host sync in the loss forward")

    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    losses = [bce(logits, labels), kd(logits, teacher, mask), scl_all(feats, labels),
              scl_only(feats, labels), scl_only(feats, torch.eye(6)[:, :3] * 0),  # no positive
              objective(logits, feats, labels, teacher, mask).loss]
    monkeypatch.undo()
    assert all(torch.isfinite(x) for x in losses)
    assert losses[4].item() == 0.0


# ---------------------------------------------------------------- Objective wiring

def _ml_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[1, 0, 1], [1, 0, 0], [0, 0, 0], [0, 1, 1], [0, 1, 0], [1, 1, 0]])
    return {
        "logits": torch.randn(6, 3, generator=gen, requires_grad=True),
        "features": torch.randn(6, 8, generator=gen, requires_grad=True),
        "labels": labels.float(),
        "teacher": torch.rand(6, 3, generator=gen),  # per-class, rows need not sum to 1
    }


def test_objective_multilabel_terms_are_the_multilabel_losses() -> None:
    b = _ml_batch()
    pw = torch.tensor([1.0, 3.0, 2.0])
    bce = BCELoss(pw)(b["logits"], b["labels"]).item()
    scl = MultiLabelSupConLoss(0.2, "only")(b["features"], b["labels"]).item()
    soft = MultiLabelKDLoss(3.0)(b["logits"], b["teacher"]).item()
    common = {"task": "multi_label", "pos_weight": pw, "temperature": 3.0,
              "scl_temperature": 0.2, "positives": "only"}
    expected = {"bce": bce, "bce+scl": bce + 0.3 * scl,
                "kd+scl": 0.7 * (0.2 * bce + 0.8 * soft) + 0.3 * scl}
    for name, value in expected.items():
        objective = Objective(name, lam=0.3, alpha=0.7, beta=0.2, **common)
        out = objective(**b)
        assert out.loss.item() == pytest.approx(value, rel=1e-6)
        assert out.terms["ce"].item() == pytest.approx(bce, rel=1e-6)
    objective = Objective("bce+scl", lam=0.3, **common)
    assert isinstance(objective.ce, BCELoss) and isinstance(objective.scl, MultiLabelSupConLoss)
    assert objective.formula() == "L = 1·bce + 0.3·scl"
    lines = objective.describe()
    assert lines[0] == "objective bce+scl (multi_label): L = 1·bce + 0.3·scl"
    assert lines[1].startswith("  bce: BCELoss(pos_weight=[1.0, 3.0, 2.0])") and "Nam" in lines[1]
    assert lines[2].startswith("  scl: MultiLabelSupConLoss(") and "Jaccard" in lines[2]
    kd = Objective("kd", task="multi_label")
    assert isinstance(kd.kd, MultiLabelKDLoss) and "Hinton" in kd.describe()[2]


def test_objective_refuses_labels_of_the_other_task() -> None:
    b = _ml_batch()
    with pytest.raises(ValueError, match=r"multi_label\): expected multi-hot labels"):
        Objective("bce", task="multi_label")(b["logits"], None, torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match="build the objective with task='multi_label'"):
        Objective("ce")(b["logits"], None, b["labels"])
    with pytest.raises(ValueError, match="pos_weight"):
        Objective("ce", pos_weight=torch.ones(3))
    with pytest.raises(ValueError, match="task in"):
        Objective("ce", task="multilabel")
    with pytest.raises(ValueError, match="probs_as_logits is single-label"):
        Objective("kd", task="multi_label", teacher_input="probs_as_logits")


def test_objective_from_config_takes_task_and_pos_weight() -> None:
    o = ObjectiveConfig(name="bce", pos_weight=[4.0, 1.0, 1.0])
    o.validate()
    b = _ml_batch()
    from_cfg = Objective.from_config(o, task="multi_label")
    assert from_cfg.ce.config() == {"pos_weight": [4.0, 1.0, 1.0]}
    expected = BCELoss(torch.tensor([4.0, 1.0, 1.0]))(b["logits"], b["labels"]).item()
    assert from_cfg(**b).loss.item() == pytest.approx(expected, rel=1e-6)
    computed = Objective.from_config(o, task="multi_label", pos_weight=torch.tensor([2.0, 2, 2]))
    assert computed.ce.config() == {"pos_weight": [2.0, 2.0, 2.0]}  # the argument wins
    single = Objective.from_config(ObjectiveConfig(name="ce"))
    assert isinstance(single.ce, CELoss) and single.task == "single_label"
    with pytest.raises(ValueError, match="pos_weight"):  # e.g. data.task auto -> single_label
        Objective.from_config(o, task="single_label")


def test_objective_multilabel_teacher_mask_is_forwarded() -> None:
    b = _ml_batch()
    mask = torch.tensor([True, False, True, True, False, True])
    b["teacher"][~mask] = float("nan")
    objective = Objective(terms={"kd": 1.0}, task="multi_label", temperature=2.0)
    out = objective(**b, teacher_mask=mask)
    expected = MultiLabelKDLoss(2.0)(b["logits"], b["teacher"], mask).item()
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    out.loss.backward()
    assert torch.isfinite(b["logits"].grad).all()
