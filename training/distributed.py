"""The processes of a run: one, or several under torchrun (each on its own GPU, rank 0 the one that writes)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from backend.device import resolve_device


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def training_device(name: str, local_rank: int) -> torch.device:
    """The device of this process: `resolve_device`'s, with each torchrun process on its own GPU."""
    device = resolve_device(name)
    if device.type == "cuda":
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device
