"""Prefix cache (Fast-dLLM): freeze the K/V of everything before the current block.

Idea: in semi-autoregressive decoding the prompt and the finished blocks change little while a
block is being decoded, so their K/V are computed once, by a full forward at the block's first
step, and reused for the rest of the block. Every other step recomputes the current block and
the whole (still masked) suffix after it.

Source: Wu et al., "Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling KV Cache
and Parallel Decoding" (arXiv:2505.22618); NVlabs/Fast-dLLM ``llada/generate.py``
(``generate_with_prefix_cache``). Defaults: refresh at block start only (block 32).

Differences from the reference: K/V live in full-length position-indexed buffers (K after RoPE)
instead of a truncated prefix cache, so nothing is re-rotated. For a shifted-logit model (Dream)
the reference commits the block's first token at the block-start forward, because its window
``x[s:]`` lacks the row ``s - 1`` that predicts it; here the plan simply also recomputes the rows
the requested logits read (``s - 1``), so no token is forced. ``refresh_interval`` adds periodic
refreshes inside a block (None = the reference; 1 = every step, identical to no cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import register
from .base import IncrementalCache, block_schedule, check_interval


@register("prefix")
@dataclass
class PrefixCache(IncrementalCache):
    """Fast-dLLM prefix cache: K/V before the block frozen; block + suffix recomputed each step."""

    refresh_interval: int | None = None

    def __post_init__(self):
        check_interval("prefix", "refresh_interval", self.refresh_interval)

    def schedule(self, state, own):
        return block_schedule(state, self.refresh_interval)

    def columns(self, state, own):
        return state.column_index() >= state.block_start[:, None]
