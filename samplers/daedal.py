"""DAEDAL: variable-length denoising — grow the canvas until the model predicts its end.

Idea: a dLLM is fed a fixed-length canvas, but its EOS predictions say whether that canvas is
long enough. The *EOS-completion score* of a row is the summed EOS probability of the last
``eos_check_tokens`` positions (scanning back from the end) whose prediction is EOS, divided by
``eos_check_tokens``. Stage 1 (``plan_length``, one probe forward each, counted in NFE): start
every row at ``initial_length`` masks and add ``expansion`` masks while the score is below
``eos_threshold``; then append a visible tail of ``eos_tail`` EOS tokens. Stage 2: decode in a
sliding window of ``block_length`` with a ``high_confidence`` threshold (strict ``>``; the best
candidate when none passes); while the row's score is below ``expand_eos_threshold`` the single
least confident window position with confidence < ``low_confidence`` becomes ``expansion`` masks
(an ``insert`` edit). No row grows past ``max_length`` (nor the model's context).

Source: Li et al., "Beyond Fixed: Variable-Length Denoising for Diffusion Large Language Models"
(arXiv:2508.00819), Li-Jinsong/DAEDAL ``models/LLaDA_DAEDAL.py`` and ``scripts/eval_LLaDA_DAEDAL.sh``:
initial 64, max 2048, block 32, thresholds 0.9 / 0.1 / 0.5 / 0.9, expansion 8, 32 EOS checks,
16-token EOS tail. The reference is LLaDA-only; the loop's Dream adapter makes it run on Dream.

Differences from the reference code: the window is the loop's block, so masks inserted into it
enlarge it instead of pushing later masks out of a 32-wide window; the EOS tail is written by an
edit after the first denoising forward (the loop has no token-forcing edit), so that forward sees
masks there; stage 1 skips its probe when no row can grow; no stagnation stop (the loop's
progress guarantee makes every step change the canvas).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range
from dllm.selection import best_candidate
from dllm.state import Decision, Edit, StepView

from . import register
from .base import Sampler


@dataclass
class DAEDALState:
    capacity: torch.Tensor  # [B] the longest generation each row may reach
    tail: torch.Tensor  # [B] EOS tail appended after stage 1 (written at the first step)


def eos_completion(view: StepView, count: int) -> torch.Tensor:
    """[B] summed probability of the last ``count`` EOS predictions of each row, divided by ``count``."""
    eos = view.is_eos(view.pred) & view.col_valid & (view.cols >= view.state.gen_start)
    from_end = eos.flip(1).long().cumsum(1).flip(1)
    return torch.where(eos & (from_end <= count), view.conf, 0.0).sum(1) / count


@register("daedal")
@dataclass
class DAEDALSampler(Sampler):
    """DAEDAL: grow a short canvas until EOS is predicted, then insert masks where the model is unsure."""

    initial_length: int = 64
    max_length: int = 2048
    high_confidence: float = 0.9
    low_confidence: float = 0.1
    eos_threshold: float = 0.5
    expand_eos_threshold: float = 0.9
    expansion: int = 8
    eos_check_tokens: int = 32
    eos_tail: int = 16

    def __post_init__(self):
        check_range("daedal", "initial_length", self.initial_length, 1)
        check_range("daedal", "max_length", self.max_length, self.initial_length)
        for name in ("high_confidence", "low_confidence", "eos_threshold", "expand_eos_threshold"):
            check_range("daedal", name, getattr(self, name), 0.0, 1.0)
        check_range("daedal", "expansion", self.expansion, 1)
        check_range("daedal", "eos_check_tokens", self.eos_check_tokens, 1)
        check_range("daedal", "eos_tail", self.eos_tail, 0)

    def capacity(self, state) -> torch.Tensor:
        """[B] the longest generation each row may reach (``max_length`` and the context limit)."""
        context = min(state.config.max_length or state.model.max_length, state.model.max_length)
        prompt = state.valid[:, : state.gen_start].sum(1)
        return (context - prompt).clamp(max=self.max_length)

    def init_state(self, state):
        return DAEDALState(capacity=self.capacity(state), tail=torch.zeros_like(state.gen_end))

    def changes_length(self):
        return True

    def plan_length(self, state, probe):
        own = state.sampler_state
        cap = own.capacity
        lengths = cap.clamp(max=self.initial_length)
        while (lengths < cap).any():
            grow = (lengths < cap) & (
                eos_completion(probe(lengths), self.eos_check_tokens) < self.eos_threshold
            )
            if not grow.any():
                break
            lengths = torch.minimum(lengths + self.expansion * grow.long(), cap)
        own.tail = (cap - lengths).clamp(max=self.eos_tail)
        return lengths + own.tail

    def logit_region(self, state):
        return state.whole_generation()

    def select(self, view: StepView) -> Decision:
        st, own = view.state, view.state.sampler_state
        cand, conf = view.cand, view.conf
        fill = cand & (conf > self.high_confidence)
        fill |= best_candidate(view.score, cand) & ~fill.any(1, keepdim=True)
        edits = [
            Edit(op="truncate", row=row, col=int(st.gen_end[row] - own.tail[row] - 1))
            for row in ((st.steps == 0) & (own.tail > 0) & st.active).nonzero()[:, 0].tolist()
        ]
        length = st.gen_end - st.gen_start
        unsure = (eos_completion(view, self.eos_check_tokens) < self.expand_eos_threshold) & (
            length < own.capacity
        )
        tail_start = torch.where(st.steps == 0, st.gen_end - own.tail, st.gen_end)
        low = (
            cand & (conf < self.low_confidence) & ~fill & unsure[:, None] & (view.cols < tail_start[:, None])
        )
        point = best_candidate(-conf, low)
        rows, idx = point.nonzero(as_tuple=True)
        room = (own.capacity - length).clamp(max=self.expansion - 1)
        edits += [
            Edit(op="insert", row=r, col=int(view.cols[r, i]), n=int(room[r]))
            for r, i in zip(rows.tolist(), idx.tolist())
            if room[r] > 0
        ]
        return Decision(commit=fill, edits=edits)
