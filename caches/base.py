"""The cache interface: a policy that decides what each forward recomputes.

Before each forward the loop asks ``plan(state, logit_cols)`` for a ``StepPlan``: the canvas
columns to recompute (``query``; None = all) and whether K/V buffers are used. Columns not
recomputed are read from the per-layer ``KVStore`` (full-length, position-indexed, K after
RoPE). After each decision the loop calls ``commit(state, committed)``; after a canvas edit that
moves columns it calls ``begin`` again, which must make the next plan a full refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.state import DecodeState


@dataclass
class StepPlan:
    query: torch.Tensor | None = None   # [B, Lq] columns to recompute; None = every column
    use_kv: bool = False                # read/write the KVStore

    @property
    def full(self) -> bool:
        return self.query is None


@dataclass
class Cache:
    """Base class of cache policies."""

    needs_kv = False

    def begin(self, state: DecodeState) -> None:
        return None

    def plan(self, state: DecodeState, logit_cols: torch.Tensor) -> StepPlan:
        raise NotImplementedError

    def commit(self, state: DecodeState, committed: torch.Tensor) -> None:
        return None
