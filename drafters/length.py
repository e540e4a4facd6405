"""Draft-length controllers: how many tokens each row asks its drafter for in the next round.

- ``fixed``: always ``k``.
- ``heuristic``: transformers' former assisted-generation schedule (+2/−1 from 5; its current
  default is 20 draft tokens with an adaptive confidence threshold of 0.4, not implemented here):
  start at ``start_k``; +``increase`` after a fully accepted draft, else −``decrease`` (at least
  ``minimum``).
- ``adl``: DiffuSpec's adaptive draft length (Li et al., arXiv 2510.02358, §4.3, Eq. 9–11):
  exponential moving averages (weight ``rho``, from 0) of the EOS-aware length of the raw draft
  ``L_gen`` and of the accepted length ``L_acc``; ``k = clip(G + delta·[A >= G], k_min, k_max)``,
  floored, first ``k = k_max``. The paper's defaults (20, 30, 10, 0.5) are for answers of hundreds
  of tokens; ours are scaled to the tiny tasks' answers (median ~14 tokens, see the benchmark).

A controller is pure and holds no run state: ``initial()`` is a new row's state, ``next_length(state)``
its next draft length and ``update(state, proposal, accepted)`` the state after a round, so one
instance serves every row of every concurrent run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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
