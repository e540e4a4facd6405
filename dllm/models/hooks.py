"""The per-layer hook interface of the model's forward (what an adaptive cache policy plugs in).

A cache policy that decides *inside* one forward which columns to recompute (Elastic-Cache) hands
the model a ``LayerHook`` through its ``StepPlan``; the model calls it around every layer. The
interface lives with the model, which calls it; the policies that implement it live in
``dllm.caches``.
"""

from __future__ import annotations


class LayerHook:
    """Per-layer callbacks of one forward; the base class does nothing.

    ``layer_input(layer, x, query, kv)`` runs before each layer and returns ``(x, query)``: the
    same, or a wider query (more columns, or None = all) with the matching layer inputs.
    ``attention(layer, q, query, k, lse)`` sees the layer's post-RoPE queries ``[B, Hq, Lq, D]``,
    the K buffer it attended over ``[B, Hkv, L, D]`` and the log-sum-exp ``[B, Hq, Lq]`` (None
    unless ``wants_lse(layer, query)``).
    ``recompute(layer)`` asks for the layer to be run again (after ``layer_input`` widened it).
    """

    def layer_input(self, layer, x, query, kv):
        return x, query

    def wants_lse(self, layer, query) -> bool:
        return True

    def attention(self, layer, q, query, k, lse) -> None:
        return None

    def recompute(self, layer) -> bool:
        return False
