"""Block cache (Fast-dLLM v2): hierarchical K/V reuse for block-diffusion models.

Idea: a block-diffusion model (block-causal attention, ``bd_size`` blocks over positions) never
changes the K/V of a finished block, so those form an append-only, AR-style prefix cache: each
finished block is recomputed once, with its final tokens, by the forward that decodes the next
block's first token (the AR step), and never again. Inside the current block a second,
block-local level: at the first step of every sub-block (and while its first token is still
masked) the whole block is recomputed (its K/V become the block cache), and the other steps of
that sub-block recompute only the sub-block,
overwriting its rows of the block cache in place, while the block's other sub-blocks (the
decoded ones and the still-masked ones after it) are read from the cache.

Source: Wu et al., "Fast-dLLM v2: Efficient Block-Diffusion LLM" (arXiv:2509.26328);
``Fast_dLLM_QwenForCausalLM.generate`` (``use_block_cache``, ``block_past_key_values``,
``replace_position``) of ``Efficient-Large-Model/Fast_dLLM_v2_7B``. Defaults: block 32, sub-block 8
(``v2/run_chatbot.py``), block cache refreshed at each sub-block start only.

Differences from the reference: K/V live in the full-length, position-indexed ``KVStore`` (K after
RoPE, like the reference's caches), so "append" is "recompute the finished block's columns once"
and "overwrite" is the model's column scatter; rows of a batch keep their own blocks (positions
count from each row's first real token, so ragged prompts decode as they would alone). The
rows a sampler's logits need (column ``j`` is predicted from row ``j - 1``) are recomputed too,
so samplers that look outside the block work (their far-away logits are approximate, as with every
cache). A full refresh (start, canvas edits) covers the blocks up to the current one only.
The AR step recomputes only the finished block (the reference's extra "block complete"
forward, merged with the next block's first decision). ``refresh_interval`` adds full refreshes
inside a sub-block (1 = every step, identical to no cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import register
from .base import IncrementalCache, IncrementalState, block_schedule, check_interval


@dataclass
class BlockCacheState(IncrementalState):
    final_blocks: torch.Tensor  # [B] blocks (position // bd_size) below this index hold their final K/V


@register("block-cache")
@dataclass
class BlockCache(IncrementalCache):
    """Fast-dLLM v2 hierarchical cache: finished blocks frozen (append-only), sub-blocks overwritten."""

    refresh_interval: int | None = None

    def __post_init__(self):
        check_interval("block-cache", "refresh_interval", self.refresh_interval)

    def unsupported_reason(self, model) -> str | None:
        if getattr(getattr(model, "config", None), "block_size", None) is None:
            return (
                f"block-cache needs a block-diffusion model (bd_size in config.json, e.g. Fast-dLLM v2);"
                f" {getattr(model, 'name', 'this model')} has bidirectional attention over the whole canvas:"
                " use the prefix or dual cache"
            )
        return None

    def begin(self, state):
        reason = self.unsupported_reason(state.model)
        if reason:
            raise ValueError(reason)
        super().begin(state)

    def new_state(self, state, **bookkeeping):
        first = state.positions[:, state.gen_start] // state.model.config.block_size
        return BlockCacheState(**bookkeeping, final_blocks=first)

    def schedule(self, state, own):
        if self.refresh_interval is None:
            return torch.zeros_like(own.refresh)
        return block_schedule(state, self.refresh_interval)

    def horizon(self, state):
        """A full refresh covers the prompt and the blocks up to the current one: the later (masked)
        blocks are invisible to it, as the reference never forwards them."""
        pos = state.positions
        start = state.block_start.clamp(max=state.width - 1)[:, None]
        return (pos // state.model.config.block_size) <= (
            pos.gather(1, start) // state.model.config.block_size
        )

    def columns(self, state, own):
        bd = state.model.config.block_size
        cols = state.column_index()
        start = state.block_start.clamp(max=state.width - 1)[:, None]
        pos = state.positions
        start_pos = pos.gather(1, start)
        block = pos // bd
        current = start_pos // bd
        # finished blocks not yet recomputed with their final tokens (the append to the prefix cache)
        need = (block < current) & (block >= own.final_blocks[:, None])
        ar_step = (start_pos % bd) == 0
        sub = state.config.sub_block_length or bd
        sub_start = (
            start - (start_pos % bd) % sub
        )  # the sub-block's first column (the reference's replace_position)
        in_block = block == current
        # the whole block at a sub-block's first step, and while the sub-block's first token is still masked
        # (the reference's ``block_past_key_values is None or x_t[sub-block start] == mask``)
        first_masked = state.tokens.gather(1, sub_start.clamp(min=0)) == state.mask_id
        whole_block = ((state.step_in_block == 0)[:, None] | first_masked) & in_block
        sub_block = in_block & (cols >= sub_start) & (cols < state.block_end[:, None])
        need |= ~ar_step & (whole_block | sub_block)
        own.final_blocks = torch.where(state.active, current[:, 0], own.final_blocks)
        return need
