"""The denoising loop: the only code that calls the model and mutates the canvas.

For each step: the cache plans the forward, the model computes logits for the sampler's region,
the sampler decides what to commit (and may edit the canvas or stop a row), the loop applies
the decision, guarantees progress (an active row with masked positions in its block commits at
least one token per step), advances blocks and records counts (``dllm.metrics``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable

import torch

from dllm import caches as cache_registry
from dllm import samplers as sampler_registry
from dllm.config import GenerationConfig
from dllm.metrics import GenerationResult, StepRecord, answer_length
from dllm.models.transformer import KVStore
from dllm.prompts import encode_prompts
from dllm.selection import best_candidate
from dllm.state import Decision, DecodeState, Edit, StepView, hash_uniform


@dataclasses.dataclass
class StepEvent:
    """Passed to the ``callback`` after every step (for streaming)."""

    step: int
    state: DecodeState
    committed: torch.Tensor  # [B, L] columns committed at this step


class _Loop:
    def __init__(self, model, sampler, cache, cfg: GenerationConfig, callback, attention_backend):
        self.model, self.sampler, self.cache, self.cfg = model, sampler, cache, cfg
        self.callback, self.attention_backend = callback, attention_backend
        self.kv = None
        self.eos_fill = model.config.eos_token_ids[0] if model.config.eos_token_ids else model.eos_ids[0]
        self.traces: list[list[StepRecord]] = []

    # ---- canvas -------------------------------------------------------------------------
    def build(self, prompts: list[list[int]]) -> DecodeState:
        cfg, model = self.cfg, self.model
        limit = min(cfg.max_length or model.max_length, model.max_length)
        for ids in prompts:
            if len(ids) + cfg.gen_length > limit:
                raise ValueError(
                    f"prompt of {len(ids)} tokens + gen_length {cfg.gen_length} exceeds the context limit of {limit}"
                )
        batch, width_p = len(prompts), max(len(p) for p in prompts)
        device = model.device
        tokens = torch.full((batch, width_p + cfg.gen_length), model.mask_id, dtype=torch.long, device=device)
        pads = torch.tensor([width_p - len(p) for p in prompts], device=device)
        for row, ids in enumerate(prompts):
            tokens[row, : pads[row]] = model.pad_id
            tokens[row, pads[row]: width_p] = torch.tensor(ids, device=device)
        zeros = torch.zeros(batch, dtype=torch.long, device=device)
        gen_end = torch.full((batch,), width_p + cfg.gen_length, device=device)
        state = DecodeState(
            tokens=tokens, valid=tokens.new_ones(tokens.shape, dtype=torch.bool), positions=tokens.clone(),
            gen_start=width_p, gen_end=gen_end, block_start=zeros + width_p,
            block_end=torch.minimum(zeros + width_p + cfg.block_length, gen_end),
            active=torch.ones(batch, dtype=torch.bool, device=device), steps=zeros.clone(), nfe=zeros.clone(),
            step_in_block=zeros.clone(), mask_id=model.mask_id, eos_ids=list(model.eos_ids), config=cfg, model=model,
        )
        self.pads, self.limit = pads, limit
        self._relayout(state)
        self.traces = [[] for _ in range(batch)]
        return state

    def _relayout(self, state: DecodeState) -> None:
        """Recompute validity and positions after the canvas shape changed; restart the cache."""
        cols = state.column_index()
        state.valid = (cols >= self.pads[:, None]) & (cols < state.gen_end[:, None])
        state.positions = (state.valid.long().cumsum(1) - 1).clamp(min=0)
        if self.cache.needs_kv:
            rows = state.batch * (2 if self.cfg.cfg_scale > 0 else 1)
            self.kv = KVStore.empty(self.model.config, rows, state.width, self.model.dtype, self.model.device)
        self.cache.begin(state)

    def _set_lengths(self, state: DecodeState, lengths: torch.Tensor) -> None:
        """Before decoding: give each row ``lengths[b]`` masked positions."""
        lengths = lengths.to(state.gen_end).clamp(min=1)
        lengths = torch.minimum(lengths, self.limit - (state.gen_start - self.pads))
        width = state.gen_start + int(lengths.max())
        tokens = torch.full((state.batch, width), state.mask_id, dtype=torch.long, device=state.tokens.device)
        tokens[:, : state.gen_start] = state.tokens[:, : state.gen_start]
        state.tokens = tokens
        state.gen_end = state.gen_start + lengths
        state.block_start = torch.full_like(lengths, state.gen_start)
        state.block_end = torch.minimum(state.block_start + self.cfg.block_length, state.gen_end)
        self._relayout(state)

    def _insert(self, state: DecodeState, row: int, col: int, n: int) -> None:
        room = int(self.limit - (state.gen_end[row] - self.pads[row]))
        n = min(n, room)
        if n <= 0:
            return
        if not state.gen_start <= col <= int(state.gen_end[row]):
            raise ValueError(f"insert at column {col} is outside row {row}'s generation")
        end = int(state.gen_end[row])
        needed = end + n
        if needed > state.width:
            extra = torch.full((state.batch, needed - state.width), state.mask_id, dtype=torch.long,
                               device=state.tokens.device)
            state.tokens = torch.cat([state.tokens, extra], dim=1)
        segment = state.tokens[row, col:end].clone()
        state.tokens[row, col: col + n] = state.mask_id
        state.tokens[row, col + n: end + n] = segment
        state.gen_end[row] += n
        if col < int(state.block_end[row]) or col == int(state.block_end[row]) == int(state.block_start[row]):
            state.block_end[row] += n

    # ---- one forward -----------------------------------------------------------------------
    def region(self, state: DecodeState, start: torch.Tensor, end: torch.Tensor):
        """Padded per-row column ranges [start, end) -> (cols [B, W], valid [B, W])."""
        end = torch.maximum(end, start + 1)
        width = int((end - start).max())
        offs = torch.arange(width, device=start.device)[None]
        cols = start[:, None] + offs
        col_valid = cols < end[:, None]
        cols = torch.minimum(cols, end[:, None] - 1).clamp(max=state.width - 1)
        return cols, col_valid & (cols < state.gen_end[:, None])

    def forward(self, state: DecodeState, cols: torch.Tensor) -> torch.Tensor:
        plan = self.cache.plan(state, cols)
        kv = self.kv if plan.use_kv else None
        tokens, positions, valid, query = state.tokens, state.positions, state.valid, plan.query
        w = self.cfg.cfg_scale
        if w > 0:
            unconditional = tokens.clone()
            unconditional[:, : state.gen_start][valid[:, : state.gen_start]] = state.mask_id
            tokens = torch.cat([tokens, unconditional])
            positions, valid, cols2 = positions.repeat(2, 1), valid.repeat(2, 1), cols.repeat(2, 1)
            query = None if query is None else query.repeat(2, 1)
        else:
            cols2 = cols
        with torch.no_grad():
            logits = self.model.net(
                tokens, positions, valid, query=query, kv=kv, logits_for=cols2, hook=plan.hook,
                attention_backend=self.attention_backend,
            ).float()
        if w > 0:
            cond, uncond = logits.chunk(2)
            logits = uncond + (w + 1) * (cond - uncond)
        state.nfe += state.active.long()
        return logits

    def view(self, state: DecodeState, cols, col_valid, logits) -> StepView:
        cfg = self.cfg
        eos = torch.tensor(state.eos_ids, device=logits.device)
        logits[..., state.mask_id] = float("-inf")  # committing a mask would undo progress
        if cfg.logits_eos_inf:
            logits[..., eos] = float("-inf")
        if cfg.temperature > 0:
            vocab = torch.arange(logits.shape[-1], device=logits.device)
            u = hash_uniform(cfg.seed, state.steps, cols - state.gen_start, vocab)
            pred = (logits.double() / cfg.temperature - torch.log(-torch.log(u))).argmax(-1)
        else:
            pred = logits.argmax(-1)
        conf = torch.exp(logits.gather(-1, pred[..., None])[..., 0] - torch.logsumexp(logits, dim=-1))
        score = conf
        if cfg.confidence_eos_eot_inf:
            # Intended semantics: EOS/EoT stay proposable but rank below every other candidate.
            score = torch.where(torch.isin(pred, eos), conf - 2.0, conf)
        view = StepView(
            state=state, cols=cols, col_valid=col_valid, logits=logits, pred=pred, conf=conf, score=score,
            cand=col_valid, first_of_block=state.step_in_block == 0,
        )
        view.recompute_candidates()
        return view

    def probe(self, state: DecodeState):
        def run(lengths: torch.Tensor) -> StepView:
            self._set_lengths(state, lengths)
            cols, col_valid = self.region(state, torch.full_like(state.gen_end, state.gen_start), state.gen_end)
            return self.view(state, cols, col_valid, self.forward(state, cols))

        return run

    # ---- applying a decision ---------------------------------------------------------------
    def apply(self, state: DecodeState, view: StepView, decision: Decision) -> torch.Tensor:
        commit = decision.commit
        if commit.shape != view.cand.shape:
            raise ValueError(f"sampler returned a commit mask of shape {tuple(commit.shape)}, expected {tuple(view.cand.shape)}")
        if (commit & ~view.cand).any():
            raise ValueError(f"sampler {self.sampler.name!r} committed positions that are not masked candidates")
        stop = decision.stop if decision.stop is not None else torch.zeros_like(state.active)
        edited = torch.zeros_like(state.active)
        for edit in decision.edits:
            edited[edit.row] = True
        stuck = state.active & view.cand.any(1) & ~commit.any(1) & ~stop & ~edited
        if stuck.any():
            commit = commit | (best_candidate(view.score, view.cand) & stuck[:, None])
        tokens = decision.tokens if decision.tokens is not None else view.pred
        rows, idx = commit.nonzero(as_tuple=True)
        committed = torch.zeros_like(state.valid)
        committed[rows, view.cols[rows, idx]] = True
        state.tokens[rows, view.cols[rows, idx]] = tokens[rows, idx]
        if self.cfg.trace:
            self._record(state, view, commit, tokens)
        state.steps += state.active.long()
        state.step_in_block += state.active.long()
        self.cache.commit(state, committed)
        self._apply_edits(state, view, decision.edits)
        if stop.any():
            self._finish(state, stop & state.active)
        return committed

    def _record(self, state, view, commit, tokens):
        for row in commit.any(1).nonzero()[:, 0].tolist():
            sel = commit[row]
            self.traces[row].append(StepRecord(
                step=int(state.steps[row]), nfe=int(state.nfe[row]),
                positions=(view.cols[row][sel] - state.gen_start).tolist(),
                tokens=tokens[row][sel].tolist(), confidences=[round(c, 6) for c in view.conf[row][sel].tolist()],
            ))

    def _apply_edits(self, state: DecodeState, view: StepView | None, edits: list[Edit]) -> None:
        if not edits:
            return
        inserts = sorted((e for e in edits if e.op == "insert"), key=lambda e: (e.row, -e.col))
        for edit in edits:
            if edit.op == "fill":
                if view is None:
                    raise ValueError("a fill edit needs a step view")
                cols = view.cols[edit.row][view.col_valid[edit.row]]
                masked = state.tokens[edit.row, cols] == state.mask_id
                source = view.pred[edit.row][view.col_valid[edit.row]] if edit.source == "pred" else self.eos_fill
                filled = torch.where(masked, source, state.tokens[edit.row, cols])
                state.tokens[edit.row, cols] = filled
            elif edit.op == "truncate":
                start, end = max(edit.col + 1, state.gen_start), int(state.gen_end[edit.row])
                state.tokens[edit.row, start:end] = self.eos_fill
            elif edit.op != "insert":
                raise ValueError(f"unknown edit op {edit.op!r}; expected fill, truncate or insert")
        for edit in inserts:
            self._insert(state, edit.row, edit.col, edit.n)
        if inserts:
            self._relayout(state)

    def _finish(self, state: DecodeState, rows: torch.Tensor) -> None:
        """Stop rows; masked positions they leave behind become EOS."""
        leftover = state.is_mask() & state.in_generation() & rows[:, None]
        state.tokens[leftover] = self.eos_fill
        state.active &= ~rows

    def advance_blocks(self, state: DecodeState) -> None:
        cfg = self.cfg
        for _ in range(state.width + 1):
            done = state.active & (state.block_masks() == 0)
            if not done.any():
                return
            extra = self.sampler.on_block_end(state, done)
            if extra is not None:
                self._apply_edits(state, None, extra.edits)
                if extra.stop is not None and extra.stop.any():
                    self._finish(state, extra.stop & state.active)
            if cfg.stop_at_eos:
                cols = state.column_index()
                decoded = (cols >= state.gen_start) & (cols < state.block_end[:, None])
                has_eos = (torch.isin(state.tokens, torch.tensor(state.eos_ids, device=cols.device)) & decoded).any(1)
                self._finish(state, done & has_eos & state.active)
            moving = done & state.active
            state.block_start = torch.where(moving, state.block_end, state.block_start)
            state.block_end = torch.where(
                moving, torch.minimum(state.block_start + cfg.block_length, state.gen_end), state.block_end)
            state.step_in_block = torch.where(moving, torch.zeros_like(state.step_in_block), state.step_in_block)
            finished = state.active & ~(state.is_mask() & state.in_generation()).any(1)
            state.active &= ~finished

    # ---- main loop -------------------------------------------------------------------------
    def run(self, prompts: list[list[int]]) -> list[GenerationResult]:
        start_time = time.perf_counter()
        state = self.build(prompts)
        state.sampler_state = self.sampler.init_state(state)
        lengths = self.sampler.plan_length(state, self.probe(state))
        if lengths is not None:
            self._set_lengths(state, lengths)
        self.advance_blocks(state)
        guard = 4 * self.limit * state.batch + 16
        while state.active.any():
            guard -= 1
            if guard < 0:
                raise RuntimeError(f"sampler {self.sampler.name!r} made no progress; decoding aborted")
            start, end = self.sampler.logit_region(state)
            cols, col_valid = self.region(state, start, end)
            view = self.view(state, cols, col_valid, self.forward(state, cols))
            planned = self.sampler.plan_block(view) if view.first_of_block.any() else None
            if planned is not None:
                planned = planned.to(state.block_end)
                planned = torch.minimum(torch.maximum(planned, state.block_start + 1), state.gen_end)
                state.block_end = torch.where(view.first_of_block & state.active, planned, state.block_end)
                view.recompute_candidates()
            decision = self.sampler.select(view)
            committed = self.apply(state, view, decision)
            self.sampler.observe(view, decision)
            self.advance_blocks(state)
            if self.callback is not None:
                self.callback(StepEvent(step=int(state.steps.max()), state=state, committed=committed))
        seconds = time.perf_counter() - start_time
        return self.results(state, seconds)

    def results(self, state: DecodeState, seconds: float) -> list[GenerationResult]:
        out = []
        for row in range(state.batch):
            canvas = state.tokens[row, state.gen_start: int(state.gen_end[row])].tolist()
            n = answer_length(canvas, state.eos_ids)
            out.append(GenerationResult(
                ids=canvas[:n], text=self.model.decode(canvas[:n]), canvas=canvas, steps=int(state.steps[row]),
                nfe=int(state.nfe[row]), gen_tokens=n, seconds=seconds, trace=self.traces[row],
            ))
        return out


def generate(
    model,
    prompts,
    sampler="llada",
    cache="none",
    config: GenerationConfig | None = None,
    *,
    callback: Callable[[StepEvent], None] | None = None,
    attention_backend: str | None = None,
    chat: bool = False,
    **settings,
) -> list[GenerationResult]:
    """Generate for one prompt or a batch (text or token ids); one result per prompt.

    ``sampler`` / ``cache``: a registered name, a plugin class or an instance. ``settings`` are
    ``GenerationConfig`` fields (``gen_length=64, block_length=32, ...``) applied on top of
    ``config``. ``chat=True`` wraps text prompts in the tokenizer's chat template (instruct models).
    """
    if config is None:
        config = GenerationConfig(**settings)
    elif settings:
        if "gen_length" in settings and "steps" not in settings:
            settings["steps"] = None  # re-derive one step per token for the new length
        config = dataclasses.replace(config, **settings)
    sampler = sampler_registry.get(sampler)
    cache = cache_registry.get(cache)
    loop = _Loop(model, sampler, cache, config, callback, attention_backend)
    return loop.run(encode_prompts(model, prompts, chat))
