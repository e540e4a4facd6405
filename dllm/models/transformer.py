"""One transformer for every supported dLLM checkpoint (LLaDA, Dream, Fast-dLLM v2).

Fast-dLLM v2 is Dream's network with ``cfg.block_size`` set: attention is block-causal over
the RoPE positions (a query in block ``pos // block_size`` sees keys of its own and earlier
blocks), so the K/V of a finished block never change and a forward over a multi-block prompt is
the reference's prefill. Training layouts that no position rule expresses (``[x_t ; x_0]``)
pass an explicit ``attn_mask``.

The forward computes only the canvas columns a plan asks for (``query``), writes their K/V
(post-RoPE) into full-length, position-indexed per-layer buffers when a ``KVStore`` is given,
attends over those buffers through ``attend()`` (``dllm.models.attention``), and projects to the
vocabulary only the columns whose logits are needed. Dream's one-position logit shift is
applied here: ``logits_for`` names *target* columns and the model reads the hidden state of
the column that predicts each of them.

A ``LayerHook`` (``dllm.models.hooks``; cache policies that adapt inside one forward, e.g.
Elastic-Cache) sees each layer's input and its attention (queries, K buffer, log-sum-exp) and
may widen the set of recomputed columns from any layer on, or ask for the current layer to be
recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import attend
from .config import ModelConfig
from .hooks import LayerHook


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in fp32, cast back, then scale: the order both reference implementations use.
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and *signed* sin ``[B, 1, Lq, D]`` in fp32 for integer positions ``[B, Lq]``.

    Rotate-half RoPE is ``t * cos + cat(-t2, t1) * sin``; with the sign folded into the table
    (``cat(-sin, sin)``) the second term is ``roll(t, D/2) * signed_sin``, which gives the same
    bits with fewer operators per layer (a sign flip is exact)."""
    inv_freq = 1.0 / (
        theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    )
    freqs = positions.float()[..., None] * inv_freq
    sin = freqs.sin()
    return torch.cat([freqs, freqs], dim=-1)[:, None].cos(), torch.cat([-sin, sin], dim=-1)[:, None]


def apply_rope(t: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor, fp32: bool) -> torch.Tensor:
    if fp32 and t.dtype != torch.float32:
        tf = t.float()
        return (tf * cos + tf.roll(t.shape[-1] // 2, -1) * signed_sin).to(t.dtype)
    if t.dtype != cos.dtype:
        cos, signed_sin = cos.to(t.dtype), signed_sin.to(t.dtype)
    return t * cos + t.roll(t.shape[-1] // 2, -1) * signed_sin


@dataclass
class KVStore:
    """Per-layer K/V buffers ``[B, Hkv, L, D]``, K stored after RoPE, indexed by canvas column."""

    k: list[torch.Tensor]
    v: list[torch.Tensor]

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, length: int, dtype, device) -> "KVStore":
        shape = (batch, cfg.n_kv_heads, length, cfg.head_dim)
        return cls(
            k=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)],
            v=[torch.zeros(shape, dtype=dtype, device=device) for _ in range(cfg.n_layers)],
        )

    @property
    def length(self) -> int:
        return self.k[0].shape[2]


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.d_model, cfg.head_dim
        self.attn_norm = RMSNorm(d, cfg.rms_eps)
        self.q = nn.Linear(d, cfg.n_heads * hd, bias=cfg.qkv_bias)
        self.k = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.v = nn.Linear(d, cfg.n_kv_heads * hd, bias=cfg.qkv_bias)
        self.o = nn.Linear(cfg.n_heads * hd, d, bias=False)
        self.mlp_norm = RMSNorm(d, cfg.rms_eps)
        self.gate = nn.Linear(d, cfg.mlp_hidden, bias=False)
        self.up = nn.Linear(d, cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, d, bias=False)

    def forward(
        self,
        x,
        cos,
        sin,
        q_positions,
        *,
        layer,
        query,
        positions,
        key_valid,
        kv,
        attention_backend,
        hook=None,
        attn_mask=None,
        key_end=None,
        query_span=None,
    ):
        cfg = self.cfg
        batch, n_q, _ = x.shape
        h = self.attn_norm(x)
        q = self.q(h).view(batch, n_q, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k = self.k(h).view(batch, n_q, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v(h).view(batch, n_q, cfg.n_kv_heads, cfg.head_dim).transpose(1, 2)
        q = apply_rope(q, cos, sin, cfg.rope_fp32)
        k = apply_rope(k, cos, sin, cfg.rope_fp32)
        if kv is not None:
            if query is None:
                kv.k[layer].copy_(k)
                kv.v[layer].copy_(v)
            elif query_span is not None:
                kv.k[layer][:, :, query_span[0] : query_span[1]].copy_(k)
                kv.v[layer][:, :, query_span[0] : query_span[1]].copy_(v)
            else:
                index = query[:, None, :, None].expand(-1, cfg.n_kv_heads, -1, cfg.head_dim)
                kv.k[layer].scatter_(2, index, k.to(kv.k[layer].dtype))
                kv.v[layer].scatter_(2, index, v.to(kv.v[layer].dtype))
            k, v = kv.k[layer], kv.v[layer]
            if key_end is not None:  # block-causal: the keys after the queries' last block are invisible
                k, v, positions = k[:, :, :key_end], v[:, :, :key_end], positions[:, :key_end]
                key_valid = None if key_valid is None else key_valid[:, :key_end]
        want_lse = hook is not None and hook.wants_lse(layer, query)
        out = attend(
            q,
            k,
            v,
            q_pos=q_positions,
            k_pos=positions,
            k_valid=key_valid,
            block_size=None if attn_mask is not None else cfg.block_size,
            return_lse=want_lse,
            backend=attention_backend,
            attn_mask=attn_mask,
        )
        if want_lse:
            out, lse = out
        if hook is not None:
            hook.attention(layer, q, query, k, lse if want_lse else None)
        x = x + self.o(out.transpose(1, 2).reshape(batch, n_q, cfg.n_heads * cfg.head_dim))
        m = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(m)) * self.up(m))


class Transformer(nn.Module):
    """Bidirectional (or block-causal) transformer with LLaDA / Dream numerics."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layers)])
        self.norm = RMSNorm(cfg.d_model, cfg.rms_eps)
        self.lm_head = None if cfg.tie_embeddings else nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        key_valid: torch.Tensor | None = None,
        *,
        query: torch.Tensor | None = None,
        kv: KVStore | None = None,
        logits_for: torch.Tensor | None = None,
        attention_backend: str | None = None,
        hook: LayerHook | None = None,
        attn_mask: torch.Tensor | None = None,
        padded: bool | None = None,
        check_sources: bool = True,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        query_span: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Logits for the target columns ``logits_for [B, Lg]`` (the queried columns when None).

        ``tokens``, ``positions`` (RoPE position ids) and ``key_valid`` are ``[B, L]`` over the
        whole canvas; ``query [B, Lq]`` lists the columns to recompute (None = all). A partial
        query needs ``kv``: the other columns' K/V are read from it. Padding entries of ``query``
        must repeat a real column of the same row (they then write identical K/V). ``hook``:
        per-layer callbacks (see ``LayerHook``); it needs ``kv``. ``attn_mask [B, 1, Lq, L]`` (bool,
        True = may attend) replaces the block-causal rule (combined with ``key_valid``); training only.

        Each of these host checks waits for the device; a caller that knows the answers skips them
        (the decoding loop does, see ``generate.ModelStep``): ``padded`` says whether ``key_valid``
        has a False entry (None: look), and ``check_sources=False`` trusts that ``query`` holds
        every column whose hidden state a logit needs. ``rope``: the RoPE tables of every canvas
        column (``rope_tables(positions)``), built once per canvas layout by a caller that runs many
        forwards over one (the decoding loop); the queried columns' are gathered from it.
        ``query_span=(start, end)``: every row's ``query`` is the columns ``start .. end - 1`` in
        order, so K/V are written by a slice copy instead of a scatter (ignored with a hook, which
        may widen the query).
        """
        batch, length = tokens.shape
        if positions is None:
            positions = torch.arange(length, device=tokens.device).expand(batch, -1)
        if (query is not None or hook is not None) and kv is None:
            raise ValueError("a forward over a subset of columns (or with a layer hook) needs a KVStore")
        if kv is not None and kv.length != length:
            raise ValueError(f"KV store holds {kv.length} columns but the canvas has {length}")
        if padded is None:
            padded = key_valid is not None and not bool(key_valid.all())
        if not padded:
            key_valid = None  # no padding: attention without a mask is the same and cheaper
        x = self.embed(tokens if query is None else tokens.gather(1, query))
        canvas_rope = rope
        rope = self._rope(positions, query, canvas_rope)
        plain = kv is not None and hook is None and attn_mask is None
        key_end = self._key_end(positions, rope[2]) if plain else None
        run = dict(
            positions=positions,
            key_valid=key_valid,
            kv=kv,
            attention_backend=attention_backend,
            hook=hook,
            key_end=key_end,
            attn_mask=attn_mask,
            query_span=query_span if hook is None else None,
        )
        for layer, block in enumerate(self.layers):
            if hook is not None:
                x, query, rope = self._layer_input(hook, layer, x, query, kv, positions, rope, canvas_rope)
            out = block(x, *rope, layer=layer, query=query, **run)
            if hook is not None and hook.recompute(layer):  # the hook widened this layer: run it again
                x, query, rope = self._layer_input(hook, layer, x, query, kv, positions, rope, canvas_rope)
                out = block(x, *rope, layer=layer, query=query, **run)
            x = out
        rows = self._source_rows(logits_for, query, batch, length, check_sources)
        if rows is not None:
            x = x.gather(1, rows[..., None].expand(-1, -1, x.shape[-1]))
        x = self.norm(x)
        weight = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return F.linear(x, weight)

    def _key_end(self, positions, q_positions) -> int | None:
        """Block-causal models: the canvas columns before which every key any query can see lies
        (None: all of them), so attention skips the masked blocks after the queries."""
        bd = self.cfg.block_size
        if bd is None:
            return None
        last_block = (q_positions // bd).max(1, keepdim=True).values
        visible = (positions // bd) <= last_block
        end = int((visible * torch.arange(1, positions.shape[1] + 1, device=positions.device)).max())
        return None if end >= positions.shape[1] else end

    def _layer_input(self, hook, layer, x, query, kv, positions, rope, canvas_rope):
        x, widened = hook.layer_input(layer, x, query, kv)
        return x, widened, (rope if widened is query else self._rope(positions, widened, canvas_rope))

    def rope_tables(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and signed sin ``[B, 1, L, D]`` of ``positions [B, L]`` (see ``rope_tables``)."""
        return rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta)

    def _rope(self, positions, query, canvas_rope=None):
        """(cos, sin, q_positions) for the queried columns (gathered from ``canvas_rope`` if given)."""
        q_positions = positions if query is None else positions.gather(1, query)
        if canvas_rope is None:
            return (*self.rope_tables(q_positions), q_positions)
        if query is None:
            return (*canvas_rope, q_positions)
        index = query[:, None, :, None].expand(-1, 1, -1, canvas_rope[0].shape[-1])
        return (*(table.gather(2, index) for table in canvas_rope), q_positions)

    def _source_rows(self, logits_for, query, batch, length, check=True):
        """Rows of the computed hidden states that predict each target column (None = all, unshifted)."""
        shift = 1 if self.cfg.shift_logits else 0
        if logits_for is None:
            if shift == 0:
                return None
            all_columns = torch.arange(length, device=self.embed.weight.device).expand(batch, -1)
            logits_for = query if query is not None else all_columns
        source = (logits_for - shift).clamp(min=0)
        if query is None:
            return source
        lookup = torch.full((query.shape[0], length), -1, dtype=torch.long, device=query.device)
        lookup.scatter_(1, query, torch.arange(query.shape[1], device=query.device).expand_as(query))
        rows = lookup.gather(1, source)
        if not check:
            return rows.clamp(min=0)
        if (rows < 0).any():
            missing = source[rows < 0][:4].tolist()
            raise ValueError(
                f"the plan did not compute columns {missing} whose hidden states are needed for logits"
                + (" (shifted-logit model: column j needs j-1)" if shift else "")
            )
        return rows
