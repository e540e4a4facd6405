"""No cache: every forward recomputes every column (the reference decoding of LLaDA and Dream)."""

from __future__ import annotations

from dataclasses import dataclass

from . import register
from .base import Cache, StepPlan


@register("none")
@dataclass
class NoCache(Cache):
    """Recompute all positions at every step."""

    def plan(self, state, logit_cols):
        return StepPlan(query=None, use_kv=False)
