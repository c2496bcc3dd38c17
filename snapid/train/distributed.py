"""torchrun support: DistributedDataParallel with gloo on CPU and NCCL on GPU. Rank 0 alone logs,
writes the database and checkpoints; the others follow its decisions."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device_type: str) -> Dist:
    """Join the process group torchrun describes in the environment; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def broadcast(info: Dist, value):
    """Rank 0's value on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_cat(info: Dist, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's tensor (rank order) on every rank."""
    if not info.enabled:
        return tensor
    parts: list = [None] * info.world
    dist.all_gather_object(parts, tensor.cpu())
    return torch.cat(parts)


def barrier(info: Dist) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
