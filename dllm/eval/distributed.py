"""Data parallelism for evaluation: rank / world size, gather to rank 0, barrier, broadcast.

Launch any evaluation entry point with ``accelerate launch --multi_gpu --num_processes N -m ...``
or ``torchrun --nproc_per_node N -m ...``. The process group is set up through accelerate when it
is installed (``PartialState(cpu=True)`` on a machine without CUDA, i.e. gloo), and directly with
``torch.distributed`` otherwise. A single process (no ``WORLD_SIZE`` > 1) needs neither.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

T = TypeVar("T")


def _portable(error: Exception | None) -> Exception | None:
    """``error`` if it survives pickling (to go to the other ranks), else a RuntimeError with its text."""
    if error is None:
        return None
    try:
        return pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")


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

    def run_on_main(self, work: Callable[[], T]) -> T:
        """``work()`` run on rank 0 only; every rank returns its value, or raises the error it raised.

        A failure on rank 0 (a locked or damaged output folder) is then the same error on every rank,
        where the other ranks would otherwise wait on a broadcast that never comes."""
        value = error = None
        if self.is_main:
            try:
                value = work()
            except Exception as exc:
                if self.world_size == 1:
                    raise
                error = exc
        if self.world_size == 1:
            return value
        value, shared = self.broadcast_object((value, _portable(error)))
        if self.is_main and error is not None:
            raise error
        if shared is not None:
            raise shared
        return value

    @staticmethod
    def leave(wait: float = 10.0) -> None:
        """Leave the process group on an error every rank got (see :meth:`run_on_main`): wait up to
        ``wait`` seconds for the other ranks (so the launcher does not kill one that is still printing
        the error), then tear the group down; a process that exits with a live gloo group can abort in
        its destructor. Never waits longer, even when the other ranks are not leaving."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        import datetime

        try:
            torch.distributed.monitored_barrier(timeout=datetime.timedelta(seconds=wait))
        except Exception:  # a rank that is not leaving, or a backend without it (nccl)
            pass
        torch.distributed.destroy_process_group()

    def close(self) -> None:
        """Wait for every rank, then tear the process group down (a process that exits with a live
        gloo group can abort in its destructor)."""
        if self.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()

    def shard(self, items: list) -> list:
        """This rank's share of ``items``: item i goes to rank i mod world_size (as lm-eval does)."""
        return items[self.rank :: self.world_size]
