"""The canvas: one ``[B, L]`` tensor holding every row's prompt and generation, and its edits.

Layout rule (shared by decoding and by the trainer in ``dllm.zoo.train``, so both see the same
positions): prompts are left-padded to a common width, so every row's generation starts at the
same column ``gen_start``; each row's canvas follows and is right-padded to the longest one.
Padding columns are invisible (``valid`` is False) and RoPE positions count visible columns
only, so a row's positions, and therefore its logits, do not depend on the rest of its batch.

Only the loop (``dllm.generate``) calls the editing functions here; samplers ask for edits
through ``Decision.edits``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import GenerationConfig
from dllm.state import DecodeState, Edit, StepView


@dataclass
class Layout:
    tokens: torch.Tensor  # [B, L]
    valid: torch.Tensor  # [B, L] visible columns
    positions: torch.Tensor  # [B, L] RoPE positions (visible columns before this one)
    pads: torch.Tensor  # [B] left padding of each row
    gen_start: int  # first canvas column (shared)
    gen_end: torch.Tensor  # [B] end of each row's canvas (exclusive)


def visibility(pads: torch.Tensor, gen_end: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(valid, positions)`` of a canvas whose rows are visible in ``[pads[b], gen_end[b])``."""
    cols = torch.arange(width, device=pads.device)[None]
    valid = (cols >= pads[:, None]) & (cols < gen_end[:, None])
    positions = (valid.long().cumsum(1) - 1).clamp(min=0)
    return valid, positions


def layout(
    prompts: list[list[int]],
    canvases: list[list[int]],
    pad_id: int,
    fill: int | None = None,
    device=None,
    prompt_width: int | None = None,
) -> Layout:
    """Left-pad ``prompts`` with ``pad_id`` (to ``prompt_width``, default the longest) and append
    each row's canvas, right-padded with ``fill``."""
    batch, width_p = len(prompts), max(len(p) for p in prompts)
    width_p = width_p if prompt_width is None else max(width_p, prompt_width)
    width_c = max(len(c) for c in canvases)
    fill = pad_id if fill is None else fill
    tokens = torch.full((batch, width_p + width_c), fill, dtype=torch.long, device=device)
    tokens[:, :width_p] = pad_id
    for row, (prompt, canvas) in enumerate(zip(prompts, canvases)):
        tokens[row, width_p - len(prompt) : width_p] = torch.tensor(prompt, device=device)
        tokens[row, width_p : width_p + len(canvas)] = torch.tensor(canvas, dtype=torch.long, device=device)
    pads = torch.tensor([width_p - len(p) for p in prompts], device=device)
    gen_end = torch.tensor([width_p + len(c) for c in canvases], device=device)
    valid, positions = visibility(pads, gen_end, tokens.shape[1])
    return Layout(tokens, valid, positions, pads, width_p, gen_end)


def context_limit(model, cfg: GenerationConfig) -> int:
    return min(cfg.max_length or model.max_length, model.max_length)


def check_prompts(model, prompts: list[list[int]], cfg: GenerationConfig) -> int:
    """Raise unless every prompt leaves room for ``gen_length`` and the blocks fit the model;
    returns the context limit."""
    limit = context_limit(model, cfg)
    check_blocks(model, cfg)
    for ids in prompts:
        if len(ids) + cfg.gen_length > limit:
            raise ValueError(
                f"prompt of {len(ids)} tokens + gen_length {cfg.gen_length}"
                f" exceeds the context limit of {limit}"
            )
    return limit


def new_state(
    model, prompts: list[list[int]], cfg: GenerationConfig, prompt_width: int | None = None
) -> DecodeState:
    """The starting state: every row's ``gen_length`` columns masked, the first block open.

    ``prompt_width`` lays the prompts out wider than the longest (rows that join a running batch
    must start their generation at its ``gen_start``)."""
    limit = check_prompts(model, prompts, cfg)
    masks = [[model.mask_id] * cfg.gen_length] * len(prompts)
    canvas = layout(prompts, masks, model.pad_id, device=model.device, prompt_width=prompt_width)
    zeros = torch.zeros(len(prompts), dtype=torch.long, device=model.device)
    eos_fill = model.config.eos_token_ids[0] if model.config.eos_token_ids else model.eos_ids[0]
    state = DecodeState(
        tokens=canvas.tokens,
        valid=canvas.valid,
        positions=canvas.positions,
        gen_start=canvas.gen_start,
        gen_end=canvas.gen_end,
        block_start=zeros + canvas.gen_start,
        block_end=canvas.gen_end,  # placeholder: block_end() below needs the state
        active=torch.ones(len(prompts), dtype=torch.bool, device=model.device),
        steps=zeros.clone(),
        nfe=zeros.clone(),
        step_in_block=zeros.clone(),
        mask_id=model.mask_id,
        eos_ids=list(model.eos_ids),
        config=cfg,
        model=model,
        pads=canvas.pads,
        limit=limit,
        eos_fill=eos_fill,
    )
    state.block_end = block_end(state, state.block_start)
    return state


def block_diffusion_size(model) -> int | None:
    """The block size a block-diffusion model (Fast-dLLM v2) was trained with; None for other models."""
    return getattr(getattr(model, "config", None), "block_size", None)


def check_blocks(model, cfg: GenerationConfig) -> None:
    """A block-diffusion model decodes blocks of its own ``bd_size``; sub-blocks are for those models only."""
    bd = block_diffusion_size(model)
    name = getattr(model, "name", "the model")
    if bd is None:
        if cfg.sub_block_length is not None:
            raise ValueError(
                f"sub_block_length={cfg.sub_block_length} is for block-diffusion models (a bd_size in"
                f" config.json); {name} is not one: use block_length alone"
            )
        return
    if cfg.block_length != bd:
        raise ValueError(
            f"block_length={cfg.block_length}, but {name} is a block-diffusion model trained with"
            f" bd_size={bd}: its attention only matches blocks of {bd}; decode with block_length={bd}"
            f" (and sub_block_length for smaller steps)"
        )


def block_end(state: DecodeState, start: torch.Tensor) -> torch.Tensor:
    """``[B]`` end (exclusive) of the decoding block that starts at column ``start[b]``.

    Plain models: ``start + block_length``. Block-diffusion models (Fast-dLLM v2): blocks follow the
    model's ``bd_size`` over RoPE positions (so a row's blocks do not depend on its padding); the
    first column of a block is decoded alone (the AR step: it is predicted by the finished block
    before it), then sub-blocks of ``sub_block_length`` counted from the block's first position,
    left to right, as ``Fast_dLLM_QwenForCausalLM.generate`` does.
    """
    bd = block_diffusion_size(state.model)
    if bd is None:
        return torch.minimum(start + state.config.block_length, state.gen_end)
    sub = state.config.sub_block_length or bd
    offset = state.positions.gather(1, start.clamp(max=state.width - 1)[:, None])[:, 0] % bd
    sub_end = torch.clamp((offset // sub + 1) * sub, max=bd)
    end = torch.where(offset == 0, start + 1, start + sub_end - offset)
    return torch.minimum(end, state.gen_end)


def relayout(state: DecodeState) -> None:
    """Recompute visibility and positions after a row's length changed (the cache must restart)."""
    state.valid, state.positions = visibility(state.pads, state.gen_end, state.width)


def set_lengths(state: DecodeState, lengths: torch.Tensor) -> None:
    """Before decoding: give row b ``lengths[b]`` masked positions (within the context limit)."""
    lengths = lengths.to(state.gen_end).clamp(min=1)
    lengths = torch.minimum(lengths, state.limit - (state.gen_start - state.pads))
    width = state.gen_start + int(lengths.max())
    tokens = torch.full((state.batch, width), state.mask_id, dtype=torch.long, device=state.tokens.device)
    tokens[:, : state.gen_start] = state.tokens[:, : state.gen_start]
    state.tokens = tokens
    state.gen_end = state.gen_start + lengths
    state.block_start = torch.full_like(lengths, state.gen_start)
    relayout(state)
    state.block_end = block_end(state, state.block_start)


def insert_masks(state: DecodeState, row: int, col: int, n: int) -> None:
    """Insert up to ``n`` mask columns before ``col`` in one row (as many as the context allows)."""
    n = min(n, int(state.limit - (state.gen_end[row] - state.pads[row])))
    if n <= 0:
        return
    end = int(state.gen_end[row])
    if not state.gen_start <= col <= end:
        raise ValueError(f"insert at column {col} is outside row {row}'s generation")
    if end + n > state.width:
        extra = torch.full(
            (state.batch, end + n - state.width), state.mask_id, dtype=torch.long, device=state.tokens.device
        )
        state.tokens = torch.cat([state.tokens, extra], dim=1)
    segment = state.tokens[row, col:end].clone()
    state.tokens[row, col : col + n] = state.mask_id
    state.tokens[row, col + n : end + n] = segment
    state.gen_end[row] += n
    if col < int(state.block_end[row]) or col == int(state.block_end[row]) == int(state.block_start[row]):
        state.block_end[row] += n


def apply_edits(state: DecodeState, view: StepView | None, edits: list[Edit]) -> bool:
    """Apply a decision's edits; True when columns were inserted (positions changed)."""
    for edit in edits:
        if edit.op == "fill":
            if view is None:
                raise ValueError("a fill edit needs a step view")
            cols = view.cols[edit.row][view.col_valid[edit.row]]
            masked = state.tokens[edit.row, cols] == state.mask_id
            source = (
                view.pred[edit.row][view.col_valid[edit.row]] if edit.source == "pred" else state.eos_fill
            )
            state.tokens[edit.row, cols] = torch.where(masked, source, state.tokens[edit.row, cols])
        elif edit.op == "truncate":
            start, end = max(edit.col + 1, state.gen_start), int(state.gen_end[edit.row])
            state.tokens[edit.row, start:end] = state.eos_fill
        elif edit.op != "insert":
            raise ValueError(f"unknown edit op {edit.op!r}; expected fill, truncate or insert")
    inserts = sorted((e for e in edits if e.op == "insert"), key=lambda e: (e.row, -e.col))
    for edit in inserts:
        insert_masks(state, edit.row, edit.col, edit.n)
    if inserts:
        relayout(state)
    return bool(inserts)


def finish(state: DecodeState, rows: torch.Tensor) -> None:
    """Stop ``rows``; the masked positions they leave behind become EOS."""
    leftover = state.is_mask() & state.in_generation() & rows[:, None]
    state.tokens.masked_fill_(leftover, state.eos_fill)
    state.active &= ~rows


def region(
    state: DecodeState, start: torch.Tensor, end: torch.Tensor, width: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row column ranges ``[start, end)`` padded to ``width`` (at least the widest range; read
    from the tensors when None) -> ``(cols [B, W], valid [B, W])``.

    Padding repeats a row's last column, so every index stays inside the canvas.
    """
    end = torch.maximum(end, start + 1)
    if width is None:
        width = int((end - start).max())
    offsets = torch.arange(width, device=start.device)[None]
    cols = start[:, None] + offsets
    inside = cols < end[:, None]
    cols = torch.minimum(cols, end[:, None] - 1).clamp(max=state.width - 1)
    return cols, inside & (cols < state.gen_end[:, None])
