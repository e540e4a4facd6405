"""Data parallelism for evaluation: rank / world size, gather to rank 0, barrier, broadcast.

Launch any evaluation entry point with ``accelerate launch --multi_gpu --num_processes N -m ...``
or ``torchrun --nproc_per_node N -m ...``. The process group is set up through accelerate when it
is installed (``PartialState(cpu=True)`` on a machine without CUDA, i.e. gloo), and directly with
``torch.distributed`` otherwise. A single process (no ``WORLD_SIZE`` > 1) needs neither.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Distributed:
        """The current process's place in the launch (initialising the process group if needed)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            try:
                from accelerate.state import PartialState

                PartialState(cpu=not torch.cuda.is_available())
            except ImportError:
                dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
        return cls(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> str:
        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def gather_object(self, obj, dst: int = 0):
        """``[obj of rank 0, obj of rank 1, ...]`` on ``dst``; None on the other ranks."""
        if self.world_size == 1:
            return [obj]
        out = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj, out, dst=dst)
        return out

    def broadcast_object(self, obj, src: int = 0):
        """``obj`` of rank ``src`` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj if self.rank == src else None]
        torch.distributed.broadcast_object_list(box, src=src)
        return box[0]

    def close(self) -> None:
        """Wait for every rank, then tear the process group down (a process that exits with a live
        gloo group can abort in its destructor)."""
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def shard(self, items: list) -> list:
        """This rank's share of ``items``: item i goes to rank i mod world_size (as lm-eval does)."""
        return items[self.rank :: self.world_size]
