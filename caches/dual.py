"""Dual cache (Fast-dLLM): freeze the K/V of the prefix *and* of the masked suffix.

Idea: within a block, the still-masked positions after it change as little as the prefix does,
so only the current block is recomputed at each step; both the prefix and the suffix K/V come
from the full forward at the block's first step. Per-step cost drops from O(L) columns to
O(block) columns (attention still reads all L keys).

Source: Wu et al., "Fast-dLLM" (arXiv:2505.22618); NVlabs/Fast-dLLM ``llada/generate.py``
(``generate_with_dual_cache``, ``replace_position``) and ``dream/model/generation_utils_block.py``.
Defaults: refresh at block start only (block 32).

Differences from the reference: batched rows use their own block ranges (the reference's
``replace_position`` indexing broke at batch > 1, NVlabs/Fast-dLLM#7); a sampler asking for logits
outside the block (look-ahead, whole-generation regions) gets those columns recomputed too; for
a shifted-logit model the row before the block is recomputed instead of forcing the block's first
token. ``recompute_suffix=True`` also recomputes the suffix every step, which is the prefix
cache; ``refresh_interval`` adds refreshes inside a block (1 = identical to no cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import register
from .base import IncrementalCache, block_schedule, check_flag, check_interval


@register("dual")
@dataclass
class DualCache(IncrementalCache):
    """Fast-dLLM dual cache: prefix and suffix K/V frozen; only the block recomputed each step."""

    refresh_interval: int | None = None
    recompute_suffix: bool = False

    def __post_init__(self):
        check_interval("dual", "refresh_interval", self.refresh_interval)
        check_flag("dual", "recompute_suffix", self.recompute_suffix)

    def schedule(self, state, own):
        return block_schedule(state, self.refresh_interval)

    def columns(self, state, own):
        cols = state.column_index()
        need = (cols >= state.block_start[:, None]) & (cols < state.block_end[:, None])
        if self.recompute_suffix:
            need |= cols >= state.block_end[:, None]
        return need
