"""Draft-length controllers: how many tokens each row asks its drafter for in the next round.

- ``fixed``: always ``k``.
- ``heuristic``: transformers' former assisted-generation schedule (+2/−1 from 5): start at
  ``start_k``; +``increase`` after a fully accepted draft, else −``decrease`` (at least ``minimum``).
- ``confidence``: transformers' current assisted-generation default (5.x: ``num_assistant_tokens=20``,
  schedule ``"constant"``, ``assistant_confidence_threshold=0.4``): up to ``k`` tokens, and a draft
  ends after its first token whose drafter probability is below the row's threshold; with
  ``adaptive`` the threshold is re-fitted after every round to the row's history of (probability,
  accepted?) pairs, as the point of the ROC curve that minimises ``fpr + 3·fnr``. Source:
  ``transformers/generation/candidate_generator.py`` (``AssistedCandidateGenerator.
  update_candidate_strategy``) and ``stopping_criteria.py`` (``ConfidenceCriteria``).
- ``adl``: DiffuSpec's adaptive draft length (Li et al., arXiv 2510.02358, §4.3, Eq. 9–11):
  exponential moving averages (weight ``rho``, from 0) of the EOS-aware length of the raw draft
  ``L_gen`` and of the accepted length ``L_acc``; ``k = clip(G + delta·[A >= G], k_min, k_max)``,
  floored, first ``k = k_max``. The paper's defaults (20, 30, 10, 0.5) are for answers of hundreds
  of tokens; ours are scaled to the tiny tasks' answers (median ~14 tokens, see the benchmark).

A controller is pure and holds no run state: ``initial()`` is a new row's state, ``next_length(state)``
its next draft length and ``update(state, proposal, accepted)`` the state after a round, so one
instance serves every row of every concurrent run. A controller may also have
``stop_below(state)``: the probability under which the drafter ends the draft after that token (only
drafters with ``stops_on_confidence`` can; the loop refuses the others).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dllm.config import check_range
from dllm.registry import Registry

_registry = Registry("length controller")
register = _registry.register
get = _registry.get
names = _registry.names
describe = _registry.describe


@register("fixed")
@dataclass
class FixedLength:
    """Always draft k tokens."""

    k: int = 8

    def __post_init__(self):
        check_range("fixed", "k", self.k, 1)

    def initial(self) -> None:
        return None

    def next_length(self, state) -> int:
        return self.k

    def update(self, state, proposal, accepted: int) -> None:
        return None


@register("heuristic")
@dataclass
class HeuristicLength:
    """transformers' former schedule: +increase after a fully accepted draft, else -decrease."""

    start_k: int = 5
    increase: int = 2
    decrease: int = 1
    minimum: int = 1
    maximum: int = 64

    def __post_init__(self):
        for name in ("start_k", "minimum", "maximum"):
            check_range("heuristic", name, getattr(self, name), 1)
        check_range("heuristic", "increase", self.increase, 0)
        check_range("heuristic", "decrease", self.decrease, 0)
        check_range("heuristic", "maximum", self.maximum, self.minimum)

    def initial(self) -> int:
        return min(max(self.start_k, self.minimum), self.maximum)

    def next_length(self, k: int) -> int:
        return k

    def update(self, k: int, proposal, accepted: int) -> int:
        step = self.increase if proposal.tokens and accepted == len(proposal.tokens) else -self.decrease
        return min(max(k + step, self.minimum), self.maximum)


@register("adl")
@dataclass
class AdaptiveLength:
    """DiffuSpec's ADL: EMAs of the raw draft's EOS-aware length and of the accepted length."""

    k_min: int = 8
    k_max: int = 16
    delta: int = 4
    rho: float = 0.5

    def __post_init__(self):
        check_range("adl", "k_min", self.k_min, 1)
        check_range("adl", "k_max", self.k_max, self.k_min)
        check_range("adl", "delta", self.delta, 0)
        check_range("adl", "rho", self.rho, 0.0, 1.0, low_open=True)

    def initial(self) -> tuple[float, float, int]:
        return 0.0, 0.0, self.k_max  # (EMA of L_gen, EMA of L_acc, k)

    def next_length(self, state: tuple[float, float, int]) -> int:
        return state[2]

    def update(self, state: tuple[float, float, int], proposal, accepted: int) -> tuple[float, float, int]:
        drafted = proposal.raw_len or len(proposal.tokens)
        gen_len = drafted if proposal.gen_len is None else min(proposal.gen_len, drafted)
        gen = (1 - self.rho) * state[0] + self.rho * gen_len
        acc = (1 - self.rho) * state[1] + self.rho * accepted
        bonus = self.delta if acc >= gen else 0
        return gen, acc, min(max(math.floor(gen + bonus), self.k_min), self.k_max)


@register("confidence")
@dataclass
class ConfidenceLength:
    """transformers' current default: up to k tokens, stopping after a token below an adaptive threshold."""

    k: int = 20
    threshold: float = 0.4  # the first threshold (0: no confidence stop, so nothing to adapt)
    adaptive: bool = True  # re-fit the threshold to the row's history after every round (ROC rule)

    def __post_init__(self):
        check_range("confidence", "k", self.k, 1)
        check_range("confidence", "threshold", self.threshold, 0.0, 1.0)
        if self.adaptive and self.threshold == 0:
            raise ValueError(
                "confidence.threshold=0 turns the confidence stop off, so there is nothing to adapt;"
                " give a threshold in (0, 1] or adaptive=False"
            )

    def initial(self) -> tuple[float, tuple[float, ...], tuple[int, ...]]:
        return self.threshold, (), ()  # (threshold, drafted tokens' probabilities, 1 = accepted)

    def next_length(self, state) -> int:
        return self.k

    def stop_below(self, state) -> float:
        return state[0]

    def update(self, state, proposal, accepted: int):
        threshold, probs, matches = state
        if not self.adaptive or proposal.confidence is None:
            return state
        # As transformers does: the accepted tokens are matches, the first rejected one a miss, and
        # the drafted tokens after it (never verified) leave the history.
        probs = probs + tuple(proposal.confidence)
        matches = matches + (1,) * accepted
        if len(probs) > len(matches):
            matches += (0,)
        probs = probs[: len(matches)]
        if len(probs) > 5 and 0 in matches and 1 in matches:  # transformers' minimum history
            threshold = roc_threshold(matches, probs)
        return threshold, probs, matches


def roc_threshold(matches, probs, miss_cost: float = 3.0) -> float:
    """The threshold on ``probs`` that best predicts ``matches`` (1 = the draft token was accepted):
    among the points of the ROC curve (every distinct probability, plus +inf: nothing passes), the
    one with the smallest ``fpr + miss_cost·fnr``, the first (highest threshold) on ties. The points
    are those of ``sklearn.metrics.roc_curve`` (collinear middle points dropped), which transformers
    calls for this rule; here in float64 torch, with no sklearn."""
    scores = torch.tensor(probs, dtype=torch.float64)
    scores, order = scores.sort(descending=True, stable=True)
    hits = torch.tensor(matches, dtype=torch.float64)[order]
    last = torch.cat([torch.nonzero(scores.diff()).flatten(), torch.tensor([scores.numel() - 1])])
    tps = hits.cumsum(0)[last]  # accepted tokens at or above each distinct score
    fps = last + 1 - tps  # rejected tokens at or above it
    thresholds = scores[last]
    if fps.numel() > 2:  # drop points collinear with their neighbours (sklearn's drop_intermediate)
        middle = (fps.diff(n=2) != 0) | (tps.diff(n=2) != 0)
        corner = torch.cat([torch.tensor([True]), middle, torch.tensor([True])])
        tps, fps, thresholds = tps[corner], fps[corner], thresholds[corner]
    zero = torch.zeros(1, dtype=torch.float64)
    tps, fps = torch.cat([zero, tps]), torch.cat([zero, fps])
    thresholds = torch.cat([torch.tensor([math.inf], dtype=torch.float64), thresholds])
    costs = fps / fps[-1] + miss_cost * (1 - tps / tps[-1])
    return float(thresholds[costs.argmin()])
