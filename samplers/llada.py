"""LLaDA baseline: low-confidence (or random) remasking on a uniform per-block schedule.

Each block of ``block_length`` positions gets ``steps / num_blocks`` steps; step i commits
``floor(m/s) + [i < m mod s]`` of the block's ``m`` masked positions — the most confident
ones (``low_confidence``) or random ones (``random``). With ``steps == gen_length`` this is one
token per step, the setting the LLaDA authors recommend for quality.

Source: Nie et al., "Large Language Diffusion Models" (arXiv:2502.09992), ``generate.py`` of
ML-GSAI/LLaDA. Confidence comes from the un-noised logits; Gumbel noise is drawn in float64
(both handled by the loop for every sampler).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.selection import top_k_mask
from dllm.state import Decision, StepView

from . import register
from .base import Sampler

REMASKING = ("low_confidence", "random")


@dataclass
class LLaDAState:
    schedule: torch.Tensor  # [B, steps_per_block] tokens to commit at each step of the row's block


def uniform_schedule(masked: torch.Tensor, steps: int) -> torch.Tensor:
    """[B, steps] tokens to commit per step: ``masked`` split evenly, remainder front-loaded."""
    base = masked[:, None] // steps
    remainder = masked[:, None] % steps
    return base + (torch.arange(steps, device=masked.device)[None] < remainder).long()


@register("llada")
@dataclass
class LLaDASampler(Sampler):
    """LLaDA low-confidence / random remasking with the uniform per-block step schedule."""

    remasking: str = "low_confidence"

    def __post_init__(self):
        if self.remasking not in REMASKING:
            raise ValueError(f"llada.remasking={self.remasking!r} is not one of {REMASKING}")

    def init_state(self, state):
        steps = state.config.steps_per_block
        return LLaDAState(
            schedule=torch.zeros(state.batch, steps, dtype=torch.long, device=state.tokens.device)
        )

    def select(self, view: StepView) -> Decision:
        st = view.state
        schedule = st.sampler_state.schedule
        steps = schedule.shape[1]
        starting = view.first_of_block
        schedule.copy_(torch.where(starting[:, None], uniform_schedule(st.block_masks(), steps), schedule))
        index = st.step_in_block.clamp(max=steps - 1)
        k = schedule.gather(1, index[:, None])[:, 0]
        # Past the schedule (after canvas edits) commit whatever is left.
        k = torch.where(st.step_in_block >= steps, view.cand.sum(1), k)
        score = view.score if self.remasking == "low_confidence" else view.uniform()
        return Decision(commit=top_k_mask(score, view.cand, k))
