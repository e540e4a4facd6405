"""dKV-Cache: delayed caching of decoded tokens (``dkv-decode``) and a greedy window variant.

Idea: a masked position's K/V keep changing while it is masked, but once its token is decoded
they settle. dKV-Cache-Decode caches a token's K/V one step *after* it is decoded: the token
decoded at step t is recomputed at t+1 as a real token, and read from the cache from t+2 on;
every still-masked position (current and later blocks) is recomputed at every step, and a full
forward refreshes everything at a block's first step and every ``refresh_interval`` steps.
dKV-Cache-Greedy recomputes far less: only the tokens decoded at the previous step plus a
``window`` of the nearest still-masked positions around them; everything else, masks included,
is read (stale) from the cache until the next refresh (every ``refresh_interval`` steps).

Source: Ma, Yu, Fang, Wang, "dKV-Cache: The Cache for Diffusion Language Models"
(arXiv:2505.15781); horseee/dKV-Cache ``generation_utils/llada_dkv_cache_{decode,greedy}.py``,
``dream_generation_utils.py``. Defaults: Decode N = 8, Greedy N = 2 with window 4 (paper
Table 1). Shifted-logit models (Dream): row j is settled once the token it predicts (column
j + shift) was real in the previous step's input — the reference's default ``"un"`` rule, written
with the model's shift so one rule serves both layouts (``own_token=True`` also requires the
row's own token: the reference's ``"un_right"``).

Differences from the reference: the reference's second full forward at step 1 only builds its
cache (it keeps nothing from step 0); the position-indexed store keeps step 0's K/V and the delay
rule already recomputes every column masked at step 0, so step 1 is a cached step. Columns whose
hidden states the sampler's logits need are always recomputed (for the default samplers: the
block). Greedy's reference fixes a random decoding order up front, so it knows the tokens of the
*next* step; with any sampler those are unknown, so the window is taken around the tokens decoded
at the previous step (the next step's candidates are in the recomputed logit region anyway).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range

from . import register
from .base import IncrementalCache, block_schedule, check_flag, check_interval, shift_left


class _DKV(IncrementalCache):
    refresh_interval: int

    def __post_init__(self):
        check_interval(self.name, "refresh_interval", self.refresh_interval)
        check_flag(self.name, "own_token", getattr(self, "own_token", False))

    def schedule(self, state, own):
        return block_schedule(state, self.refresh_interval)


@register("dkv-decode")
@dataclass
class DKVDecodeCache(_DKV):
    """dKV-Cache-Decode: masked rows recomputed every step; a decoded token cached one step later."""

    refresh_interval: int = 8
    own_token: bool = False

    def columns(self, state, own):
        real_before = own.tokens != state.mask_id  # the previous forward's input
        shift = state.model.shift
        settled = shift_left(real_before, shift) if shift else real_before
        if shift:
            settled[:, -shift:] = real_before[:, -shift:]
            if self.own_token:
                settled &= real_before
        return ~settled


def window_around(decoded: torch.Tensor, masked: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, L]``: up to ``ceil(size/2)`` still-masked columns left and ``size // 2`` right of each
    decoded one."""
    if size == 0:
        return torch.zeros_like(masked)
    cols = torch.arange(masked.shape[1], device=masked.device).expand_as(masked)
    count = masked.long().cumsum(1)  # masked columns at or before j
    none = torch.full_like(cols, -1)
    left_of = torch.where(decoded, cols, none).cummax(1).values  # nearest decoded column <= j
    right_of = torch.where(decoded, cols, cols.new_full((), masked.shape[1])).flip(1).cummin(1).values.flip(1)
    at_left = count.gather(1, left_of.clamp(min=0))
    at_right = count.gather(1, right_of.clamp(max=masked.shape[1] - 1))
    near_right_of_decoded = (left_of >= 0) & (count - at_left <= size // 2)
    near_left_of_decoded = (right_of < masked.shape[1]) & (at_right - count < (size + 1) // 2)
    return masked & (near_right_of_decoded | near_left_of_decoded)


@register("dkv-greedy")
@dataclass
class DKVGreedyCache(_DKV):
    """dKV-Cache-Greedy: recompute last step's tokens and a window around them; refresh every N."""

    refresh_interval: int = 2
    window: int = 4

    def __post_init__(self):
        super().__post_init__()
        check_range("dkv-greedy", "window", self.window, 0)

    def columns(self, state, own):
        decoded = own.committed
        masked = state.is_mask() & state.in_generation()
        return decoded | shift_left(decoded, state.model.shift) | window_around(decoded, masked, self.window)
