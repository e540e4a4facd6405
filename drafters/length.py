"""Draft-length controllers: how many tokens each row asks its drafter for in the next round.

- ``fixed``: always ``k``.
- ``heuristic``: Hugging Face assisted generation's schedule: start at ``start``; +``increase`` after
  a fully accepted draft, else −``decrease`` (at least ``minimum``).
- ``adl``: DiffuSpec's adaptive draft length (Li et al., arXiv 2510.02358, §4.3, Eq. 9–11):
  exponential moving averages (weight ``rho``, from 0) of the EOS-aware length of the raw draft
  ``L_gen`` and of the accepted length ``L_acc``; ``k = clip(G + delta·[A >= G], k_min, k_max)``,
  floored, first ``k = k_max``. The paper's defaults (20, 30, 10, 0.5) are for answers of hundreds
  of tokens; ours are scaled to the tiny tasks' answers (median ~14 tokens, see the benchmark).

Per-row state: a controller serves every row of a batch; ``start(rows)`` resets it.
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

    def start(self, rows: int) -> None:
        return None

    def next_length(self, row: int) -> int:
        return self.k

    def update(self, row: int, proposal, accepted: int) -> None:
        return None


@register("heuristic")
@dataclass
class HeuristicLength:
    """Hugging Face's schedule: +increase after a fully accepted draft, else -decrease."""

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

    def start(self, rows: int) -> None:
        self.k = [min(max(self.start_k, self.minimum), self.maximum)] * rows

    def next_length(self, row: int) -> int:
        return self.k[row]

    def update(self, row: int, proposal, accepted: int) -> None:
        step = self.increase if proposal.tokens and accepted == len(proposal.tokens) else -self.decrease
        self.k[row] = min(max(self.k[row] + step, self.minimum), self.maximum)


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

    def start(self, rows: int) -> None:
        self.gen = [0.0] * rows
        self.acc = [0.0] * rows
        self.k = [self.k_max] * rows

    def next_length(self, row: int) -> int:
        return self.k[row]

    def update(self, row: int, proposal, accepted: int) -> None:
        drafted = proposal.raw_len or len(proposal.tokens)
        gen_len = drafted if proposal.gen_len is None else min(proposal.gen_len, drafted)
        self.gen[row] = (1 - self.rho) * self.gen[row] + self.rho * gen_len
        self.acc[row] = (1 - self.rho) * self.acc[row] + self.rho * accepted
        bonus = self.delta if self.acc[row] >= self.gen[row] else 0
        self.k[row] = min(max(math.floor(self.gen[row] + bonus), self.k_min), self.k_max)
