"""Tests for KDLoss (Hinton et al., 2015)."""

from __future__ import annotations

import math

import pytest
import torch

from zhcls.losses import KDLoss


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _kl(q: list[float], p: list[float]) -> float:
    return sum(qi * math.log(qi / pi) for qi, pi in zip(q, p, strict=True) if qi > 0)


def test_hand_value_probs_teacher() -> None:
    # T = 2. Row 0: teacher p = [0.8, 0.2]; p^(1/2) = [sqrt(.8), sqrt(.2)], ratio 2:1,
    #   so the target is q = [2/3, 1/3]. Student z = [1, 0] -> softmax([0.5, 0]).
    # Row 1: teacher p = [0.5, 0.5] -> q = [1/2, 1/2]. Student z = [0, 2] -> softmax([0, 1]).
    # L = T^2 * (KL_0 + KL_1) / 2.
    s0 = [1 / (1 + math.exp(-0.5)), math.exp(-0.5) / (1 + math.exp(-0.5))]
    s1 = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl0 = (2 / 3) * math.log((2 / 3) / s0[0]) + (1 / 3) * math.log((1 / 3) / s0[1])
    kl1 = 0.5 * math.log(0.5 / s1[0]) + 0.5 * math.log(0.5 / s1[1])
    expected = 4.0 * (kl0 + kl1) / 2
    loss = KDLoss(temperature=2.0, teacher_input="probs")(
        torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.8, 0.2], [0.5, 0.5]])
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_value_logits_teacher() -> None:
    # T = 2. Teacher logits [2, 0] -> q = softmax([1, 0]) = [e/(1+e), 1/(1+e)].
    # Student logits [0, 1] -> p = softmax([0, 0.5]) = [1/(1+e^.5), e^.5/(1+e^.5)].
    q = [math.e / (1 + math.e), 1 / (1 + math.e)]
    p = [1 / (1 + math.exp(0.5)), math.exp(0.5) / (1 + math.exp(0.5))]
    kl = q[0] * math.log(q[0] / p[0]) + q[1] * math.log(q[1] / p[1])
    loss = KDLoss(temperature=2.0, teacher_input="logits")(
        torch.tensor([[0.0, 1.0]]), torch.tensor([[2.0, 0.0]])
    )
    assert loss.item() == pytest.approx(4.0 * kl, rel=1e-6)


def test_probs_and_logits_agree_for_same_teacher() -> None:
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(5, 4, generator=gen)
    t_logits = torch.randn(5, 4, generator=gen) * 3
    a = KDLoss(3.0, "logits")(student, t_logits)
    b = KDLoss(3.0, "probs")(student, t_logits.softmax(-1))
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_probs_as_logits_flattens_confident_teacher() -> None:
    p = torch.tensor([[0.9, 0.05, 0.05]])
    q_probs = KDLoss(2.0, "probs").target_log_probs(p).exp()[0].tolist()
    q_pal = KDLoss(2.0, "probs_as_logits").target_log_probs(p).exp()[0].tolist()
    # probs: p^(1/2) renormalised = [0.9487, 0.2236, 0.2236] / 1.3959 = [0.680, 0.160, 0.160]
    s = math.sqrt(0.9) + 2 * math.sqrt(0.05)
    assert q_probs == pytest.approx([math.sqrt(0.9) / s] + [math.sqrt(0.05) / s] * 2, rel=1e-6)
    assert q_probs[0] > 0.65
    # probs_as_logits: softmax([0.45, 0.025, 0.025]) = [0.437, 0.282, 0.282] ~ uniform
    assert q_pal == pytest.approx(_softmax([0.45, 0.025, 0.025]), rel=1e-6)
    assert max(q_pal) - min(q_pal) < 0.16
    entropy = -sum(v * math.log(v) for v in q_pal)
    assert entropy > 0.97 * math.log(3)
    student = torch.tensor([[2.0, 0.0, 0.0]])
    assert KDLoss(2.0, "probs")(student, p).item() != pytest.approx(
        KDLoss(2.0, "probs_as_logits")(student, p).item(), rel=1e-2
    )


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_t_squared_scaling(temperature: float) -> None:
    student = [0.3, -1.0, 2.0]
    teacher = [1.0, 0.5, -0.5]
    q = _softmax([v / temperature for v in teacher])
    p = _softmax([v / temperature for v in student])
    loss = KDLoss(temperature, "logits")(torch.tensor([student]), torch.tensor([teacher]))
    assert loss.item() == pytest.approx(temperature**2 * _kl(q, p), rel=1e-6)


def test_mask_sums_rows_with_teacher_over_the_whole_batch() -> None:
    gen = torch.Generator().manual_seed(1)
    student = torch.randn(4, 3, generator=gen, requires_grad=True)
    teacher = torch.randn(4, 3, generator=gen).softmax(-1)
    teacher[1] = float("nan")  # placeholder for a row without teacher: must be ignored
    teacher[3] = float("nan")
    mask = torch.tensor([True, False, True, False])
    loss_fn = KDLoss(2.0)
    loss = loss_fn(student, teacher, mask)
    ref = loss_fn(student.detach()[[0, 2]], teacher[[0, 2]])  # mean over the 2 teacher rows
    assert loss.item() == pytest.approx(ref.item() * 2 / 4, rel=1e-6)  # sum / B
    loss.backward()
    assert torch.isfinite(student.grad).all()
    assert student.grad[[1, 3]].abs().sum().item() == 0.0
    assert student.grad[[0, 2]].abs().sum().item() > 0.0


def test_all_false_mask_is_zero_and_backward_works() -> None:
    student = torch.randn(3, 2, requires_grad=True)
    loss = KDLoss()(student, torch.full((3, 2), float("nan")), torch.zeros(3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum().item() == 0.0


@pytest.mark.parametrize("teacher_input", ["probs", "logits"])
def test_zero_when_student_equals_teacher(teacher_input: str) -> None:
    z = torch.tensor([[1.5, -0.5, 0.2], [0.0, 3.0, -2.0]])
    teacher = z.softmax(-1) if teacher_input == "probs" else z.clone()
    assert KDLoss(2.0, teacher_input)(z, teacher).item() == pytest.approx(0.0, abs=1e-6)


def test_teacher_gets_no_gradient_and_fp16_is_fp32() -> None:
    gen = torch.Generator().manual_seed(2)
    student = torch.randn(4, 5, generator=gen, requires_grad=True)
    teacher = torch.randn(4, 5, generator=gen, requires_grad=True)
    loss_fn = KDLoss(2.0, "logits")
    ref = loss_fn(student, teacher)
    half = loss_fn(student.detach().half(), teacher.detach().half())
    assert half.dtype == torch.float32
    assert half.item() == pytest.approx(ref.item(), rel=1e-2)
    ref.backward()
    assert teacher.grad is None
    assert student.grad is not None and student.grad.abs().sum().item() > 0


def test_invalid_arguments_raise() -> None:
    with pytest.raises(ValueError, match="teacher_input"):
        KDLoss(teacher_input="soft")
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=-1.0)
    loss_fn = KDLoss()
    with pytest.raises(ValueError, match="teacher of shape"):
        loss_fn(torch.randn(2, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match='teacher_input="logits"'):
        loss_fn(torch.randn(2, 3), torch.tensor([[3.0, -1.0, 0.5], [0.2, 0.3, 0.5]]))
    with pytest.raises(ValueError, match="bool mask"):
        loss_fn(torch.randn(2, 3), torch.rand(2, 3), torch.tensor([1, 0]))


def test_one_teacher_row_weighs_one_row_not_the_batch() -> None:
    """hard_label_only: a batch of 4 with one teacher row gives that row weight 1/4, as the
    cross-entropy gives every row; it is not averaged up to the weight of the whole batch."""
    gen = torch.Generator().manual_seed(3)
    student = torch.randn(4, 3, generator=gen)
    teacher = torch.randn(4, 3, generator=gen).softmax(-1)
    mask = torch.tensor([False, True, False, False])
    loss_fn = KDLoss(2.0)
    alone = loss_fn(student[1:2], teacher[1:2])  # KL of that row, T^2-scaled
    assert loss_fn(student, teacher, mask).item() == pytest.approx(alone.item() / 4, rel=1e-6)


def _no_host_sync(monkeypatch) -> None:
    """Make every tensor-to-Python conversion (a device sync on GPU) raise."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("host sync in the loss forward")

    for name in ("__bool__", "__float__", "__int__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)


@pytest.mark.parametrize("teacher_input", ["probs", "logits"])
def test_training_forward_makes_no_host_sync(monkeypatch, teacher_input: str) -> None:
    from zhcls.losses import SupConLoss

    gen = torch.Generator().manual_seed(4)
    student = torch.randn(6, 3, generator=gen, requires_grad=True)
    teacher = torch.randn(6, 3, generator=gen)
    teacher = teacher.softmax(-1) if teacher_input == "probs" else teacher
    mask = torch.tensor([True, False, True, True, False, True])
    feats = torch.randn(6, 4, generator=gen, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 3])
    kd = KDLoss(2.0, teacher_input, validate=False)
    supcon_all, supcon_only = SupConLoss(0.1, "all"), SupConLoss(0.1, "only")
    _no_host_sync(monkeypatch)
    losses = [kd(student, teacher, mask), supcon_all(feats, labels), supcon_only(feats, labels),
              supcon_only(feats, torch.arange(6))]  # the last: no anchor has a positive
    monkeypatch.undo()
    assert all(torch.isfinite(x) for x in losses)
    assert losses[3].item() == 0.0

