"""The sampler interface (every hook the loop or the evaluation harness calls) and ``Wrapper``.

A sampler is a dataclass of hyper-parameters; per-request state goes in a small dataclass of its
own, returned by ``init_state`` and stored as ``state.sampler_state``. Only ``select`` is required;
every other hook has a do-nothing default here. Hooks read the ``DecodeState`` / ``StepView``
(``dllm.state``) and use the selection primitives of ``dllm.selection``; they never call the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.state import Decision, DecodeState, StepView


@dataclass
class Sampler:
    """Base class of sampler plugins: the hooks, in the order the loop calls them."""

    def unsupported_reason(self, model) -> str | None:
        """Why this sampler cannot run on ``model`` (None when it can). The evaluation harness skips
        such a pair with this reason instead of running it; ``init_state`` may raise it as an error."""
        return None

    def init_state(self, state: DecodeState):
        """Per-request state (a dataclass, or None), stored as ``state.sampler_state``. Per-row
        tensors (first dimension the batch) follow their rows when rows leave or join a running
        batch; mark other tensors with ``field(metadata=dllm.state.SHARED)``."""
        return None

    def changes_length(self) -> bool:
        """Whether this sampler plans lengths or inserts columns (the canvas width changes while
        decoding): such rows cannot join a running batch, so ``max_batch`` runs them in waves."""
        return False

    def plan_length(self, state: DecodeState, probe) -> torch.Tensor | None:
        """Before decoding: per-row generation lengths ``[B]``, or None to keep ``gen_length``.
        ``probe(lengths)`` runs one forward over a canvas of those lengths (counted in NFE) and
        returns its ``StepView`` over the whole generated region."""
        return None

    def logit_region(self, state: DecodeState) -> tuple[torch.Tensor, torch.Tensor]:
        """``(start [B], end [B])``: the columns whose logits ``select`` needs; default the block."""
        return state.block_start, state.block_end

    def plan_block(self, view: StepView) -> torch.Tensor | None:
        """After every forward: the end ``[B]`` of the blocks that start at this step (None: keep
        them). The loop clamps it to ``(block_start, gen_end]`` and applies it only to rows whose
        block starts now (``view.first_of_block``); other rows' entries are ignored."""
        return None

    def select(self, view: StepView) -> Decision:
        """The step's decision: which candidates (``view.cand``) to commit, plus edits / stops.
        The loop adds each stuck row's best candidate (at least one token per step)."""
        raise NotImplementedError

    def observe(self, view: StepView, decision: Decision) -> None:
        """After the loop applied ``decision``. No plugin needs it; it is the attachment point for
        observers of a run (the demo's live confidence colouring, tests)."""
        return None

    def on_block_end(self, state: DecodeState, rows: torch.Tensor) -> Decision | None:
        """``rows [B]`` just finished their block: may return a ``Decision`` holding only
        ``edits`` / ``stop``."""
        return None


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

    def unsupported_reason(self, model):
        return self.inner.unsupported_reason(model)

    def init_state(self, state):
        return self.inner.init_state(state)

    def plan_length(self, state, probe):
        return self.inner.plan_length(state, probe)

    def changes_length(self):
        return self.inner.changes_length()

    def extra_region(self, state):
        return state.whole_generation()

    def logit_region(self, state):
        start, end = self.inner.logit_region(state)
        extra_start, extra_end = self.extra_region(state)
        return torch.minimum(start, extra_start), torch.maximum(end, extra_end)

    def plan_block(self, view):
        return self.inner.plan_block(view)

    def observe(self, view, decision):
        return self.inner.observe(view, decision)

    def on_block_end(self, state, rows):
        return self.inner.on_block_end(state, rows)
