"""Tests for Objective, CELoss and ProjectionHead."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zhcls.losses import (
    OBJECTIVES,
    CELoss,
    KDLoss,
    Objective,
    ObjectiveOutput,
    SupConLoss,
)
from zhcls.modeling.projection import ProjectionHead

LAM, ALPHA, BETA, T, TAU = 0.3, 0.7, 0.2, 3.0, 0.2


def _batch(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(6, 3, generator=gen, requires_grad=True),
        "features": torch.randn(6, 8, generator=gen, requires_grad=True),
        "labels": torch.tensor([0, 0, 1, 1, 2, 1]),
        "teacher": torch.randn(6, 3, generator=gen).softmax(-1),
    }


def _objective(name: str) -> Objective:
    return Objective(
        name,
        lam=LAM,
        alpha=ALPHA,
        beta=BETA,
        temperature=T,
        scl_temperature=TAU,
        positives="only",
        teacher_input="probs",
    )


def _parts(b: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    ce = CELoss()(b["logits"], b["labels"]).item()
    scl = SupConLoss(TAU, "only")(b["features"], b["labels"]).item()
    soft = KDLoss(T, "probs")(b["logits"], b["teacher"]).item()
    return ce, scl, soft


def test_objectives_tuple() -> None:
    assert OBJECTIVES == ("ce", "ce+scl", "kd", "kd+scl")


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("ce", {"ce", "total"}),
        ("ce+scl", {"ce", "scl", "total"}),
        ("kd", {"ce", "kd_soft", "kd", "total"}),
        ("kd+scl", {"ce", "kd_soft", "kd", "scl", "total"}),
    ],
)
def test_each_objective_matches_formula(name: str, keys: set[str]) -> None:
    b = _batch()
    ce, scl, soft = _parts(b)
    kd = BETA * ce + (1 - BETA) * soft
    expected = {
        "ce": ce,
        "ce+scl": ce + LAM * scl,
        "kd": kd,
        "kd+scl": ALPHA * kd + (1 - ALPHA) * scl,
    }[name]
    out = _objective(name)(**b)
    assert isinstance(out, ObjectiveOutput)
    assert set(out.terms) == keys
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert out.terms["total"].item() == pytest.approx(expected, rel=1e-6)
    assert out.terms["ce"].item() == pytest.approx(ce, rel=1e-6)
    if "scl" in keys:
        assert out.terms["scl"].item() == pytest.approx(scl, rel=1e-6)
    if "kd" in keys:
        assert out.terms["kd_soft"].item() == pytest.approx(soft, rel=1e-6)
        assert out.terms["kd"].item() == pytest.approx(kd, rel=1e-6)
    assert all(not v.requires_grad for v in out.terms.values())
    out.loss.backward()
    assert b["logits"].grad is not None and b["logits"].grad.abs().sum().item() > 0
    if "scl" in keys:
        assert b["features"].grad is not None and b["features"].grad.abs().sum().item() > 0


def test_needs_properties() -> None:
    flags = {n: (Objective(n).needs_teacher, Objective(n).needs_features) for n in OBJECTIVES}
    assert flags == {
        "ce": (False, False),
        "ce+scl": (False, True),
        "kd": (True, False),
        "kd+scl": (True, True),
    }


def test_features_and_teacher_ignored_when_unused() -> None:
    b = _batch()
    out = Objective("ce")(b["logits"], None, b["labels"])
    assert out.loss.item() == pytest.approx(F.cross_entropy(b["logits"], b["labels"]).item())


def test_teacher_mask_is_forwarded() -> None:
    b = _batch()
    mask = torch.tensor([True, False, True, True, False, True])
    out = _objective("kd")(**b, teacher_mask=mask)
    soft = KDLoss(T, "probs")(b["logits"], b["teacher"], mask).item()
    ce = CELoss()(b["logits"], b["labels"]).item()
    assert out.terms["kd_soft"].item() == pytest.approx(soft, rel=1e-6)
    assert out.loss.item() == pytest.approx(BETA * ce + (1 - BETA) * soft, rel=1e-6)


def test_errors() -> None:
    with pytest.raises(ValueError, match=r"ce\+scl.*kd\+scl"):
        Objective("focal")
    b = _batch()
    for name in ("kd", "kd+scl"):
        with pytest.raises(ValueError, match="teacher column"):
            Objective(name)(b["logits"], b["features"], b["labels"], teacher=None)
    for name in ("ce+scl", "kd+scl"):
        with pytest.raises(ValueError, match="features"):
            Objective(name)(b["logits"], None, b["labels"], teacher=b["teacher"])
    with pytest.raises(ValueError, match="alpha"):
        Objective("kd+scl", alpha=1.5)
    with pytest.raises(ValueError, match="beta"):
        Objective("kd", beta=-0.1)
    with pytest.raises(ValueError, match="lam"):
        Objective("ce+scl", lam=-1.0)
    with pytest.raises(ValueError, match="positives"):
        Objective("ce+scl", positives="some")
    with pytest.raises(ValueError, match="teacher_input"):
        Objective("kd", teacher_input="soft")


def test_celoss_hand_value_and_smoothing() -> None:
    # logits [2, 0], label 0: CE = -log(e^2 / (e^2 + 1)) = log(1 + e^-2)
    loss = CELoss()(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)
    # smoothing 0.1 over 2 classes: target [0.95, 0.05]
    logp = [-math.log(1 + math.exp(-2.0)), -2.0 - math.log(1 + math.exp(-2.0))]
    smoothed = CELoss(label_smoothing=0.1)(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    assert smoothed.item() == pytest.approx(-(0.95 * logp[0] + 0.05 * logp[1]), rel=1e-6)
    half = CELoss()(torch.tensor([[2.0, 0.0]], dtype=torch.float16), torch.tensor([0]))
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match="label_smoothing"):
        CELoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="labels"):
        CELoss()(torch.randn(2, 3), torch.tensor([0]))


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_projection_head(kind: str) -> None:
    head = ProjectionHead(16, 4, kind=kind)
    out = head(torch.randn(5, 16))
    assert out.shape == (5, 4)
    assert torch.allclose(out.norm(dim=-1), torch.ones(5), atol=1e-5)
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in head.modules())
    assert n_linear == (1 if kind == "linear" else 2)
    with pytest.raises(ValueError, match="kind"):
        ProjectionHead(16, kind="conv")
    with pytest.raises(ValueError, match=r"\(B, 16\)"):
        head(torch.randn(5, 8))
