"""Checkpoint tensor names of each architecture, mapped to the one ``Transformer``'s names."""

from __future__ import annotations

import re

# (native pattern, internal pattern); {i} is the layer index.
_LLADA = [
    ("model.transformer.wte.weight", "embed.weight"),
    ("model.transformer.ln_f.weight", "norm.weight"),
    ("model.transformer.ff_out.weight", "lm_head.weight"),
    ("model.transformer.blocks.{i}.attn_norm.weight", "layers.{i}.attn_norm.weight"),
    ("model.transformer.blocks.{i}.q_proj.weight", "layers.{i}.q.weight"),
    ("model.transformer.blocks.{i}.k_proj.weight", "layers.{i}.k.weight"),
    ("model.transformer.blocks.{i}.v_proj.weight", "layers.{i}.v.weight"),
    ("model.transformer.blocks.{i}.q_proj.bias", "layers.{i}.q.bias"),
    ("model.transformer.blocks.{i}.k_proj.bias", "layers.{i}.k.bias"),
    ("model.transformer.blocks.{i}.v_proj.bias", "layers.{i}.v.bias"),
    ("model.transformer.blocks.{i}.attn_out.weight", "layers.{i}.o.weight"),
    ("model.transformer.blocks.{i}.ff_norm.weight", "layers.{i}.mlp_norm.weight"),
    ("model.transformer.blocks.{i}.ff_proj.weight", "layers.{i}.gate.weight"),
    ("model.transformer.blocks.{i}.up_proj.weight", "layers.{i}.up.weight"),
    ("model.transformer.blocks.{i}.ff_out.weight", "layers.{i}.down.weight"),
]

_DREAM = [
    ("model.embed_tokens.weight", "embed.weight"),
    ("model.norm.weight", "norm.weight"),
    ("lm_head.weight", "lm_head.weight"),
    ("model.layers.{i}.input_layernorm.weight", "layers.{i}.attn_norm.weight"),
    ("model.layers.{i}.self_attn.q_proj.weight", "layers.{i}.q.weight"),
    ("model.layers.{i}.self_attn.k_proj.weight", "layers.{i}.k.weight"),
    ("model.layers.{i}.self_attn.v_proj.weight", "layers.{i}.v.weight"),
    ("model.layers.{i}.self_attn.q_proj.bias", "layers.{i}.q.bias"),
    ("model.layers.{i}.self_attn.k_proj.bias", "layers.{i}.k.bias"),
    ("model.layers.{i}.self_attn.v_proj.bias", "layers.{i}.v.bias"),
    ("model.layers.{i}.self_attn.o_proj.weight", "layers.{i}.o.weight"),
    ("model.layers.{i}.post_attention_layernorm.weight", "layers.{i}.mlp_norm.weight"),
    ("model.layers.{i}.mlp.gate_proj.weight", "layers.{i}.gate.weight"),
    ("model.layers.{i}.mlp.up_proj.weight", "layers.{i}.up.weight"),
    ("model.layers.{i}.mlp.down_proj.weight", "layers.{i}.down.weight"),
]

NAME_MAPS = {"llada": _LLADA, "dream": _DREAM, "fast_dllm_v2": _DREAM}  # Fast-dLLM v2: Qwen2 names


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(r"\{i\}", r"(\d+)") + "$")


def _translate(name: str, pairs: list[tuple[str, str]]) -> str | None:
    for source, target in pairs:
        match = _compile(source).match(name)
        if match:
            return target.replace("{i}", match.group(1)) if match.groups() else target
    return None


def to_internal(arch: str, state: dict) -> tuple[dict, list[str]]:
    """Rename a native state dict; returns (renamed, names that matched no rule)."""
    renamed, unknown = {}, []
    for name, tensor in state.items():
        target = _translate(name, NAME_MAPS[arch])
        if target is None:
            unknown.append(name)
        else:
            renamed[target] = tensor
    return renamed, unknown


def to_native(arch: str, state: dict) -> dict:
    reverse = [(internal, native) for native, internal in NAME_MAPS[arch]]
    out = {}
    for name, tensor in state.items():
        target = _translate(name, reverse)
        if target is None:
            raise KeyError(f"internal tensor {name!r} has no {arch} checkpoint name")
        out[target] = tensor
    return out
