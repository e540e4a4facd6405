"""Prophet: early commit ("all-in") once the answer's top-2 logit gap is large enough.

Idea: the answer of a diffusion LM often settles long before the last refinement step. At every
step Prophet averages the top-1 minus top-2 *logit* gap over an answer window; when the mean
reaches the threshold of the current phase (``early_threshold`` while the step is in the first
third of the step budget, ``mid_threshold`` in the second, ``late_threshold`` after), every
remaining mask of the row — in every block — is filled with the current prediction and the row
stops. Otherwise the ``inner`` sampler decides as usual (LLaDA low-confidence top-k in the paper;
any sampler works, e.g. ``inner="fast-dllm"``). With infinite thresholds Prophet is its inner
sampler.

Source: Li et al., "Diffusion Language Models Know the Answer Before Decoding" (arXiv:2508.19982),
pixeli99/Prophet ``generate_earlyexit.py`` / ``eval.sh``: thresholds 7.5 / 5.0 / 2.5, phase cuts
0.33 / 0.67 of ``steps`` (counted over all blocks), a 5-position answer window, LLaDA top-1 per
step. The reference repository has LLaDA code only; Dream uses the same thresholds (logit scales
differ per model — recalibrate with the sweep).

Answer window (the reference hard-codes 5 positions starting 2 after a forced "The answer is"):
``answer_start=k`` reproduces a fixed window ``[k, k + answer_length)`` of generated offsets. The
default ``answer_start=None`` instead watches the row's first ``answer_length`` still-masked
positions (the undecided head of the answer). Our tasks write the answer first and pad with EOS,
with no forced answer marker, so any fixed window lies either in text that is already decoded
(trivially confident: the row would stop at once) or in EOS padding (confident long before the
answer is settled); the head of the undecided text is where the answer is still open.

Differences from the reference: no forced constraint tokens (``constraints_text``) — our prompts
need no answer marker; the gap ignores the mask token (it can never be proposed here).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range, infinite_ok
from dllm.state import Decision, Edit, StepView

from . import register
from .base import Wrapper


@register("prophet")
@dataclass
class ProphetSampler(Wrapper):
    """Prophet early commit: fill every mask and stop once the answer's logit gap passes a phase threshold."""

    inner: object = "llada"
    inner_params: dict = None
    early_threshold: float = infinite_ok(7.5)  # +inf: never commit early in that phase
    mid_threshold: float = infinite_ok(5.0)
    late_threshold: float = infinite_ok(2.5)
    early_phase: float = 0.33
    late_phase: float = 0.67
    answer_length: int = 5
    answer_start: int | None = None

    def __post_init__(self):
        for name in ("early_threshold", "mid_threshold", "late_threshold"):
            check_range("prophet", name, getattr(self, name), 0.0, infinite_ok=True)
        check_range("prophet", "early_phase", self.early_phase, 0.0, 1.0)
        check_range("prophet", "late_phase", self.late_phase, self.early_phase, 1.0)
        check_range("prophet", "answer_length", self.answer_length, 1)
        if self.answer_start is not None:
            check_range("prophet", "answer_start", self.answer_start, 0)
        super().__post_init__()

    def window(self, view: StepView) -> torch.Tensor:
        """[B, W] the answer window's columns in the view."""
        st = view.state
        if self.answer_start is not None:
            offs = view.offsets()
            return (
                (offs >= self.answer_start) & (offs < self.answer_start + self.answer_length) & view.col_valid
            )
        masked = (view.canvas_tokens() == st.mask_id) & view.col_valid
        return masked & (masked.long().cumsum(1) <= self.answer_length)

    def fires(self, view: StepView) -> torch.Tensor:
        """[B] rows whose mean answer-window logit gap reaches the current phase's threshold."""
        st = view.state
        progress = (st.steps + 1).double() / st.config.steps
        bar = torch.full(progress.shape, self.late_threshold, dtype=torch.float64, device=progress.device)
        bar = torch.where(progress < self.late_phase, self.mid_threshold, bar)
        bar = torch.where(progress < self.early_phase, self.early_threshold, bar)
        window = self.window(view)
        gap = torch.where(window, view.logit_gap.double(), 0.0).sum(1) / window.sum(1).clamp(min=1)
        return st.active & window.any(1) & (gap >= bar) & torch.isfinite(bar)

    def select(self, view: StepView) -> Decision:
        decision = self.inner.select(view)
        fire = self.fires(view)
        if not fire.any():
            return decision
        commit = torch.where(fire[:, None], view.cand, decision.commit)
        stop = fire if decision.stop is None else decision.stop | fire
        edits = [e for e in decision.edits if not fire[e.row]]
        edits += [Edit(op="fill", row=row) for row in fire.nonzero()[:, 0].tolist()]
        return Decision(commit=commit, tokens=decision.tokens, stop=stop, edits=edits)
