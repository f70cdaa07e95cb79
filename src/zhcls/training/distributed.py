"""Helpers for DDP runs (torchrun). Single-process runs never touch torch.distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``scale``."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return tensor.view_as(tensor)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def gather_with_grad(tensor: torch.Tensor, grad_scale: float = 1.0) -> torch.Tensor:
    """All-gather ``tensor`` (B, ...) from every rank into (sum of B over ranks, ...), in rank
    order, keeping the autograd graph for this rank's slice only (the other ranks' slices
    are constants here; their own ranks back-propagate through them). Ranks may hold
    different B (e.g. a last, shorter batch).

    ``grad_scale`` multiplies the gradient reaching the local slice. When every rank
    computes the same loss over the gathered batch and DDP averages the gradients over the
    W ranks, ``grad_scale=W`` makes the update equal to that of one process computing the
    loss over the whole global batch (without it the gathered term's gradient is W times
    too small)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    counts = [int(s.item()) for s in sizes]
    padded = tensor
    if tensor.shape[0] < max(counts):
        pad = tensor.new_zeros((max(counts) - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.detach().contiguous())
    local = tensor
    if grad_scale != 1.0 and tensor.requires_grad:
        local = _ScaleGrad.apply(tensor, grad_scale)
    parts[rank] = local  # the only slice connected to this rank's graph
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])
