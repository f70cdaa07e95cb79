"""Tests for SupConLoss (Khosla et al., 2020)."""

from __future__ import annotations

import math

import pytest
import torch

from zhcls.losses import SupConLoss


def _at_angles(degrees: list[float], scale: float = 1.0) -> torch.Tensor:
    rad = [math.radians(d) for d in degrees]
    return torch.tensor([[math.cos(a), math.sin(a)] for a in rad], dtype=torch.float64) * scale


def _naive_supcon(features: torch.Tensor, labels: list[int], tau: float, positives: str) -> float:
    """Direct double loop over anchors/pairs, no max trick, exact positive counts."""
    f = torch.nn.functional.normalize(features.double(), dim=1).tolist()
    b = len(labels)
    per_anchor: list[float] = []
    has_pos: list[bool] = []
    for i in range(b):
        s = [sum(x * y for x, y in zip(f[i], f[j], strict=True)) / tau for j in range(b)]
        denom = math.log(sum(math.exp(s[k]) for k in range(b) if k != i))
        pos = [j for j in range(b) if j != i and labels[j] == labels[i]]
        has_pos.append(bool(pos))
        per_anchor.append(-sum(s[j] - denom for j in pos) / len(pos) if pos else 0.0)
    if positives == "all":
        return sum(per_anchor) / b
    kept = [v for v, h in zip(per_anchor, has_pos, strict=True) if h]
    return sum(kept) / len(kept) if kept else 0.0


def test_hand_example_two_pairs_tau_half() -> None:
    # Unit vectors at 0, 90, 180, 270 degrees, labels [0, 0, 1, 1], tau = 0.5.
    # Anchor 0: sims to (1, 2, 3) = cos(90)/.5, cos(180)/.5, cos(270)/.5 = (0, -2, 0);
    # its positive is 1 (sim 0): l_0 = -(0 - log(e^0 + e^-2 + e^0)) = log(2 + e^-2).
    # Every anchor sees the same pattern (positive and one negative at 90 deg, the other
    # negative at 180 deg), so L = log(2 + e^-2) = 0.758624...
    expected = math.log(2.0 + math.exp(-2.0))
    assert expected == pytest.approx(0.758624, abs=1e-6)
    feats = _at_angles([0, 90, 180, 270], scale=3.0)  # not unit: normalised inside
    labels = torch.tensor([0, 0, 1, 1])
    for positives in ("all", "only"):
        loss = SupConLoss(temperature=0.5, positives=positives)(feats, labels)
        assert loss.item() == pytest.approx(expected, abs=1e-7)


def test_hand_example_with_singleton_anchor_tau_one() -> None:
    # Unit vectors at 0, 90, 180, 270 degrees, labels [0, 0, 0, 1], tau = 1.
    # cos matrix rows: [1,0,-1,0], [0,1,0,-1], [-1,0,1,0], [0,-1,0,1].
    # For every anchor the three others have sims {0, 0, -1}, so
    #   log-denominator A = log(2 + e^-1) = 0.861995...
    # anchor 0: positives 1 (sim 0), 2 (sim -1): l = -((0 - A) + (-1 - A)) / 2 = A + 0.5
    # anchor 1: positives 0 (sim 0), 2 (sim 0):  l = A
    # anchor 2: positives 0 (sim -1), 1 (sim 0): l = A + 0.5
    # anchor 3: no positive: l = 0
    # "all":  (3A + 1) / 4 = 0.896496...   "only": (3A + 1) / 3 = 1.195328...
    a = math.log(2.0 + math.exp(-1.0))
    assert a == pytest.approx(0.861995, abs=1e-6)
    feats = _at_angles([0, 90, 180, 270])
    labels = torch.tensor([0, 0, 0, 1])
    loss_all = SupConLoss(temperature=1.0, positives="all")(feats, labels)
    loss_only = SupConLoss(temperature=1.0, positives="only")(feats, labels)
    assert loss_all.item() == pytest.approx((3 * a + 1) / 4, abs=1e-7)
    assert loss_only.item() == pytest.approx((3 * a + 1) / 3, abs=1e-7)
    assert loss_all.item() == pytest.approx(0.896496, abs=1e-6)


@pytest.mark.parametrize("positives", ["all", "only"])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_naive_double_loop(positives: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    b, d = 10 + seed, 6
    feats = torch.randn(b, d, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 5, (b,), generator=gen)
    tau = [0.07, 0.1, 0.5, 1.0][seed]
    got = SupConLoss(temperature=tau, positives=positives)(feats, labels)
    assert got.dtype == torch.float64
    want = _naive_supcon(feats, labels.tolist(), tau, positives)
    assert got.item() == pytest.approx(want, abs=1e-6, rel=1e-6)


def test_modes_differ_when_some_anchor_lacks_positive() -> None:
    gen = torch.Generator().manual_seed(7)
    feats = torch.randn(6, 4, generator=gen)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])  # anchors 4 and 5 have no positive
    all_ = SupConLoss(positives="all")(feats, labels)
    only = SupConLoss(positives="only")(feats, labels)
    assert only.item() == pytest.approx(all_.item() * 6 / 4, rel=1e-6)


def test_gradient_flows_to_features() -> None:
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(8, 5, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 0])
    SupConLoss()(feats, labels).backward()
    assert feats.grad is not None
    assert torch.isfinite(feats.grad).all()
    assert feats.grad.abs().sum().item() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_inputs_give_fp32_result(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(3)
    feats32 = torch.randn(12, 16, generator=gen)
    labels = torch.randint(0, 3, (12,), generator=gen)
    loss_fn = SupConLoss(temperature=0.1)
    low = feats32.to(dtype)
    got = loss_fn(low, labels)
    assert got.dtype == torch.float32
    # Exactly the fp32 computation on the (rounded) inputs ...
    assert got.item() == pytest.approx(loss_fn(low.float(), labels).item(), abs=1e-6)
    # ... and close to the result on the unrounded inputs.
    assert got.item() == pytest.approx(loss_fn(feats32, labels).item(), rel=2e-2)


def test_autocast_region_is_disabled() -> None:
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(16, 32, generator=gen)
    labels = torch.randint(0, 4, (16,), generator=gen)
    loss_fn = SupConLoss(temperature=0.05)
    ref = loss_fn(feats, labels)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        got = loss_fn(feats, labels)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)


@pytest.mark.parametrize("positives", ["all", "only"])
def test_single_example_is_zero(positives: str) -> None:
    feats = torch.randn(1, 4, requires_grad=True)
    loss = SupConLoss(positives=positives)(feats, torch.tensor([3]))
    assert loss.item() == 0.0
    loss.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


@pytest.mark.parametrize("positives", ["all", "only"])
def test_all_distinct_labels_is_zero_with_finite_grads(positives: str) -> None:
    feats = torch.randn(5, 4, requires_grad=True)
    loss = SupConLoss(positives=positives)(feats, torch.arange(5))
    assert loss.item() == 0.0
    assert loss.requires_grad
    loss.backward()
    assert feats.grad is not None and torch.isfinite(feats.grad).all()


def test_identical_features_no_nan() -> None:
    # All sims equal: log_prob = -log(B - 1) for every pair, so L = log(3) for B = 4.
    feats = torch.ones(4, 8, requires_grad=True)
    loss = SupConLoss(temperature=0.07)(feats, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == pytest.approx(math.log(3.0), abs=1e-6)
    loss.backward()
    assert torch.isfinite(feats.grad).all()


def test_zero_feature_row_no_nan() -> None:
    feats = torch.randn(4, 3)
    feats[1] = 0.0
    feats.requires_grad_(True)
    loss = SupConLoss()(feats, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(feats.grad).all()


def test_gathered_global_batch_equals_concatenation() -> None:
    # Features/labels from an all-gather are just a bigger batch: no rank assumptions.
    gen = torch.Generator().manual_seed(5)
    parts = [torch.randn(4, 3, generator=gen) for _ in range(2)]
    labels = [torch.tensor([0, 1, 0, 2]), torch.tensor([1, 2, 3, 3])]
    loss = SupConLoss()(torch.cat(parts), torch.cat(labels))
    naive = _naive_supcon(torch.cat(parts), torch.cat(labels).tolist(), 0.07, "all")
    assert loss.item() == pytest.approx(naive, rel=1e-5)


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="positives"):
        SupConLoss(positives="any")
    with pytest.raises(ValueError, match="temperature"):
        SupConLoss(temperature=0.0)
    loss_fn = SupConLoss()
    with pytest.raises(ValueError, match=r"\(B, D\)"):
        loss_fn(torch.randn(4), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(torch.randn(4, 2), torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="integer labels"):
        loss_fn(torch.randn(4, 2), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="non-empty"):
        loss_fn(torch.randn(0, 2), torch.tensor([], dtype=torch.long))
