"""The cache interface: a policy that decides what each forward recomputes.

Before each forward the loop asks ``plan(state, logit_cols)`` for a ``StepPlan``: the canvas
columns to recompute (``query``; None = all) and whether K/V buffers are used. Columns not
recomputed are read from the per-layer ``KVStore`` (full-length, position-indexed, K after
RoPE). After each decision the loop calls ``commit(state, committed)``; after a canvas edit that
moves columns it calls ``begin`` again, which must make the next plan a full refresh.

``IncrementalCache`` is the shared base of the policies that reuse K/V between forwards. It keeps
the per-request bookkeeping (``IncrementalState``, stored as ``state.cache_state``; a policy with
more per-request state subclasses it and overrides ``new_state``) and turns a policy's
``[B, L]`` "recompute these columns" mask into a plan, adding what every policy needs:

- the columns whose hidden states the requested logits read (target ``j`` needs ``j - shift``,
  the model's logit shift: 1 for Dream), so any sampler's ``logit_region`` works with any cache;
- a full refresh of a row after ``begin`` (start, canvas re-layout) and after a canvas edit that
  did not go through ``commit`` (fill / truncate), and whenever the policy's schedule says so.
Rows refresh independently, so a row decodes the same alone or inside a batch. When some rows
of a batch refresh and the others compute only their few columns, a policy without per-layer
hooks plans the refresh as a second forward over those rows (``StepPlan.refresh_rows``), so
the rest of the batch is not padded to the whole canvas.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range
from dllm.models.hooks import LayerHook
from dllm.state import DecodeState


@dataclass
class StepPlan:
    query: torch.Tensor | None = None  # [B, Lq] columns to recompute; None = every column
    use_kv: bool = False  # read/write the KVStore
    hook: LayerHook | None = None  # per-layer callbacks for the model's forward, or None
    # Rows that need more than ``query`` (a full refresh) while the others compute a few columns:
    # the loop runs them again, alone, over ``refresh_query`` (indexed like those rows; None =
    # every column), instead of padding every row of the batch to the refresh's width.
    refresh_rows: torch.Tensor | None = None  # [R] row indices (ascending)
    refresh_query: torch.Tensor | None = None  # [R, Lr]
    # Every row's ``query`` is the columns ``[start, end)``: its K/V are written by a slice copy.
    query_span: tuple[int, int] | None = None

    @property
    def full(self) -> bool:
        return self.query is None


@dataclass
class Cache:
    """Base class of cache policies: every hook the loop or the evaluation harness calls."""

    needs_kv = False  # the loop allocates a ``KVStore`` (and the harness skips models without one)

    def unsupported_reason(self, model) -> str | None:
        """Why this policy cannot run on ``model`` (None when it can); the evaluation harness
        skips such a pair with this reason."""
        return None

    def begin(self, state: DecodeState) -> None:
        """Start (or restart, after a canvas re-layout) a request: the next plan is a full refresh."""
        return None

    def plan(self, state: DecodeState, logit_cols: torch.Tensor) -> StepPlan:
        """Before each forward: what it recomputes; ``logit_cols [B, W]`` are the columns whose
        logits the sampler needs."""
        raise NotImplementedError

    def commit(self, state: DecodeState, committed: torch.Tensor) -> None:
        """After each decision: ``committed [B, L]`` are the columns written by it."""
        return None


# ---- helpers shared by the policies ---------------------------------------------------------


def padded_columns(mask: torch.Tensor, width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, L]`` bool -> (``[B, W]`` ascending marked columns, ``[B, W]`` real entries); ``W`` is
    the most marked columns of a row (read from ``mask`` when ``width`` is None), at least 1.

    Padding repeats the row's first marked column (column 0 for a row with none)."""
    counts = mask.sum(1)
    width = max(int(counts.max()) if width is None else width, 1)
    order = (~mask).to(torch.int8).argsort(dim=1, stable=True)[:, :width]
    real = torch.arange(width, device=mask.device)[None] < counts[:, None]
    return torch.where(real, order, order[:, :1]), real


def mask_to_query(need: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """``[B, L]`` bool (>= 1 True per row) -> ``[B, Lq]`` query columns for the model."""
    return padded_columns(need, width)[0]


def shared_span(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(start, n)`` as 0-d tensors when every row of ``[B, L]`` bool marks the same contiguous
    columns ``[start, start + n)``, else ``(0, 0)``."""
    count = mask.sum(1)
    first = mask.long().argmax(1)
    columns = torch.arange(mask.shape[1], device=mask.device)
    inside = (columns >= first[:, None]) & (columns < (first + count)[:, None])
    same = (mask == inside).all() & (first == first[0]).all() & (count == count[0]).all() & (count[0] > 0)
    return torch.where(same, first[0], 0), torch.where(same, count[0], 0)


def shift_left(mask: torch.Tensor, shift: int) -> torch.Tensor:
    """Columns ``j - shift`` for every marked column ``j`` (the rows whose hidden state predicts them)."""
    if shift == 0:
        return mask
    out = torch.zeros_like(mask)
    out[:, :-shift] = mask[:, shift:]
    return out


def logit_sources(state: DecodeState, logit_cols: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` columns the model must compute to return logits for ``logit_cols``."""
    need = torch.zeros_like(state.valid)
    return need.scatter_(1, (logit_cols - state.model.shift).clamp(min=0), True)


def block_schedule(state: DecodeState, interval: int | None) -> torch.Tensor:
    """``[B]`` refresh due: first step of a block, and every ``interval`` steps inside it."""
    due = state.step_in_block == 0
    if interval is not None:
        due = due | (state.step_in_block % interval == 0)
    return due


def check_interval(owner: str, name: str, value: int | None) -> None:
    if value is not None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{owner}.{name}={value!r} must be an integer >= 1 or None")
        check_range(owner, name, value, 1)


def check_flag(owner: str, name: str, value, allow_none: bool = False) -> None:
    if not (isinstance(value, bool) or (allow_none and value is None)):
        raise ValueError(
            f"{owner}.{name}={value!r} must be True or False" + (" or None" if allow_none else "")
        )


@dataclass
class IncrementalState:
    """Per-request bookkeeping of an incremental cache (``state.cache_state``)."""

    tokens: torch.Tensor  # [B, L] canvas as seen by the previous plan (that forward's input)
    committed: torch.Tensor  # [B, L] committed since the previous plan
    refresh: torch.Tensor  # [B] rows whose next forward must recompute every column


class IncrementalCache(Cache):
    """Base of the policies that reuse K/V: subclasses define ``columns`` and optionally
    ``schedule`` (rows due for a full refresh), ``horizon`` (what a full refresh covers) and
    ``hook`` (per-layer callbacks)."""

    needs_kv = True

    def begin(self, state):
        state.cache_state = self.new_state(
            state,
            tokens=state.tokens.clone(),
            committed=torch.zeros_like(state.valid),
            refresh=torch.ones(state.batch, dtype=torch.bool, device=state.tokens.device),
        )

    def new_state(self, state: DecodeState, **bookkeeping) -> IncrementalState:
        """The per-request state at ``begin``; ``bookkeeping`` holds the base fields."""
        return IncrementalState(**bookkeeping)

    def commit(self, state, committed):
        state.cache_state.committed |= committed

    def schedule(self, state: DecodeState, own: IncrementalState) -> torch.Tensor:
        return torch.zeros_like(own.refresh)

    def columns(self, state: DecodeState, own: IncrementalState) -> torch.Tensor:
        raise NotImplementedError

    def hook(self, state: DecodeState, own: IncrementalState, full: torch.Tensor, query):
        return None

    def refreshes_apart(self, state: DecodeState) -> bool:
        """Whether refreshing rows may run as their own forward (``StepPlan.refresh_rows``): not
        for policies with per-layer hooks (they see one forward per step), nor under CFG."""
        return type(self).hook is IncrementalCache.hook and state.config.cfg_scale == 0

    def horizon(self, state: DecodeState) -> torch.Tensor | None:
        """``[B, L]`` the columns a full refresh recomputes (None: every column). A block-causal
        model's current block never sees the blocks after it, so a policy for it may leave them out."""
        return None

    def plan(self, state, logit_cols):
        own = state.cache_state
        if own is None or own.tokens.shape != state.tokens.shape:
            self.begin(state)
            own = state.cache_state
        edited = ((state.tokens != own.tokens) & ~own.committed).any(1)
        full = (own.refresh | edited | self.schedule(state, own)) & state.active
        horizon = self.horizon(state)
        refresh = full[:, None] if horizon is None else full[:, None] & horizon
        need = self.columns(state, own) & state.valid & state.active[:, None]
        need = need | logit_sources(state, logit_cols)
        merged = need | refresh
        # the plan's one host read: every figure the forward's shape depends on
        figures = torch.stack(
            [
                (full | ~state.active).all(),
                need.sum(1).max(),
                merged.sum(1).max(),
                torch.where(full, merged.sum(1), 0).max(),
                torch.where(full[:, None], merged | ~state.valid, True).all(),
                *shared_span(need),
                *shared_span(merged),
            ]
        )
        values = torch.cat([figures.long(), full.long()]).tolist()
        all_full, need_width, merged_width, refresh_width, refresh_everything = values[:5]
        need_span, merged_span = values[5:7], values[7:9]
        full_rows = [row for row, on in enumerate(values[9:]) if on]
        refresh_rows = refresh_query = span = None
        if horizon is None and all_full:
            query = None
        elif self.refreshes_apart(state) and full_rows:
            refresh_rows = torch.tensor(full_rows, dtype=torch.long, device=full.device)
            if not (horizon is None or refresh_everything):
                refresh_query = mask_to_query(merged[refresh_rows], refresh_width)
            query, span = mask_to_query(need, need_width), need_span
        else:
            query, span = mask_to_query(merged, merged_width), merged_span
        plan = StepPlan(
            query=query,
            use_kv=True,
            hook=self.hook(state, own, full, query),
            refresh_rows=refresh_rows,
            refresh_query=refresh_query,
            query_span=(span[0], span[0] + span[1]) if span is not None and span[1] > 0 else None,
        )
        own.tokens = state.tokens.clone()
        own.committed.zero_()
        own.refresh &= ~state.active
        return plan
