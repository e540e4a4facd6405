"""Selection primitives: which of a row's candidate columns to commit, by score.

Shared by the loop (its progress guarantee commits ``best_candidate``) and the sampler plugins;
every function is vectorised over the batch and works on ``[B, W]`` tensors over a ``StepView``'s
columns (``score``: higher is better; ``cand``: the columns that may be committed).
"""

from __future__ import annotations

import torch


def top_k_mask(score: torch.Tensor, cand: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """[B, W] bool: the ``k[b]`` highest-scoring candidates of each row (ties: lower column first)."""
    masked = score.masked_fill(~cand, float("-inf"))
    order = masked.argsort(dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(
        1, order, torch.arange(order.shape[1], device=order.device).expand_as(order)
    )
    return (ranks < k[:, None]) & cand


def best_candidate(score: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """[B, W] bool: the single best candidate of each row that has one."""
    return top_k_mask(score, cand, torch.ones(score.shape[0], dtype=torch.long, device=score.device))


def threshold_mask(score: torch.Tensor, cand: torch.Tensor, threshold: float) -> torch.Tensor:
    """Candidates with ``score >= threshold`` plus each row's best candidate (progress)."""
    return ((score >= threshold) & cand) | best_candidate(score, cand)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """[B, W] bool: columns within ``radius`` columns of a True column of the same row."""
    if radius <= 0:
        return mask.clone()
    pooled = torch.nn.functional.max_pool1d(mask[:, None].float(), 2 * radius + 1, stride=1, padding=radius)
    return pooled[:, 0] > 0
