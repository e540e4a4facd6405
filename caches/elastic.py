"""Elastic-Cache: refresh K/V only when attention says it is stale, per layer.

Idea: most steps change little, so each forward recomputes only a small query set — the ``window``
left-most masked positions, the tokens decoded at the previous step, and the "tracked" tokens (at
each layer, the ``track_num`` non-mask columns that the window attended to most at the previous
step). Far masked positions are never queried ("block caching"). At every layer the tracked
tokens' attention over all keys is compared with the previous step's (cosine across heads, as in
the reference code); when the mean similarity falls below ``gamma`` the cached state of that layer
is declared stale and the layer and every later one run over all columns, the non-queried
columns taking their inputs from the stored per-layer inputs. Probabilities for the few tracked
and window rows come from the attention kernel's log-sum-exp: ``exp(q·k/√d − lse)``.

Source: Nguyen-Tri, Ranjan, Shen, "Attention Is All You Need for KV Cache in Diffusion LLMs"
(arXiv:2510.14973); yxu-dev/Elastic-Cache ``llada/generate.py`` (``generate_with_elastic_cache``),
``llada/model/modeling_llada.py``, ``dream/model/generation_utils_elastic.py``. Defaults of
``generate_with_elastic_cache``: gamma 0.9, window 16, track_num 1; pair it with the Fast-dLLM
threshold sampler (0.9) for the reference's confidence-aware decoding.

Differences from the reference: on drift the drifting layer itself is recomputed over all
columns (the reference starts at the next layer and keeps the drifting layer's stale rows;
``from_next_layer=True`` restores that) — so ``gamma > 1`` (drift at layer 0) is exactly a full
recompute and ``gamma = -1`` never refreshes. Decisions are per row (the reference runs batch 1),
the cosine ignores padding keys, and columns the sampler needs logits for are always queried.
Dream's −1 query shift comes from the model's shift flag (window rows ``j - shift``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dllm.config import check_range
from dllm.models.transformer import LayerHook

from . import register
from .base import IncrementalCache, first_masked, padded_columns, shift_left


@register("elastic")
@dataclass
class ElasticCache(IncrementalCache):
    """Elastic-Cache: small query window; a layer and those after it refresh on attention drift."""

    gamma: float = 0.9
    window: int = 16
    track_num: int = 1
    from_next_layer: bool = False

    def __post_init__(self):
        check_range("elastic", "gamma", self.gamma, -1.0, 2.0)
        check_range("elastic", "window", self.window, 1)
        check_range("elastic", "track_num", self.track_num, 1)

    def begin(self, state):
        super().begin(state)
        layers = state.model.config.n_layers
        state.cache_state.extra.update(
            track=torch.zeros_like(state.valid), x=[None] * layers, q=[None] * layers, hook=None,
            row_layers=0, full_row_layers=0)

    def _window_rows(self, state):
        return shift_left(first_masked(state, self.window), state.model.shift)

    def commit(self, state, committed):
        super().commit(state, committed)
        self._settle(state.cache_state.extra)

    @staticmethod
    def _settle(ext):
        if ext["hook"] is not None:  # the last forward's tracked tokens, for the next one
            ext["track"], ext["hook"] = ext["hook"].finish(), None

    def columns(self, state, book):
        self._settle(book.extra)
        win = first_masked(state, self.window)
        return book.extra["track"] | book.committed | win | self._window_rows(state)

    def hook(self, state, book, full, query):
        ext = book.extra
        ext["hook"] = _Hook(self, ext, state, full, self._window_rows(state))
        return ext["hook"]


class _Hook(LayerHook):
    """One forward of Elastic-Cache. Rows are the model's (2B under classifier-free guidance)."""

    def __init__(self, cache, ext, state, full, window_rows):
        self.cache, self.ext, self.batch, self.layers = cache, ext, state.batch, state.model.config.n_layers
        self.plan_rows = dict(full=full, active=state.active, valid=state.valid, masked=state.is_mask(),
                              track=ext["track"] & state.active[:, None], window=window_rows)
        self.wide = None  # [R] rows computing every column from here on
        self.p_old, self.tested, self.tracks, self.wide_layers = None, -1, [None] * self.layers, [0] * self.layers

    def _setup(self, rows, query):
        rep = rows // self.batch
        r = {k: v.repeat(rep, 1) if v.dim() == 2 else v.repeat(rep) for k, v in self.plan_rows.items()}
        self.valid, self.masked, self.active = r["valid"], r["masked"], r["active"]
        self.wide = r["full"] | (query is None)
        self.start = torch.where(self.wide, 0, self.layers)  # first layer computed over all columns
        self.track, self.track_real = padded_columns(r["track"])
        self.win, self.win_real = padded_columns(r["window"])

    def layer_input(self, layer, x, query, kv):
        if self.wide is None:
            self._setup(x.shape[0], query)
        stored = self.ext["x"][layer]
        if stored is None or stored.shape != (x.shape[0], kv.length, x.shape[2]):
            stored = self.ext["x"][layer] = x.new_zeros(x.shape[0], kv.length, x.shape[2])
        if query is None:
            stored.copy_(x)
        else:
            stored.scatter_(1, query[..., None].expand_as(x), x)
        pending = (self.start <= layer) & ~self.wide
        if pending.any():
            self.wide |= pending
            if self.wide.all():
                query, x = None, stored
            else:
                every = torch.arange(kv.length, device=x.device).expand(x.shape[0], -1)
                padded = torch.cat([query, query[:, :1].expand(-1, kv.length - query.shape[1])], 1)
                query = torch.where(self.wide[:, None], every, padded)
                x = stored.gather(1, query[..., None].expand(-1, -1, x.shape[2]))
        test = ~self.wide & self.track_real.any(1) & self.active
        if self.tested != layer and self.cache.gamma > -1 and test.any() and self.ext["q"][layer] is not None:
            self.test_rows = test  # the tracked tokens' attention over the cache as it was
            self.p_old = self._probs(self._rows(self.ext["q"][layer], self.track), kv.k[layer])
        return x, query

    def _rows(self, t, index):  # [R, H, L, D] gathered at [R, n] -> [R, H, n, D]
        return t.gather(2, index[:, None, :, None].expand(-1, t.shape[1], -1, t.shape[3]))

    def _probs(self, q, k, lse=None):
        """Attention probabilities ``[R, Hq, n, L]`` of a few query rows over the K buffer."""
        rows, heads, n, dim = q.shape
        groups = heads // k.shape[1]
        scores = q.float().view(rows, k.shape[1], groups, n, dim) @ k.float()[:, :, None].transpose(-1, -2)
        scores = (scores / math.sqrt(dim)).view(rows, heads, n, -1).masked_fill(~self.valid[:, None, None], -math.inf)
        return scores.softmax(-1) if lse is None else torch.exp(scores - lse[..., None])

    def attention(self, layer, q, query, k, lse):
        stored = self.ext["q"][layer]
        if stored is None or stored.shape[0] != q.shape[0] or stored.shape[2] != k.shape[2]:
            stored = self.ext["q"][layer] = q.new_zeros(q.shape[0], q.shape[1], k.shape[2], q.shape[3])
        if query is None:
            stored.copy_(q)
            lookup = torch.arange(k.shape[2], device=q.device).expand(q.shape[0], -1)
        else:
            stored.scatter_(2, query[:, None, :, None].expand_as(q), q)
            lookup = torch.zeros_like(self.valid, dtype=torch.long)
            lookup.scatter_(1, query, torch.arange(query.shape[1], device=q.device).expand_as(query))
        if self.p_old is not None:
            at = lookup.gather(1, self.track)
            p_new = self._probs(self._rows(q, at), k, lse.gather(2, at[:, None].expand(-1, q.shape[1], -1)))
            cos = F.cosine_similarity(self.p_old, p_new, dim=1)              # across heads: [R, T, L]
            weight = (self.track_real[:, :, None] & self.valid[:, None, :]).float()
            sim = (cos * weight).sum((1, 2)) / weight.sum((1, 2)).clamp(min=1)
            drift = self.test_rows & (sim < self.cache.gamma)
            self.start = torch.where(drift, torch.clamp(self.start, max=layer + self.cache.from_next_layer), self.start)
            self.p_old, self.tested = None, layer
        at = lookup.gather(1, self.win)
        probs = self._probs(self._rows(q, at), k, lse.gather(2, at[:, None].expand(-1, q.shape[1], -1)))
        mass = (probs * self.win_real[:, None, :, None]).sum((1, 2)).masked_fill(self.masked | ~self.valid, -math.inf)
        top = mass.topk(min(self.cache.track_num, mass.shape[1]), dim=1)
        self.tracks[layer] = (top.indices, self.win_real.any(1, keepdim=True) & (top.values > -math.inf))
        self.wide_layers[layer] = int((self.wide & self.active).sum())

    def recompute(self, layer):
        return bool(((self.start <= layer) & ~self.wide).any())

    def finish(self) -> torch.Tensor:
        """Account the forward and return the tracked columns ``[B, L]`` for the next one."""
        self.ext["row_layers"] += int(self.active.sum()) * self.layers
        self.ext["full_row_layers"] += sum(self.wide_layers)
        track = torch.zeros_like(self.valid)
        for index, real in filter(None, self.tracks):
            track |= torch.zeros_like(track).scatter_(1, index, real)
        return track.view(-1, self.batch, track.shape[1]).any(0)
