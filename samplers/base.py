"""The sampler interface (the hooks the loop calls) and the ``Wrapper`` base of rule-on-top samplers.

A sampler is a dataclass of hyper-parameters. The loop calls its hooks; only ``select`` is
required. Hooks read the ``DecodeState`` / ``StepView`` and never call the model.

- ``init_state(state)``: per-request state, stored as ``state.sampler_state``.
- ``plan_length(state, probe)``: before decoding, return per-row generation lengths ``[B]``
  (or None). ``probe(lengths)`` runs one forward over a canvas of those lengths (counted in
  NFE) and returns its ``StepView`` over the whole generated region.
- ``logit_region(state)``: ``(start [B], end [B])`` columns whose logits the sampler needs;
  default the current block.
- ``plan_block(view)``: after the first forward of a block, return the block end ``[B]``.
- ``select(view)`` -> ``Decision``.
- ``observe(view, decision)``: bookkeeping after the loop applied the decision.
- ``on_block_end(state, rows)``: rows whose block just finished; may return a ``Decision``
  holding only ``edits`` / ``stop``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.state import Decision, DecodeState, StepView


@dataclass
class Sampler:
    """Base class of sampler plugins (see the module docstring for the hooks)."""

    def init_state(self, state: DecodeState):
        return None

    def plan_length(self, state: DecodeState, probe):
        return None

    def logit_region(self, state: DecodeState):
        return state.block_start, state.block_end

    plan_block = None  # optional hook: (view) -> block_end [B]

    def select(self, view: StepView) -> Decision:
        raise NotImplementedError

    def observe(self, view: StepView, decision: Decision) -> None:
        return None

    def on_block_end(self, state: DecodeState, rows: torch.Tensor) -> Decision | None:
        return None


# ---- shared helpers of the seed samplers (LocalLeap, Prophet, Learn2PD, AdaBlock, DAEDAL) -------

def whole_generation(state: DecodeState):
    """``(start, end)`` region covering every row's whole generated part."""
    return torch.full_like(state.gen_end, state.gen_start), state.gen_end


def is_eos(state: DecodeState, tokens: torch.Tensor) -> torch.Tensor:
    return torch.isin(tokens, torch.tensor(state.eos_ids, device=tokens.device))


def view_tokens(view: StepView) -> torch.Tensor:
    """[B, W] the canvas tokens under the view's columns (before this step's commits)."""
    return view.state.tokens.gather(1, view.cols)


def block_window(view: StepView, size: int):
    """Indices into the view of each row's block columns ``block_start + [0, size)``.

    Returns ``(index [B, size], inside [B, size])``; ``inside`` is False past the block end
    (where ``index`` is clamped and must be ignored).
    """
    st = view.state
    offs = torch.arange(size, device=view.cols.device)[None]
    index = (st.block_start - view.cols[:, 0])[:, None] + offs
    inside = (st.block_start[:, None] + offs < st.block_end[:, None]) & (index < view.cols.shape[1])
    return index.clamp(0, view.cols.shape[1] - 1), inside


def block_has_eos(state: DecodeState, rows: torch.Tensor) -> torch.Tensor:
    """[B] rows (among ``rows``) whose current block holds a decoded EOS."""
    return rows & (is_eos(state, state.tokens) & state.in_block()).any(1)


def model_is_shifted(state: DecodeState) -> bool:
    """Dream-style models (AR-initialised, shifted logits) get their own paper defaults."""
    return bool(getattr(state.model, "shift", 0))


@dataclass
class Wrapper(Sampler):
    """A sampler that adds a rule on top of an ``inner`` sampler (a name, class or instance).

    Every hook is delegated to the inner sampler; the logit region is widened to what the
    wrapper needs (``extra_region``). Subclasses override ``select`` and call ``self.inner``.
    """

    inner: object = "llada"
    inner_params: dict = None

    def __post_init__(self):
        from . import get

        self.inner = get(self.inner, **(self.inner_params or {}))
        if not isinstance(self.inner, Sampler):
            name = getattr(type(self), "name", type(self).__name__)
            raise ValueError(f"{name}.inner={self.inner!r} is not a sampler plugin")

    def init_state(self, state):
        return self.inner.init_state(state)

    def plan_length(self, state, probe):
        return self.inner.plan_length(state, probe)

    def extra_region(self, state):
        return whole_generation(state)

    def logit_region(self, state):
        start, end = self.inner.logit_region(state)
        extra_start, extra_end = self.extra_region(state)
        return torch.minimum(start, extra_start), torch.maximum(end, extra_end)

    @property
    def plan_block(self):
        return self.inner.plan_block

    def observe(self, view, decision):
        return self.inner.observe(view, decision)

    def on_block_end(self, state, rows):
        return self.inner.on_block_end(state, rows)
