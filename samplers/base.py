"""The sampler interface and the selection primitives every sampler shares.

A sampler is a dataclass of hyper-parameters. The loop calls its hooks; only ``select`` is
required. Hooks read the ``DecodeState`` / ``StepView`` and never call the model.

- ``init_state(state)``: per-request state, stored as ``state.sampler_state``.
- ``plan_length(state, probe)``: before decoding, return per-row generation lengths ``[B]``
  (or None). ``probe(lengths)`` runs one forward over a canvas of those lengths (counted in
  NFE) and returns its ``StepView`` over the whole generated region.
- ``logit_region(state)``: ``(start [B], end [B])`` columns whose logits the sampler needs;
  default the current block.
- ``plan_block(view)``: after the first forward of a block, return the block end ``[B]``.
- ``select(view)`` -> ``Decision``.
- ``observe(view, decision)``: bookkeeping after the loop applied the decision.
- ``on_block_end(state, rows)``: rows whose block just finished; may return a ``Decision``
  holding only ``edits`` / ``stop``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.state import Decision, DecodeState, StepView


def top_k_mask(score: torch.Tensor, cand: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[B, W] bool: the ``k[b]`` highest-scoring candidates of each row (ties: lower column first)."""
    masked = score.masked_fill(~cand, float("-inf"))
    order = masked.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1], device=order.device).expand_as(order))
    return (ranks < k[:, None]) & cand


def best_candidate(score: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """[B, W] bool: the single best candidate of each row that has one."""
    return top_k_mask(score, cand, torch.ones(score.shape[0], dtype=torch.long, device=score.device))


def threshold_mask(score: torch.Tensor, cand: torch.Tensor, threshold: float) -> torch.Tensor:
    """Candidates with ``score >= threshold`` plus each row's best candidate (progress)."""
    return ((score >= threshold) & cand) | best_candidate(score, cand)


@dataclass
class Sampler:
    """Base class of sampler plugins (see the module docstring for the hooks)."""

    def init_state(self, state: DecodeState):
        return None

    def plan_length(self, state: DecodeState, probe):
        return None

    def logit_region(self, state: DecodeState):
        return state.block_start, state.block_end

    plan_block = None  # optional hook: (view) -> block_end [B]

    def select(self, view: StepView) -> Decision:
        raise NotImplementedError

    def observe(self, view: StepView, decision: Decision) -> None:
        return None

    def on_block_end(self, state: DecodeState, rows: torch.Tensor) -> Decision | None:
        return None
