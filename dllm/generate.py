"""The denoising loop: the only code that calls the model and mutates the canvas.

Read top-down: ``generate`` resolves its settings and checks its prompts, then hands them to the
engine (``dllm.engine``), which keeps the running batch (finished rows leave, waiting prompts join)
and steps it through ``Denoising``, this module's step kind, one ``Loop.step`` at a time until every
row is done. ``Loop.start`` builds a state (``dllm.canvas``); one ``Loop.step`` is: the
sampler names its logit region, ``look`` runs the cache-planned forward (``ModelStep``, the only
code that calls the model) and applies the logit rules (``dllm.logits``), the sampler may size
the new blocks and then decides, ``apply`` writes the decision (guaranteeing progress: an active
row with masked positions in its block commits at least one token per step) and ``advance``
closes finished blocks. Counts (NFE, steps, row-forwards) are defined in ``dllm.metrics``.
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from typing import Callable

import torch

import dllm.caches as cache_registry
import dllm.canvas as canvas
import dllm.logits as logit_lib
import dllm.samplers as sampler_registry
from dllm.config import GenerationConfig, resolve_generation
from dllm.engine import Engine, Request, check_max_batch
from dllm.metrics import GenerationResult, StepRecord, answer_length
from dllm.models.transformer import KVStore
from dllm.prompts import encode_prompts
from dllm.selection import best_candidate
from dllm.state import Decision, DecodeState, StepView, cat_rows, take_rows


@dataclasses.dataclass
class StepEvent:
    """Passed to the ``callback`` after every step (for streaming)."""

    state: DecodeState
    committed: torch.Tensor  # [B, L] columns committed at this step
    rows: list[int]  # the prompt index of each row of ``state`` (finished rows leave the batch)
    view: StepView | None = None  # what the step's sampler saw (columns, confidences), for live views

    @property
    def step(self) -> int:
        """Steps taken by the batch's oldest row (a host read: computed only when asked)."""
        return int(self.state.steps.max())

    @functools.cached_property
    def host(self) -> HostRows:
        """Every row's generated region, steps and NFE now, in one host read for all listeners."""
        st = self.state
        tokens = st.tokens[:, st.gen_start :].tolist()
        ends = (st.gen_end - st.gen_start).tolist()
        return HostRows(
            canvas=[row[:end] for row, end in zip(tokens, ends)], steps=st.steps.tolist(), nfe=st.nfe.tolist()
        )


@dataclasses.dataclass
class HostRows:
    """``StepEvent.host``: per row, its generated region (mask ids where undecided), steps and NFE."""

    canvas: list[list[int]]
    steps: list[int]
    nfe: list[int]


class ModelStep:
    """The only code that calls the model: the cache's plan, K/V storage, CFG, refreshes apart, counts."""

    def __init__(self, model, cache, cfg: GenerationConfig, attention_backend, checks, compile=False):
        self.model, self.cache, self.cfg, self.attention_backend = model, cache, cfg, attention_backend
        self.checks = checks  # Loop.checks: verified at the step's decision point
        self.net = compiled(model.net) if compile else model.net
        self.kv = None
        self.rope = None  # RoPE tables of the canvas columns, built once per layout
        self.row_forwards = 0  # rows the model computed, summed over forwards (metrics.py)
        self.row_unpadded: list[bool] = []  # per row: no padding column (read once per layout)

    def forward(self, state: DecodeState, cols: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, W, V]`` (float32) for ``cols``, planned by the cache; with CFG, two batches."""
        plan = self.cache.plan(state, cols)
        guided = self.cfg.cfg_scale > 0
        tokens, positions, valid, query = (
            _with_unconditional(state, plan.query)
            if guided
            else (state.tokens, state.positions, state.valid, plan.query)
        )
        with torch.no_grad():
            logits = self.run_net(
                plan.hook,
                plan.query_span,
                tokens=tokens,
                positions=positions,
                key_valid=None if self.unpadded else valid,
                padded=not self.unpadded,
                rope=tuple(t.repeat(2, 1, 1, 1) for t in self.rope) if guided and self.rope else self.rope,
                query=query,
                kv=self.kv if plan.use_kv else None,
                logits_for=cols.repeat(2, 1) if guided else cols,
            )
            if query is not None:
                self.check_sources(state, query, cols.repeat(2, 1) if guided else cols)
            if plan.refresh_rows is not None:
                self.refresh_apart(state, plan, cols, logits)
        state.nfe += state.active.long()
        self.row_forwards += state.batch  # a row refreshed apart still counts once: one step, one forward
        if guided:
            return logit_lib.classifier_free_guidance(*logits.chunk(2), self.cfg.cfg_scale)
        return logits

    @property
    def unpadded(self) -> bool:
        """No row of the canvas has padding: the model may attend without a mask."""
        return all(self.row_unpadded)

    def run_net(self, hook, query_span, **inputs) -> torch.Tensor:
        """The model over the batch, float32 logits; on a CPU in consecutive row chunks of at most
        ``CPU_CHUNK_TOKENS`` query columns (not with a layer hook, which sees the whole batch)."""
        batch, width = inputs["tokens"].shape
        width = width if inputs["query"] is None else inputs["query"].shape[1]
        chunk = batch
        if hook is None and self.model.device.type == "cpu":
            chunk = max(1, CPU_CHUNK_TOKENS // width)
        parts = [
            self.net(
                **{name: _row_slice(value, start, start + chunk) for name, value in inputs.items()},
                hook=hook,
                query_span=query_span,
                check_sources=False,
                attention_backend=self.attention_backend,
            ).float()
            for start in range(0, batch, chunk)
        ]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def check_sources(self, state: DecodeState, query: torch.Tensor, cols: torch.Tensor) -> None:
        """The plan's query must hold every column whose hidden state a logit needs (the check the
        model would make on the host, deferred to the decision point)."""
        computed = torch.zeros(query.shape[0], state.width, dtype=torch.bool, device=query.device)
        computed.scatter_(1, query, True)
        missing = ~computed.gather(1, (cols - state.model.shift).clamp(min=0))
        self.checks.append(
            (
                missing.any(),
                lambda: (
                    f"cache {self.cache.name!r} planned a forward that does not compute the columns"
                    " whose hidden states the logits need"
                ),
            )
        )

    def refresh_apart(self, state: DecodeState, plan, cols: torch.Tensor, logits: torch.Tensor) -> None:
        """The plan's refreshing rows, again and alone over their whole query set: their K/V and
        logits replace what the batch's block-only forward computed for them."""
        rows = plan.refresh_rows
        kv = KVStore(k=[k[rows] for k in self.kv.k], v=[v[rows] for v in self.kv.v])
        logits[rows] = self.net(
            state.tokens[rows],
            state.positions[rows],
            state.valid[rows],
            padded=False if self.unpadded else None,
            rope=None if self.rope is None else tuple(t[rows] for t in self.rope),
            query=plan.refresh_query,
            kv=kv,
            logits_for=cols[rows],
            attention_backend=self.attention_backend,
        ).float()
        for store, part in zip(self.kv.k + self.kv.v, kv.k + kv.v):
            store[rows] = part

    def restart(self, state: DecodeState) -> None:
        """A new canvas layout: fresh K/V storage and a fresh cache plan."""
        if self.cache.needs_kv:
            rows = state.batch * (2 if self.cfg.cfg_scale > 0 else 1)
            self.kv = KVStore.empty(self.model.config, rows, state.width, self.model.dtype, self.model.device)
        self.cache.begin(state)
        self.row_unpadded = [bool(on) for on in state.valid.all(1).tolist()]  # one read per layout
        tables = getattr(self.model.net, "rope_tables", None)  # a stand-in network may have none
        self.rope = None if tables is None else tables(state.positions)


class Loop:
    """One ``generate`` call: plan, forward, decide, apply, advance, until every row is done."""

    def __init__(self, model, sampler, cache, cfg: GenerationConfig, attention_backend, compile=False):
        self.model, self.sampler, self.cache, self.cfg = model, sampler, cache, cfg
        self.event: StepEvent | None = None  # what the last step did (the engine hands it to listeners)
        self.checks: list[tuple[torch.Tensor, Callable[[], str]]] = []  # (violated?, message), read by decide
        self.model_step = ModelStep(model, cache, cfg, attention_backend, self.checks, compile)
        self.traces: dict[int, list[StepRecord]] = {}  # by prompt index
        self.rules: list = []
        self.rows: list[int] = []  # prompt index of each row of the running state
        self.region = None  # (start, end, width): the next step's logit region, known at the decision

    def start(self, prompts: list[list[int]], prompt_width: int | None = None) -> DecodeState:
        """A new state for ``prompts``: canvas, fresh K/V and cache plan, sampler state, lengths."""
        state = canvas.new_state(self.model, prompts, self.cfg, prompt_width)
        self.rules = logit_lib.logit_rules(self.cfg, state)
        self.model_step.restart(state)
        state.sampler_state = self.sampler.init_state(state)
        lengths = self.sampler.plan_length(state, self.probe(state))
        if lengths is not None:
            canvas.set_lengths(state, lengths)
            self.model_step.restart(state)
        self.advance(state)
        self.region = None
        return state

    def step(self, state: DecodeState) -> list[bool]:
        """One denoising step of every row; returns the rows' active flags (``decide``)."""
        if self.region is None:  # a new layout or new rows: the region's width is read here
            self.region = self.next_region(state)
            self.region[2] = int(self.region[2])
        view = self.look(state, *self.region)
        self.plan_block(view)
        decision = self.sampler.select(view)
        committed = self.apply(state, view, decision)
        self.sampler.observe(view, decision)
        self.close_blocks(state)
        self.region = self.next_region(state)
        active = self.decide(state)
        self.event = StepEvent(state, committed, list(self.rows), view)
        return active

    def next_region(self, state: DecodeState) -> list:
        """``[start, end, width]`` of the sampler's logit region; ``width`` (a 0-d tensor until the
        decision point reads it) is the widest row's."""
        return _bounds(*self.sampler.logit_region(state))

    def decide(self, state: DecodeState) -> list[bool]:
        """The step's decision point, its one host read: which rows are still decoding, the next
        logit region's width, whether a block closed by this step leaves the next block already
        decoded (then blocks close again, reading as they go) and the checks deferred from the
        step. Returns the rows' active flags."""
        width = self.region[2] if self.region is not None else torch.zeros((), dtype=torch.long)
        cascade = (state.active & (state.block_masks() == 0)).any()
        flags = [state.active, torch.stack([width.to(torch.long), cascade])]
        flags += [violated.reshape(1) for violated, _ in self.checks]
        values = torch.cat([f.to(torch.long).reshape(-1) for f in flags]).tolist()
        batch = state.batch
        active, (width, cascade), violated = values[:batch], values[batch : batch + 2], values[batch + 2 :]
        messages = [message() for (_, message), bad in zip(self.checks, violated) if bad]
        self.checks.clear()
        if messages:
            raise ValueError(messages[0])
        if cascade:
            self.advance(state)
            self.region = self.next_region(state)
            return self.decide(state)
        if self.region is not None:
            self.region[2] = max(width, 1)
        return [bool(on) for on in active]

    def keep_rows(self, keep: list[int]) -> None:
        """After ``take_rows(state, keep)``: the K/V store, RoPE tables, padding flags and region
        follow the kept rows."""
        index = torch.tensor(keep, dtype=torch.long, device=self.model.device)
        step, batch = self.model_step, len(self.rows)
        step.kv = take_rows(step.kv, index, batch)
        step.rope = take_rows(step.rope, index, batch)
        step.row_unpadded = [step.row_unpadded[i] for i in keep]
        if self.region is not None:
            self.region[:2] = [bound[index] for bound in self.region[:2]]
        self.rows = [self.rows[i] for i in keep]

    def look(self, state: DecodeState, start: torch.Tensor, end: torch.Tensor, width: int) -> StepView:
        """One forward over the columns ``[start, end)`` of each row (``width`` the widest row's), as
        the sampler sees it."""
        cols, col_valid = canvas.region(state, start, end, width)
        logits = logit_lib.apply_rules(self.rules, self.model_step.forward(state, cols), state)
        pred = logit_lib.propose(logits, state, cols)
        conf = logit_lib.confidence(logits, pred)
        view = StepView(
            state=state,
            cols=cols,
            col_valid=col_valid,
            logits=logits,
            pred=pred,
            conf=conf,
            score=logit_lib.ranking_score(conf, pred, state),
            cand=col_valid,
            first_of_block=state.step_in_block == 0,
        )
        view.recompute_candidates()
        return view

    def probe(self, state: DecodeState):
        """For length planning: ``run(lengths)`` lays the canvas out at those lengths and looks at it."""

        def run(lengths: torch.Tensor) -> StepView:
            canvas.set_lengths(state, lengths)
            self.model_step.restart(state)
            start, end, width = _bounds(*state.whole_generation())
            return self.look(state, start, end, int(width))

        return run

    def plan_block(self, view: StepView) -> None:
        """Let the sampler size the blocks that start at this step (adaptive block length)."""
        state = view.state
        planned = self.sampler.plan_block(view)  # applied to rows starting a block only: no host read here
        if planned is None:
            return
        planned = torch.minimum(
            torch.maximum(planned.to(state.block_end), state.block_start + 1), state.gen_end
        )
        if canvas.block_diffusion_size(state.model) is not None:  # a block model's blocks only shrink
            planned = torch.minimum(planned, canvas.block_end(state, state.block_start))
        state.block_end = torch.where(view.first_of_block & state.active, planned, state.block_end)
        view.recompute_candidates()

    def apply(self, state: DecodeState, view: StepView, decision: Decision) -> torch.Tensor:
        """Write the decision into the canvas; returns the committed columns ``[B, L]``."""
        commit = self.commit_with_progress(state, view, decision)
        tokens = decision.tokens if decision.tokens is not None else view.pred
        # scattered by addition: padding repeats a column, but only a real entry can commit
        hits = torch.zeros_like(state.tokens).scatter_add_(1, view.cols, commit.long())
        written = torch.zeros_like(state.tokens).scatter_add_(1, view.cols, torch.where(commit, tokens, 0))
        committed = hits > 0
        state.tokens.copy_(torch.where(committed, written, state.tokens))
        if self.cfg.trace:
            _trace(self.traces, self.rows, state, view, commit, tokens)
        state.steps += state.active.long()
        state.step_in_block += state.active.long()
        self.cache.commit(state, committed)
        self.edit(state, view, decision)
        return committed

    def edit(self, state: DecodeState, view: StepView | None, decision: Decision) -> None:
        """A decision's (or a block end's) canvas edits and row stops."""
        if canvas.apply_edits(state, view, decision.edits):
            self.model_step.restart(state)
        if decision.stop is not None:
            canvas.finish(state, decision.stop & state.active)

    def commit_with_progress(self, state: DecodeState, view: StepView, decision: Decision) -> torch.Tensor:
        """The decision's commit mask plus the best candidate of any row that would stall; that it
        commits masked candidates only is checked at the decision point."""
        commit = decision.commit
        if commit.shape != view.cand.shape:
            raise ValueError(
                f"sampler returned a commit mask of shape {tuple(commit.shape)},"
                f" expected {tuple(view.cand.shape)}"
            )
        self.checks.append(
            (
                (commit & ~view.cand).any(),
                lambda: f"sampler {self.sampler.name!r} committed positions that are not masked candidates",
            )
        )
        acting = torch.zeros_like(state.active)
        for edit in decision.edits:
            acting[edit.row] = True
        if decision.stop is not None:
            acting |= decision.stop
        stuck = state.active & view.cand.any(1) & ~commit.any(1) & ~acting
        return (commit & view.cand) | (best_candidate(view.score, view.cand) & stuck[:, None])

    def advance(self, state: DecodeState) -> None:
        """Close blocks until no active row's block is fully decoded (reading on the host whether
        one is: at the start and after a cascade; a step closes its blocks once, ``close_blocks``)."""
        for _ in range(state.width + 1):
            if not (state.active & (state.block_masks() == 0)).any():
                return
            self.close_blocks(state)

    def close_blocks(self, state: DecodeState) -> None:
        """Close every block with no masks left: block-end hooks, EOS stop, next block; the rows left
        with nothing to decode become inactive. No host read: rows with masks left are unchanged."""
        done = state.active & (state.block_masks() == 0)
        at_end = self.sampler.on_block_end(state, done)
        if at_end is not None:
            self.edit(state, None, at_end)
        if self.cfg.stop_at_eos:
            decoded = state.in_generation() & (state.column_index() < state.block_end[:, None])
            canvas.finish(state, done & (state.is_eos(state.tokens) & decoded).any(1) & state.active)
        moving = done & state.active
        state.block_start = torch.where(moving, state.block_end, state.block_start)
        state.block_end = torch.where(moving, canvas.block_end(state, state.block_start), state.block_end)
        state.step_in_block = torch.where(moving, torch.zeros_like(state.step_in_block), state.step_in_block)
        state.active &= (state.is_mask() & state.in_generation()).any(1)


_COMPILED: "weakref.WeakKeyDictionary[torch.nn.Module, torch.nn.Module]" = weakref.WeakKeyDictionary()


def compiled(net: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile`` of the model's forward, once per network and process. Shapes are dynamic
    (symbolic batch, canvas and query sizes), so a new canvas or block width does not recompile;
    on CUDA, ``reduce-overhead`` also captures CUDA graphs of the step."""
    if net not in _COMPILED:
        on_cuda = next(net.parameters()).is_cuda
        _COMPILED[net] = torch.compile(net, dynamic=True, mode="reduce-overhead" if on_cuda else None)
    return _COMPILED[net]


class Denoising:
    """The denoising step as the engine's step kind (``dllm.engine``): one ``Loop.step`` of the
    running batch; rows join at the batch's ``gen_start`` and leave with their K/V, RoPE tables and
    plugin states. Samplers that change the canvas width (``changes_length``) and classifier-free
    guidance take no joiners: their requests run in consecutive batches of ``max_batch``; under
    CFG finished rows also stay in the batch (computed, ignored), since their unconditional twins
    share the K/V layout."""

    vocabulary = "the vocabulary"  # what prompt ids are checked against (dllm.prompts)

    def __init__(self, loop: Loop):
        self.loop = loop
        self.keeps_finished = loop.cfg.cfg_scale > 0
        self.joins = not self.keeps_finished and not loop.sampler.changes_length()
        self.rows_seen = 0  # rows that have been in the running batch (the no-progress guard)

    def request(self, ids: list[int], on_step=None, index: int | None = None) -> Request:
        """A request for ``ids``, checked against the context and the model's blocks."""
        canvas.check_prompts(self.loop.model, [ids], self.loop.cfg)
        return Request(ids, on_step, index=index)

    def start(self, requests, prompt_width: int | None) -> DecodeState:
        self.loop.rows = [r.index for r in requests]
        self.rows_seen = len(requests)
        return self.loop.start([r.ids for r in requests], prompt_width)

    def active(self, state: DecodeState) -> list[bool]:
        return self.loop.decide(state)

    def step(self, state: DecodeState) -> list[bool]:
        return self.loop.step(state)

    def event(self, state: DecodeState) -> StepEvent:
        return self.loop.event

    def stalled(self, state: DecodeState, steps: int) -> bool:
        return steps > 4 * state.limit * self.rows_seen + 16

    def fits(self, state: DecodeState, request) -> bool:
        return len(request.ids) <= state.gen_start

    def join(self, state: DecodeState, requests) -> None:
        """Append the requests as new rows, laid out at the running batch's ``gen_start``."""
        loop, step = self.loop, self.loop.model_step
        running_kv, running_rope, running_unpadded = step.kv, step.rope, step.row_unpadded
        new = loop.start([r.ids for r in requests], state.gen_start)
        step.row_unpadded = running_unpadded + step.row_unpadded
        if (new.gen_start, new.width) != (state.gen_start, state.width):
            raise RuntimeError("a joining row's canvas does not match the running batch's layout")
        cat_rows(state, new, state.batch, new.batch)
        step.kv = cat_rows(running_kv, step.kv, state.batch - new.batch, new.batch)
        step.rope = cat_rows(running_rope, step.rope, state.batch - new.batch, new.batch)
        loop.rows = loop.rows + [r.index for r in requests]
        self.rows_seen += len(requests)

    def stop(self, state: DecodeState, rows: list[int]) -> None:
        stopping = torch.zeros(state.batch, dtype=torch.bool, device=state.tokens.device)
        stopping[rows] = True
        canvas.finish(state, stopping)

    def leave(self, state: DecodeState, keep: list[int]) -> None:
        take_rows(state, torch.tensor(keep, dtype=torch.long, device=state.tokens.device), state.batch)
        self.loop.keep_rows(keep)

    def result(self, state: DecodeState, row: int, request) -> GenerationResult:
        result = _result(self.loop.model, state, row, self.loop.traces.pop(request.index, []))
        result.batch_row_forwards = self.loop.model_step.row_forwards
        return result


def _bounds(start: torch.Tensor, end: torch.Tensor) -> list:
    """``[start, end, width]`` of per-row column ranges (each at least one column wide; ``width``
    the widest, a 0-d tensor)."""
    end = torch.maximum(end, start + 1)
    return [start, end, (end - start).max()]


# Rows x query columns of one forward on a CPU: a larger batch is run in row chunks, since its
# activations no longer fit the caches (batch 64 at gen 256 ran at 0.8-0.9x batch 1's tokens/s).
CPU_CHUNK_TOKENS = 4096


def _row_slice(value, start: int, end: int):
    """Rows ``[start, end)`` of a forward input (views: K/V written into a slice reach the store)."""
    if torch.is_tensor(value):
        return value[start:end]
    if isinstance(value, tuple):
        return tuple(part[start:end] for part in value)
    if isinstance(value, KVStore):
        return KVStore(k=[k[start:end] for k in value.k], v=[v[start:end] for v in value.v])
    return value


def _with_unconditional(state: DecodeState, query):
    """CFG's doubled batch: the rows, then the same rows with the prompt masked."""
    unconditional = state.tokens.clone()
    unconditional[:, : state.gen_start][state.valid[:, : state.gen_start]] = state.mask_id
    query = None if query is None else query.repeat(2, 1)
    return (
        torch.cat([state.tokens, unconditional]),
        state.positions.repeat(2, 1),
        state.valid.repeat(2, 1),
        query,
    )


def _result(model, state: DecodeState, row: int, trace: list[StepRecord]) -> GenerationResult:
    tokens = state.tokens[row, state.gen_start : int(state.gen_end[row])].tolist()
    n = answer_length(tokens, state.eos_ids)
    return GenerationResult(
        ids=tokens[:n],
        text=model.decode(tokens[:n]),
        canvas=tokens,
        steps=int(state.steps[row]),
        nfe=int(state.nfe[row]),
        gen_tokens=n,
        seconds=0.0,  # set by the engine when the row leaves
        trace=trace,
    )


def _trace(traces: dict, rows: list[int], state: DecodeState, view: StepView, commit, tokens) -> None:
    """Append this step's commits to each committing row's trace (``traces`` by prompt index)."""
    for row in commit.any(1).nonzero()[:, 0].tolist():
        sel = commit[row]
        traces.setdefault(rows[row], []).append(
            StepRecord(
                step=int(state.steps[row]),
                nfe=int(state.nfe[row]),
                positions=(view.cols[row][sel] - state.gen_start).tolist(),
                tokens=tokens[row][sel].tolist(),
                confidences=[round(c, 6) for c in view.conf[row][sel].tolist()],
            )
        )


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
    allow_special: bool = False,
    max_batch: int | None = None,
    compile: bool = False,
    **settings,
) -> list[GenerationResult]:
    """Generate for one prompt or a batch (text or token ids); one result per prompt.

    ``sampler`` / ``cache``: a registered name, a plugin class or an instance. ``settings`` are
    ``GenerationConfig`` fields (``gen_length=64, block_length=32, ...``) applied on top of
    ``config``. ``chat=True`` wraps text prompts in the tokenizer's chat template (instruct models).
    Text that spells a special token (the mask, EOS, ...) is refused unless ``allow_special=True``
    (``dllm.prompts``). ``max_batch`` bounds the running batch: more prompts than that are
    decoded with continuous batching (``dllm.engine``); every result equals the prompt's run alone.
    ``compile=True`` runs the model through ``torch.compile`` (``compiled``; the first call
    compiles, minutes on a CPU; the tokens equal eager decoding's in the tests).
    """
    config = resolve_generation(config, model, **settings)
    sampler = sampler_registry.get(sampler)
    cache = cache_registry.get(cache)
    check_max_batch(max_batch)
    if not isinstance(compile, bool):
        raise TypeError(f"compile={compile!r} must be True or False")
    ids = encode_prompts(model, prompts, chat, allow_special)
    kind = Denoising(Loop(model, sampler, cache, config, attention_backend, compile))
    requests = [kind.request(prompt, index=i) for i, prompt in enumerate(ids)]
    results = Engine(kind, max_batch, callback).run(requests)
    for result in results:  # the call's total (metrics.py), where a Batcher's row gets the running total
        result.batch_row_forwards = kind.loop.model_step.row_forwards
    return results
