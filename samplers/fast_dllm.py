"""Fast-dLLM confidence-aware parallel decoding: the threshold rule and the factor rule.

Threshold: commit every masked position of the block whose confidence is at least ``threshold``,
and always the most confident one. Factor: sort the block's candidates by confidence
c(1) >= c(2) >= ...; accept the n-th while ``(n + 1) * (1 - c(n)) <= factor`` (the first always),
stop at the first failure.

Source: Wu et al., "Fast-dLLM: Training-free Acceleration of Diffusion LLM by Enabling KV Cache
and Parallel Decoding" (arXiv:2505.22618); NVlabs/Fast-dLLM ``llada/generate.py``
(``get_transfer_index`` / ``get_transfer_index_dynamic``). Defaults: threshold 0.9, block 32.

Choosing the rule: give ``factor`` for the factor rule, else the threshold rule runs with
``threshold`` (default 0.9). Giving both is an error (which one was meant is unknowable).

Off-by-one: the reference factor code commits all N candidates when the first failing index is
the last one (N). We commit exactly the accepted prefix, the paper's rule; set
``reference_off_by_one=True`` to reproduce the reference code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range
from dllm.selection import threshold_mask, top_k_mask
from dllm.state import Decision, StepView

from . import register
from .base import Sampler

DEFAULT_THRESHOLD = 0.9


def factor_accept_count(
    conf: torch.Tensor, cand: torch.Tensor, factor: float, reference_off_by_one: bool = False
):
    """[B] number of top candidates the factor rule accepts."""
    ordered = conf.masked_fill(~cand, float("-inf")).sort(dim=1, descending=True).values
    n = torch.arange(1, ordered.shape[1] + 1, device=conf.device, dtype=conf.dtype)
    ok = (n + 1) * (1 - ordered) <= factor
    ok[:, 0] = True
    accepted = ok.long().cumprod(dim=1).sum(1)
    available = cand.sum(1)
    if reference_off_by_one:
        accepted = torch.where((accepted == available - 1) & (available > 1), available, accepted)
    return torch.minimum(accepted, available)


@register("fast-dllm")
@dataclass
class FastDLLMSampler(Sampler):
    """Fast-dLLM parallel decoding: confidence threshold (default 0.9) or the factor rule."""

    threshold: float | None = None  # None: DEFAULT_THRESHOLD, unless ``factor`` is given
    factor: float | None = None
    reference_off_by_one: bool = False

    def __post_init__(self):
        if self.threshold is not None and self.factor is not None:
            raise ValueError(
                f"fast-dllm takes exactly one of threshold or factor, got threshold={self.threshold!r}"
                f" and factor={self.factor!r}; leave threshold unset for the factor rule"
            )
        if self.factor is not None:
            check_range("fast-dllm", "factor", self.factor, 0.0, low_open=True)
        if self.threshold is not None:
            check_range("fast-dllm", "threshold", self.threshold, 0.0, 1.0, low_open=True)

    def select(self, view: StepView) -> Decision:
        if self.factor is None:
            threshold = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
            return Decision(commit=threshold_mask(view.score, view.cand, threshold))
        k = factor_accept_count(view.score, view.cand, self.factor, self.reference_off_by_one)
        return Decision(commit=top_k_mask(view.score, view.cand, k))
