"""Tests for Objective, CELoss and ProjectionHead."""

from __future__ import annotations

import logging
import math
import re

import pytest
import torch
import torch.nn.functional as F

from zhcls.config import MULTI_LABEL_PRESETS
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


# The presets written out as explicit weights, by hand from the research formulas.
EXPLICIT = {
    "ce": {"ce": 1.0},
    "ce+scl": {"ce": 1.0, "scl": LAM},
    "kd": {"ce": BETA, "kd": 1 - BETA},
    "kd+scl": {"ce": ALPHA * BETA, "kd": ALPHA * (1 - BETA), "scl": 1 - ALPHA},
}


def _explicit(terms: dict[str, float]) -> Objective:
    return Objective(terms=terms, temperature=T, scl_temperature=TAU, positives="only",
                     teacher_input="probs")


# single-label presets: bce / bce+scl are multi-label only (tests/test_losses_multilabel.py)
@pytest.mark.parametrize("name", [n for n in OBJECTIVES if n not in MULTI_LABEL_PRESETS])
def test_preset_and_explicit_terms_give_the_same_loss_and_gradients(name: str) -> None:
    losses, grads = [], []
    for objective in (_objective(name), _explicit(EXPLICIT[name])):
        b = _batch()
        out = objective(**b)
        out.loss.backward()
        losses.append(out.loss.item())
        grads.append((b["logits"].grad.clone(), b["features"].grad))
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert torch.allclose(grads[0][0], grads[1][0], rtol=1e-5, atol=1e-7)
    if grads[0][1] is not None:
        assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-5, atol=1e-7)


def test_explicit_terms_are_the_weighted_sum() -> None:
    b = _batch()
    ce, scl, soft = _parts(b)
    out = _explicit({"ce": 1.0, "kd": 0.5, "scl": 0.3})(**b)
    assert out.loss.item() == pytest.approx(ce + 0.5 * soft + 0.3 * scl, rel=1e-6)
    assert set(out.terms) == {"ce", "kd_soft", "scl", "total"}  # no preset L_KD
    only_kd = _explicit({"kd": 2.0})(**b)  # CE still logged, not trained on
    assert only_kd.loss.item() == pytest.approx(2.0 * soft, rel=1e-6)
    assert only_kd.terms["ce"].item() == pytest.approx(ce, rel=1e-6)


@pytest.mark.parametrize("terms", [{"ce": 1.0}, {"ce": 1.0, "scl": 0.5}, {"ce": 1.0, "kd": 0.0},
                                   {"kd": 1.0}, {"ce": 0.2, "kd": 0.3, "scl": 0.0}])
def test_teacher_and_features_are_required_exactly_when_their_term_has_weight(terms) -> None:
    b = _batch()
    objective = _explicit(terms)
    full = objective(**b).loss.item()
    if terms.get("kd", 0) > 0:
        with pytest.raises(ValueError, match="teacher"):
            objective(b["logits"], b["features"], b["labels"], teacher=None)
    else:  # the teacher is neither needed nor read
        no_teacher = objective(b["logits"], b["features"], b["labels"], teacher=None)
        assert no_teacher.loss.item() == full
    if terms.get("scl", 0) > 0:
        with pytest.raises(ValueError, match="features"):
            objective(b["logits"], None, b["labels"], teacher=b["teacher"])
    else:
        assert objective(b["logits"], None, b["labels"], teacher=b["teacher"]).loss.item() == full


def test_a_zero_weight_preset_term_is_not_computed() -> None:
    """kd+scl with alpha = 1 is L_KD alone: no features needed, same loss as kd."""
    b = _batch()
    kd_only = Objective("kd+scl", alpha=1.0, beta=BETA, temperature=T)
    out = kd_only(b["logits"], None, b["labels"], teacher=b["teacher"])
    kd = Objective("kd", beta=BETA, temperature=T)(b["logits"], None, b["labels"],
                                                    teacher=b["teacher"])
    assert out.loss.item() == pytest.approx(kd.loss.item(), rel=1e-6)


def test_config_and_objective_agree_on_what_is_needed() -> None:
    from zhcls.config import load_config

    for overrides in (["--objective.name", n] for n in OBJECTIVES):
        o = load_config(None, overrides).objective
        objective = Objective.from_config(o)
        assert (objective.needs_teacher, objective.needs_features) == (o.uses_teacher, o.uses_scl)
    o = load_config(None, ["--objective.terms", "{kd: 1, scl: 0.2}"]).objective
    objective = Objective.from_config(o)
    assert objective.weights == {"kd": 1.0, "scl": 0.2} == o.weights


def test_name_and_terms_must_agree() -> None:
    same = Objective("ce+scl", lam=0.3, terms={"ce": 1.0, "scl": 0.3})
    assert same.weights == {"ce": 1.0, "scl": 0.3}
    with pytest.raises(ValueError, match="preset 'ce\\+scl' has weights"):
        Objective("ce+scl", lam=0.3, terms={"ce": 1.0, "scl": 0.5})
    for bad in ({"focal": 1.0}, {"ce": -1.0}, {"ce": 0.0}):
        with pytest.raises(ValueError, match="weights >= 0"):
            Objective(terms=bad)
    with pytest.raises(ValueError, match="neither"):
        Objective()


@pytest.mark.parametrize("loss", [CELoss(0.1), KDLoss(3.0, "logits"), SupConLoss(0.2, "only")])
def test_each_loss_records_its_config_and_citation(loss) -> None:
    rebuilt = type(loss)(**loss.config())
    assert rebuilt.config() == loss.config()
    assert all(f"{k}={v!r}" in repr(loss) for k, v in loss.config().items())
    assert re.search(r"(19|20)\d\d", loss.citation)  # a year: it names a publication


def test_describe_lists_formula_settings_and_citations(caplog) -> None:
    from zhcls.config import load_config
    from zhcls.training.train import build_objective

    cfg = load_config(None, ["--objective.name", "kd+scl", "--objective.alpha", "0.5",
                             "--objective.beta", "0.5", "--objective.temperature", "4"])
    with caplog.at_level(logging.INFO, logger="zhcls.training.train"):
        build_objective(cfg)
    assert "objective kd+scl: L = 0.25·ce + 0.25·kd + 0.5·scl" in caplog.text
    assert "KDLoss(temperature=4.0, teacher_input='probs')" in caplog.text
    assert "Hinton" in caplog.text and "Khosla" in caplog.text


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
