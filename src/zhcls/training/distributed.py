"""Helpers for DDP runs (torchrun). Single-process runs never touch torch.distributed."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """All-gather ``tensor`` (B, ...) from every rank into (world * B, ...), keeping the
    autograd graph for this rank's slice (the other ranks' slices are constants here; their
    own ranks back-propagate through them). Requires equal B on every rank, which holds for
    the Trainer's evenly sharded batches (use drop_last for the last batch otherwise)."""
    world, rank = dist.get_world_size(), dist.get_rank()
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    longest = int(max(s.item() for s in sizes))
    padded = tensor
    if tensor.shape[0] < longest:
        pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
        padded = torch.cat([tensor, pad])
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded.detach().contiguous())
    parts[rank] = padded  # keep gradients for the local part
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])
