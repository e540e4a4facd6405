"""Elastic-Cache: refresh K/V only when attention says it is stale, per layer.

Idea: each forward recomputes a small query set — the ``window`` left-most masked positions, the
tokens decoded at the previous step, and the tracked tokens (per layer, the ``track_num`` non-mask
columns the window attended to most at the previous step); far masks are never queried. At every
layer the tracked tokens' attention over all keys is compared with the previous step's (cosine
across heads, as in the reference code); below ``gamma`` that layer and all later ones run over
every column, the other columns' inputs coming from the stored per-layer inputs. Probabilities of
the few tracked/window rows come from the kernel's log-sum-exp, ``exp(q·k/√d − lse)``, never from
a materialised attention matrix; ``use_lse=None`` does so on CUDA (the Triton kernel returns the
LSE for free) and on CPU normalises those rows directly (the SDPA path would need a ~5x slower
explicit attention to return an LSE; the values are the same).

Source: Nguyen-Tri, Ranjan, Shen, "Attention Is All You Need for KV Cache in Diffusion LLMs"
(arXiv:2510.14973); yxu-dev/Elastic-Cache ``llada/generate.py`` (``generate_with_elastic_cache``),
``llada/model/modeling_llada.py``, ``dream/model/generation_utils_elastic.py``. Defaults: gamma
0.9, window 16, track_num 1; pair with the Fast-dLLM threshold sampler (0.9) as the reference does.

Differences from the reference: the drifting layer itself is recomputed too (the reference starts
at the next layer, keeping that layer's stale rows; ``from_next_layer=True``), so ``gamma > 1`` is
exactly a full recompute and ``gamma = -1`` never refreshes. Decisions are per row (the reference
runs batch 1), the cosine ignores padding keys, columns the sampler needs logits for are always
queried, and Dream's −1 query shift comes from the model's shift flag (window rows ``j - shift``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from dllm.config import check_range
from dllm.models.hooks import LayerHook
from dllm.state import DecodeState

from . import register
from .base import IncrementalCache, IncrementalState, check_flag, padded_columns, shift_left

# ---- the maths only Elastic-Cache uses ----------------------------------------------------------


def first_masked(state: DecodeState, count: int) -> torch.Tensor:
    """``[B, L]`` the ``count`` left-most masked columns of each active row."""
    masked = state.is_mask() & state.in_generation() & state.active[:, None]
    return masked & (masked.long().cumsum(1) <= count)


def additive_mask(keep: torch.Tensor) -> torch.Tensor:
    """float ``0`` where ``keep``, ``-inf`` elsewhere."""
    return keep.new_zeros(keep.shape, dtype=torch.float).masked_fill(~keep, -math.inf)


def buffer(slots: list, index: int, shape, like: torch.Tensor) -> torch.Tensor:
    """``slots[index]``, (re)allocated as zeros of ``shape`` when missing or of another shape."""
    if slots[index] is None or tuple(slots[index].shape) != tuple(shape):
        slots[index] = like.new_zeros(shape)
    return slots[index]


def write_columns(store: torch.Tensor, dim: int, query: torch.Tensor | None, values: torch.Tensor) -> None:
    """Write per-column ``values`` into ``store`` along ``dim`` at the ``query`` columns (None = all)."""
    if query is None:
        store.copy_(values)
    else:
        index = query.view(
            query.shape[0], *([1] * (dim - 1)), query.shape[1], *([1] * (values.dim() - dim - 1))
        )
        store.scatter_(dim, index.expand_as(values), values)


def gather_rows(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[B, H, L, D]`` at columns ``[B, n]`` -> ``[B, H, n, D]``."""
    return t.gather(2, index[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))


def row_probabilities(
    q: torch.Tensor, k: torch.Tensor, key_bias: torch.Tensor | None, lse=None
) -> torch.Tensor:
    """Attention probabilities ``[B, Hq, n, L]`` of a few query rows ``q [B, Hq, n, D]`` over the K
    buffer ``[B, Hkv, L, D]`` (GQA), ``key_bias [B, 1, 1, L]`` (0 or -inf; None: every key is real).
    With the kernel's log-sum-exp ``lse [B, Hq, n]`` they are ``exp(score - lse)``; without it, a softmax."""
    (rows, heads, n, dim), kv_heads = q.shape, k.shape[1]
    q = (q.float() / math.sqrt(dim)).reshape(rows * kv_heads, heads // kv_heads * n, dim)
    scores = torch.bmm(q, k.float().reshape(rows * kv_heads, -1, dim).transpose(1, 2)).view(
        rows, heads, n, -1
    )
    if key_bias is not None:
        scores = scores + key_bias
    return scores.softmax(-1) if lse is None else torch.exp(scores - lse[..., None])


def head_cosine(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Cosine similarity over dim 1 (heads) of ``[B, H, R, L]`` tensors -> ``[B, R, L]``; as
    ``F.normalize`` would give, written out because ``vector_norm`` over a middle dim of these small
    tensors costs ~10x more on CPU and this runs at every layer of every step."""
    norms = a.square().sum(1).sqrt().clamp(min=eps) * b.square().sum(1).sqrt().clamp(min=eps)
    return (a * b).sum(1) / norms


@dataclass
class ElasticState(IncrementalState):
    """Elastic-Cache's per-request state, on top of the incremental bookkeeping."""

    track: torch.Tensor = None  # [B, L] tracked columns for the next forward
    x: list = field(default_factory=list)  # per layer: stored inputs [B, L, d] (None until computed)
    q: list = field(default_factory=list)  # per layer: stored post-RoPE queries [B, Hq, L, D]
    hook: _Hook | None = None  # the forward in flight (settled at the next commit/plan)
    row_layers: int = 0  # (row, layer) pairs computed so far
    full_row_layers: int = 0  # of those, computed over every column


@register("elastic")
@dataclass
class ElasticCache(IncrementalCache):
    """Elastic-Cache: small query window; a layer and those after it refresh on attention drift."""

    gamma: float = 0.9
    window: int = 16
    track_num: int = 1
    from_next_layer: bool = False
    use_lse: bool | None = None

    def __post_init__(self):
        check_range("elastic", "gamma", self.gamma, -1.0, 2.0)
        check_flag("elastic", "from_next_layer", self.from_next_layer)
        check_flag("elastic", "use_lse", self.use_lse, allow_none=True)
        check_range("elastic", "window", self.window, 1)
        check_range("elastic", "track_num", self.track_num, 1)

    def new_state(self, state, **bookkeeping):
        layers = state.model.config.n_layers
        return ElasticState(
            **bookkeeping, track=torch.zeros_like(state.valid), x=[None] * layers, q=[None] * layers
        )

    def _window_rows(self, state):
        return shift_left(first_masked(state, self.window), state.model.shift)

    def commit(self, state, committed):
        super().commit(state, committed)
        self._settle(state.cache_state)

    @staticmethod
    def _settle(own):
        if own.hook is not None:  # the last forward's tracked tokens, for the next one
            own.track, own.hook = own.hook.finish(), None

    def columns(self, state, own):
        self._settle(own)
        win = first_masked(state, self.window)
        return own.track | own.committed | win | self._window_rows(state)

    def hook(self, state, own, full, query):
        own.hook = _Hook(self, own, state, full, self._window_rows(state))
        return own.hook


class _Hook(LayerHook):
    """One forward of Elastic-Cache. Rows are the model's (2B under classifier-free guidance)."""

    def __init__(self, cache, own, state, full, window_rows):
        self.cache, self.own, self.batch, self.layers = cache, own, state.batch, state.model.config.n_layers
        self.plan_rows = dict(
            full=full,
            active=state.active,
            valid=state.valid,
            keep=~state.is_mask() & state.valid,
            track=own.track & state.active[:, None],
            window=window_rows,
        )
        self.wide, self.p_old, self.tested, self.at = None, None, -1, None
        self.tracks = [None] * self.layers

    def _setup(self, rows, query):
        rep = rows // self.batch
        r = (
            self.plan_rows
            if rep == 1
            else {k: v.repeat(rep, 1) if v.dim() == 2 else v.repeat(rep) for k, v in self.plan_rows.items()}
        )
        self.active, self.wide = r["active"], r["full"] | (query is None)  # wide: computing every column
        self.start = torch.where(self.wide, 0, self.layers)  # first layer computed over all columns
        all_valid = bool(r["valid"].all())
        self.key_bias = None if all_valid else additive_mask(r["valid"])[:, None, None]
        self.mass_bias = additive_mask(r["keep"])
        self.track, track_real = padded_columns(r["track"])
        win, win_real = padded_columns(r["window"])
        self.rows = torch.cat([self.track, win], 1)  # the rows whose probabilities are needed
        self.track_weight = track_real[:, :, None] & r["valid"][:, None, :]
        self.track_count = self.track_weight.sum((1, 2)).clamp(min=1)
        self.win_weight, self.has_win = win_real[:, None, :, None].float(), win_real.any(1, keepdim=True)
        self.testable = track_real.any(1) & self.active
        self.drifted = False  # some row drifted and does not compute every column yet
        self._update_test()

    def _update_test(self):
        self.test = self.testable & ~self.wide
        self.any_test = bool(self.test.any())

    def layer_input(self, layer, x, query, kv):
        if self.wide is None:
            self._setup(x.shape[0], query)
        stored = buffer(self.own.x, layer, (x.shape[0], kv.length, x.shape[2]), x)
        write_columns(stored, 1, query, x)
        if self.drifted and layer >= self.drift_from:
            # these rows now take every column, the stale ones from the stored inputs
            self.wide |= self.start <= layer
            self.drifted = False
            self._update_test()
            if self.wide.all():
                query, x = None, stored
            else:
                every = torch.arange(kv.length, device=x.device).expand(x.shape[0], -1)
                padded = torch.cat([query, query[:, :1].expand(-1, kv.length - query.shape[1])], 1)
                query = torch.where(self.wide[:, None], every, padded)
                x = stored.gather(1, query[..., None].expand(-1, -1, x.shape[2]))
        if self.tested != layer and self.cache.gamma > -1 and self.own.q[layer] is not None and self.any_test:
            self.p_old = row_probabilities(
                gather_rows(self.own.q[layer], self.track), kv.k[layer], self.key_bias
            )
        return x, query

    def wants_lse(self, layer, query):
        use = self.cache.use_lse
        return query is not None and (query.is_cuda if use is None else use)

    def attention(self, layer, q, query, k, lse):
        write_columns(
            buffer(self.own.q, layer, (q.shape[0], q.shape[1], k.shape[2], q.shape[3]), q), 2, query, q
        )
        at = self.rows
        if query is not None:
            if self.at is None or self.at[0] is not query:  # where the needed rows sit in this query
                lookup = torch.zeros_like(self.mass_bias, dtype=torch.long)
                lookup.scatter_(1, query, torch.arange(query.shape[1], device=q.device).expand_as(query))
                self.at = (query, lookup.gather(1, self.rows))
            at = self.at[1]
        lse = None if lse is None else lse.gather(2, at[:, None].expand(-1, q.shape[1], -1))
        probs = row_probabilities(gather_rows(q, at), k, self.key_bias, lse)
        n_track = self.track.shape[1]
        if self.p_old is not None:  # drift test: cosine across heads, mean over tracked rows and real keys
            cos = head_cosine(probs[:, :, :n_track], self.p_old)
            sim = (cos * self.track_weight).sum((1, 2)) / self.track_count
            drift = self.test & (sim < self.cache.gamma)
            if bool(drift.any()):
                self.drift_from = layer + self.cache.from_next_layer
                self.start = torch.where(drift, self.start.clamp(max=self.drift_from), self.start)
                self.drifted = True
            self.p_old, self.tested = None, layer
        mass = (probs[:, :, n_track:] * self.win_weight).sum((1, 2)) + self.mass_bias
        top = mass.topk(min(self.cache.track_num, mass.shape[1]), dim=1)
        self.tracks[layer] = (top.indices, self.has_win & (top.values > -math.inf))

    def recompute(self, layer):
        return self.drifted and layer >= self.drift_from

    def finish(self) -> torch.Tensor:
        """Account the forward and return the tracked columns ``[B, L]`` for the next one."""
        self.own.row_layers += int(self.active.sum()) * self.layers
        self.own.full_row_layers += int(((self.layers - self.start) * self.active).sum())
        track = torch.zeros_like(self.mass_bias, dtype=torch.bool)
        for index, real in filter(None, self.tracks):
            track |= torch.zeros_like(track).scatter_(1, index, real)
        return track.view(-1, self.batch, track.shape[1]).any(0)
