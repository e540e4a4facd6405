"""What the denoising loop shows to samplers and caches, and what samplers hand back.

``DecodeState`` is the canvas and its bookkeeping (owned and mutated only by the loop).
``StepView`` is one forward's output for the sampler's logit region, with the per-position
quantities samplers rank by. ``Decision`` and ``Edit`` are a sampler's answer.

Canvas layout: prompts are left-padded to a shared width, so the generated region of every row
starts at column ``gen_start``; row b's generation ends at ``gen_end[b]`` (rows can differ after
length planning or mask insertion; columns past a row's end are padding, invisible as keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from functools import cached_property
from typing import Any, Literal

import torch

_MIX1, _MIX2 = 0x5DEECE66D, -7046029254386353131  # odd 64-bit multipliers (int64 wrap-around)


def hash_uniform(
    seed: int, step: torch.Tensor, offset: torch.Tensor, channel: torch.Tensor | int
) -> torch.Tensor:
    """Counter-based uniform noise in (0, 1), float64, from (seed, row step, column offset, channel).

    Each row's noise depends only on its own step count and generation offset, so a prompt
    gets the same random draws alone or inside any batch.
    """
    x = (step[:, None].long() * 1_000_003 + offset.long()) * 0x9E3779B1
    x = x[..., None] if torch.is_tensor(channel) and channel.dim() == 1 else x
    x = x + channel * 0x632BE5AB + seed * 0x2545F491
    for _ in range(2):
        x = (x ^ (x >> 31)) * _MIX2
        x = (x ^ (x >> 29)) * _MIX1
    bits = (x >> 11) & ((1 << 53) - 1)
    return (bits.double() + 0.5) / float(1 << 53)


# Field metadata for a tensor in a per-request state that is not indexed by row (``take_rows``
# leaves it alone), e.g. a list of token ids. Every other tensor whose first dimension is the
# batch is taken to be per-row.
SHARED = {"per_row": False}


def _per_row(value, extra, batch: int, on_tensor):
    """``value`` with ``on_tensor(tensor, extra_part)`` applied to each per-row tensor in it (first
    dimension ``batch``), walking lists, tuples, dicts and mutable dataclasses (updated in place,
    fields marked ``SHARED`` skipped); ``extra`` is walked alongside (None where absent)."""
    if torch.is_tensor(value):
        return on_tensor(value, extra) if value.dim() and value.shape[0] == batch else value
    if isinstance(value, (list, tuple)):
        extras = [None] * len(value) if extra is None else extra
        return type(value)(_per_row(v, e, batch, on_tensor) for v, e in zip(value, extras))
    if isinstance(value, dict):
        return {
            k: _per_row(v, None if extra is None else extra.get(k), batch, on_tensor)
            for k, v in value.items()
        }
    if is_dataclass(value) and not isinstance(value, type) and not value.__dataclass_params__.frozen:
        for f in fields(value):
            if f.metadata.get("per_row", True):
                part = None if extra is None else getattr(extra, f.name)
                setattr(value, f.name, _per_row(getattr(value, f.name), part, batch, on_tensor))
    return value


def take_rows(value, keep: torch.Tensor, batch: int):
    """Keep only the rows ``keep`` (indices into a batch of ``batch`` rows) of every per-row tensor
    in ``value``: tensors whose first dimension is ``batch``, inside lists, tuples, dicts and
    (mutable, updated in place) dataclasses, except fields marked ``SHARED``. Used when finished
    rows leave a running batch, so plugin states need no code of their own for it."""
    return _per_row(value, None, batch, lambda tensor, _: tensor[keep])


def cat_rows(value, extra, batch: int, extra_batch: int):
    """``value`` (a batch of ``batch`` rows) with the rows of ``extra`` (``extra_batch`` rows, the
    same structure) appended to every per-row tensor, the inverse of ``take_rows``. Where ``value``
    holds a per-row tensor and ``extra`` nothing yet (a buffer its first forward fills), the new
    rows get zeros."""

    def append(tensor, rows):
        rows = tensor.new_zeros((extra_batch, *tensor.shape[1:])) if rows is None else rows
        return torch.cat([tensor, rows])

    return _per_row(value, extra, batch, append)


@dataclass
class DecodeState:
    tokens: torch.Tensor  # [B, L] canvas
    valid: torch.Tensor  # [B, L] real columns (prompt + this row's generation)
    positions: torch.Tensor  # [B, L] RoPE position ids (count of valid columns before)
    gen_start: int  # first generated column (shared)
    gen_end: torch.Tensor  # [B] end of each row's generation (exclusive)
    block_start: torch.Tensor  # [B]
    block_end: torch.Tensor  # [B]
    active: torch.Tensor  # [B] rows still decoding
    steps: torch.Tensor  # [B] decisions taken
    nfe: torch.Tensor  # [B] forwards taken part in
    step_in_block: torch.Tensor  # [B]
    mask_id: int
    eos_ids: list[int]
    config: Any = field(metadata=SHARED)  # GenerationConfig
    model: Any = field(metadata=SHARED)  # DiffusionModel (read-only for plugins: never call it)
    pads: torch.Tensor  # [B] left padding of each row's prompt
    limit: int  # context limit: prompt + generation columns a row may hold
    eos_fill: int  # the token written where a finished row leaves masks
    sampler_state: Any = None
    cache_state: Any = None

    @property
    def batch(self) -> int:
        return self.tokens.shape[0]

    @property
    def width(self) -> int:
        return self.tokens.shape[1]

    def is_mask(self) -> torch.Tensor:
        return (self.tokens == self.mask_id) & self.valid

    def column_index(self) -> torch.Tensor:
        return torch.arange(self.width, device=self.tokens.device).expand(self.batch, -1)

    def in_block(self) -> torch.Tensor:
        cols = self.column_index()
        return (cols >= self.block_start[:, None]) & (cols < self.block_end[:, None])

    def in_generation(self) -> torch.Tensor:
        cols = self.column_index()
        return (cols >= self.gen_start) & (cols < self.gen_end[:, None])

    def block_masks(self) -> torch.Tensor:
        """[B] masked positions left in each row's current block."""
        return (self.is_mask() & self.in_block()).sum(1)

    def is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        """Where ``tokens`` (any shape) is one of the model's EOS ids."""
        return torch.isin(tokens, torch.tensor(self.eos_ids, device=tokens.device))

    def whole_generation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(start [B], end [B])``: a region covering every row's whole generated part."""
        return torch.full_like(self.gen_end, self.gen_start), self.gen_end

    def block_has_eos(self, rows: torch.Tensor) -> torch.Tensor:
        """[B] rows (among ``rows``) whose current block holds a decoded EOS."""
        return rows & (self.is_eos(self.tokens) & self.in_block()).any(1)

    @property
    def shifted(self) -> bool:
        """Dream-style model (AR-initialised, shifted logits): samplers pick their Dream defaults."""
        return bool(getattr(self.model, "shift", 0))


@dataclass
class StepView:
    """Logits and derived quantities for the columns ``cols [B, W]`` of one forward."""

    state: DecodeState
    cols: torch.Tensor  # [B, W] canvas columns (padding repeats the last column)
    col_valid: torch.Tensor  # [B, W]
    logits: torch.Tensor  # [B, W, V] float32, after logit-level EOS rules
    pred: torch.Tensor  # [B, W] proposed token (greedy or sampled)
    conf: torch.Tensor  # [B, W] softmax probability of pred under the clean logits
    score: torch.Tensor  # [B, W] ranking score (conf; EOS/EoT pushed below 0 when asked)
    cand: torch.Tensor  # [B, W] masked columns of the row's commit region (active rows)
    first_of_block: torch.Tensor  # [B] this forward is the first of the row's block

    def recompute_candidates(self) -> None:
        """Refresh ``cand`` after the block bounds changed (block planning)."""
        st = self.state
        masked = st.is_mask().gather(1, self.cols)
        inside = (self.cols >= st.block_start[:, None]) & (self.cols < st.block_end[:, None])
        self.cand = masked & inside & self.col_valid & st.active[:, None]

    @cached_property
    def probs(self) -> torch.Tensor:
        return torch.softmax(self.logits.float(), dim=-1)

    def prob_of(self, token_ids) -> torch.Tensor:
        """[B, W] total probability of the given token ids."""
        ids = torch.as_tensor(list(token_ids), device=self.logits.device)
        return self.probs.index_select(-1, ids).sum(-1)

    @cached_property
    def logit_gap(self) -> torch.Tensor:
        top2 = self.logits.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]

    @cached_property
    def margin(self) -> torch.Tensor:
        top2 = self.probs.topk(2, dim=-1).values
        return top2[..., 0] - top2[..., 1]

    @cached_property
    def entropy(self) -> torch.Tensor:
        p = self.probs
        return -(p * torch.log(p + 1e-12)).sum(-1)

    def uniform(self, channel: int = 0) -> torch.Tensor:
        """[B, W] reproducible U(0,1) per position (e.g. for random remasking)."""
        st = self.state
        return hash_uniform(st.config.seed, st.steps, self.cols - st.gen_start, channel + 1_000_000)

    def offsets(self) -> torch.Tensor:
        return self.cols - self.state.gen_start

    def canvas_tokens(self) -> torch.Tensor:
        """[B, W] the canvas tokens under the view's columns (before this step's commits)."""
        return self.state.tokens.gather(1, self.cols)

    def is_eos(self, tokens: torch.Tensor) -> torch.Tensor:
        """Where ``tokens`` is one of the model's EOS ids."""
        return torch.isin(tokens, torch.tensor(self.state.eos_ids, device=tokens.device))

    def block_window(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices into the view of each row's block columns ``block_start + [0, size)``.

        Returns ``(index [B, size], inside [B, size])``; ``inside`` is False past the block end
        (where ``index`` is clamped and must be ignored).
        """
        st = self.state
        offs = torch.arange(size, device=self.cols.device)[None]
        index = (st.block_start - self.cols[:, 0])[:, None] + offs
        inside = (st.block_start[:, None] + offs < st.block_end[:, None]) & (index < self.cols.shape[1])
        return index.clamp(0, self.cols.shape[1] - 1), inside


EditOp = Literal["fill", "truncate", "insert"]


@dataclass
class Edit:
    """A canvas edit, applied by the loop after the step's commits.

    fill: write the current predictions (``source="pred"``) or EOS (``source="eos"``) into every
        masked column of the row that the view covers.
    truncate: every column of the row after ``col`` becomes EOS (end-of-text prediction).
    insert: ``n`` new mask columns are inserted before ``col`` (variable-length decoding).
    """

    op: EditOp
    row: int
    col: int = 0
    n: int = 0
    source: Literal["pred", "eos"] = "pred"


@dataclass
class Decision:
    commit: torch.Tensor  # [B, W] bool, within view.cand
    tokens: torch.Tensor | None = None  # [B, W] tokens to write (default view.pred)
    stop: torch.Tensor | None = None  # [B] rows that finish after this step
    edits: list[Edit] = field(default_factory=list)
