"""LocalLeap: local determinism propagation around high-confidence anchors.

Idea: a position whose prediction is very confident (an *anchor*, confidence >= ``threshold``)
makes its neighbours more predictable, so inside a radius ``radius`` of any anchor a masked
position is committed with the relaxed threshold ``relaxed_threshold``; elsewhere the strict
``threshold`` applies, and the most confident candidate is always committed (progress). Anchors
are taken from the current step's candidates only. With ``relaxed_threshold == threshold`` the
rule is exactly Fast-dLLM's threshold rule.

Source: Kong et al., "Accelerating Diffusion LLM Inference via Local Determinism Propagation"
(arXiv:2510.07081), LocalLeap's LLaDA ``generate.py`` (read in a vendored copy; the official
repository could not be consulted). Defaults are the LLaDA-8B-Instruct ones (threshold 0.9,
relaxed threshold 0.75, radius 4, block 32); no Dream defaults were published, so Dream uses
the same values.

Differences from the reference code: the neighbourhood is a vectorised dilation (a max-pool of
the anchor indicator) instead of per-row Python sets — the same set; ``early_stop`` (fill the
rest with EOS and stop once a finished block holds an EOS) is a per-row stop through
``on_block_end`` instead of returning the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass

from dllm.config import check_range
from dllm.selection import best_candidate, dilate
from dllm.state import Decision, StepView

from . import register
from .base import Sampler


@register("localleap")
@dataclass
class LocalLeapSampler(Sampler):
    """LocalLeap: relaxed threshold within a radius of high-confidence anchors (else Fast-dLLM threshold)."""

    threshold: float = 0.9
    relaxed_threshold: float = 0.75
    radius: int = 4
    early_stop: bool = False

    def __post_init__(self):
        check_range("localleap", "threshold", self.threshold, 0.0, 1.0, low_open=True)
        check_range(
            "localleap", "relaxed_threshold", self.relaxed_threshold, 0.0, self.threshold, low_open=True
        )
        if not isinstance(self.radius, int) or isinstance(self.radius, bool):
            raise ValueError(f"localleap.radius={self.radius!r} must be an integer >= 0")
        check_range("localleap", "radius", self.radius, 0)

    def select(self, view: StepView) -> Decision:
        score, cand = view.score, view.cand
        anchors = cand & (score >= self.threshold)
        near = dilate(anchors, self.radius)
        bar = score.new_full(score.shape, self.threshold).masked_fill(near, self.relaxed_threshold)
        return Decision(commit=(cand & (score >= bar)) | best_candidate(score, cand))

    def on_block_end(self, state, rows):
        if not self.early_stop:
            return None
        return Decision(commit=rows.new_zeros((state.batch, 0)), stop=state.block_has_eos(rows))
