"""Per-architecture configuration: read a checkpoint's native ``config.json`` into one
``ModelConfig``, and write a ``ModelConfig`` back in the native schema.

LLaDA checkpoints use OLMo field names (``d_model``, ``n_layers``, ...); Dream checkpoints use
Qwen2 names (``hidden_size``, ``num_hidden_layers``, ...). Fast-dLLM v2 checkpoints
(``model_type: Fast_dLLM_Qwen``) are Qwen2 configs plus ``bd_size``: the same transformer as
Dream with ``block_size = bd_size`` (block-causal attention over positions). The rest of the
framework only sees ``ModelConfig``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

ARCHITECTURES = ("llada", "dream", "fast_dllm_v2")
BLOCK_DIFFUSION_TYPES = ("fast_dllm_qwen",)


@dataclass
class ModelConfig:
    arch: str
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_hidden: int
    vocab_size: int
    rope_theta: float
    rms_eps: float
    qkv_bias: bool
    shift_logits: bool  # Dream: logits at column j-1 predict the token at column j
    rope_fp32: bool  # LLaDA applies RoPE in fp32; Dream in the activation dtype
    tie_embeddings: bool = False
    max_seq_len: int = 4096
    mask_token_id: int | None = None
    eos_token_ids: list[int] = field(default_factory=list)
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    block_size: int | None = None  # block-diffusion models: block-causal attention
    torch_dtype: str | None = None

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"arch {self.arch!r} is not supported; supported: {ARCHITECTURES}")
        for name in (
            "d_model",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "head_dim",
            "mlp_hidden",
            "vocab_size",
            "max_seq_len",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"model config {name}={value!r} must be a positive integer")
        if self.n_heads % self.n_kv_heads != 0:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_REQUIRED = object()


def _number(raw: dict[str, Any], key: str, arch: str, kind=int, default=_REQUIRED, positive: bool = True):
    """``raw[key]`` as ``kind``; a ValueError naming the field when it is missing (and has no default),
    not a number, not finite, or not positive."""
    import math

    value = raw.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ValueError(f"required field {key!r} is missing from the {arch} config")
        return default
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind is int and isinstance(value, float) and not value.is_integer())
    ):
        raise ValueError(f"field {key}={value!r} is not {'an integer' if kind is int else 'a number'}")
    if not math.isfinite(value):
        raise ValueError(f"field {key}={value!r} is not finite")
    if positive and value <= 0:
        raise ValueError(f"field {key}={value!r} must be positive")
    return kind(value)


def _token_id(raw: dict[str, Any], key: str, arch: str) -> int | None:
    return _number(raw, key, arch, default=None, positive=False)


def _head_dim(d_model: int, n_heads: int, width: str, heads: str) -> int:
    if d_model % n_heads:
        raise ValueError(
            f"{width}={d_model} is not divisible by {heads}={n_heads} (head size = {width} / {heads})"
        )
    return d_model // n_heads


def _as_id_list(value) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def detect_arch(raw: dict[str, Any]) -> str:
    """Architecture name from a native config dict, or a ValueError naming what was found."""
    model_type = str(raw.get("model_type", "")).lower()
    archs = [str(a).lower() for a in raw.get("architectures", []) or []]
    if model_type == "llada" or any(a.startswith("llada") for a in archs):
        return "llada"
    if model_type == "dream" or any(a.startswith("dream") for a in archs):
        return "dream"
    if model_type in BLOCK_DIFFUSION_TYPES or any(a.startswith("fast_dllm_qwen") for a in archs):
        return "fast_dllm_v2"
    raise ValueError(
        f"unsupported architecture: model_type={raw.get('model_type')!r},"
        f" architectures={raw.get('architectures')!r};"
        f" dllm loads {ARCHITECTURES} checkpoints"
    )


def from_native(raw: dict[str, Any]) -> ModelConfig:
    arch = detect_arch(raw)
    if arch == "llada":
        return _from_llada(raw)
    if arch == "fast_dllm_v2":
        return _from_fast_dllm_v2(raw)
    return _from_dream(raw)


def _from_llada(raw: dict[str, Any]) -> ModelConfig:
    if raw.get("block_type", "llama") != "llama":
        raise ValueError(f"LLaDA block_type {raw.get('block_type')!r} is not supported (only 'llama')")
    if (
        raw.get("alibi")
        or raw.get("scale_logits")
        or raw.get("input_emb_norm")
        or raw.get("attention_layer_norm")
    ):
        raise ValueError(
            "LLaDA configs with alibi, scale_logits, input_emb_norm or attention_layer_norm are not supported"
        )
    a = "LLaDA"
    d_model, n_heads = _number(raw, "d_model", a), _number(raw, "n_heads", a)
    mlp_hidden = (
        _number(raw, "mlp_hidden_size", a, default=None) or _number(raw, "mlp_ratio", a, default=4) * d_model
    )
    embedding_size = _number(raw, "embedding_size", a, default=None)
    return ModelConfig(
        arch="llada",
        d_model=d_model,
        n_layers=_number(raw, "n_layers", a),
        n_heads=n_heads,
        n_kv_heads=_number(raw, "n_kv_heads", a, default=n_heads),
        head_dim=_head_dim(d_model, n_heads, "d_model", "n_heads"),
        mlp_hidden=int(mlp_hidden),
        vocab_size=embedding_size if embedding_size is not None else _number(raw, "vocab_size", a),
        rope_theta=_number(raw, "rope_theta", a, float, default=10000.0),
        rms_eps=_number(raw, "rms_norm_eps", a, float, default=1e-5),
        qkv_bias=bool(raw.get("include_bias") or raw.get("include_qkv_bias")),
        shift_logits=False,
        rope_fp32=bool(raw.get("rope_full_precision", True)),
        tie_embeddings=bool(raw.get("weight_tying", False)),
        max_seq_len=_number(raw, "max_sequence_length", a, default=4096),
        mask_token_id=_token_id(raw, "mask_token_id", a),
        eos_token_ids=_as_id_list(raw.get("eos_token_id")),
        pad_token_id=_token_id(raw, "pad_token_id", a),
        bos_token_id=_token_id(raw, "bos_token_id", a),
        torch_dtype=raw.get("torch_dtype"),
    )


def _from_dream(raw: dict[str, Any]) -> ModelConfig:
    a = "Dream" if str(raw.get("model_type", "")).lower() == "dream" else str(raw.get("model_type"))
    d_model, n_heads = _number(raw, "hidden_size", a), _number(raw, "num_attention_heads", a)
    head_dim = _number(raw, "head_dim", a, default=None)
    return ModelConfig(
        arch="dream",
        d_model=d_model,
        n_layers=_number(raw, "num_hidden_layers", a),
        n_heads=n_heads,
        n_kv_heads=_number(raw, "num_key_value_heads", a, default=n_heads),
        head_dim=head_dim or _head_dim(d_model, n_heads, "hidden_size", "num_attention_heads"),
        mlp_hidden=_number(raw, "intermediate_size", a),
        vocab_size=_number(raw, "vocab_size", a),
        rope_theta=_number(raw, "rope_theta", a, float, default=10000.0),
        rms_eps=_number(raw, "rms_norm_eps", a, float, default=1e-6),
        qkv_bias=True,
        shift_logits=True,
        rope_fp32=False,
        tie_embeddings=bool(raw.get("tie_word_embeddings", False)),
        max_seq_len=_number(raw, "max_position_embeddings", a, default=2048),
        mask_token_id=_token_id(raw, "mask_token_id", a),
        eos_token_ids=_as_id_list(raw.get("eos_token_id")),
        pad_token_id=_token_id(raw, "pad_token_id", a),
        bos_token_id=_token_id(raw, "bos_token_id", a),
        torch_dtype=raw.get("torch_dtype"),
    )


def _rope_theta(raw: dict[str, Any]) -> float:
    params = raw.get("rope_parameters") or {}
    return float(raw.get("rope_theta") or params.get("rope_theta") or 10000.0)


def _from_fast_dllm_v2(raw: dict[str, Any]) -> ModelConfig:
    """Fast-dLLM v2 (Qwen2.5 fine-tuned into a block-diffusion LM): Dream numerics + ``bd_size``."""
    bd_size = raw.get("bd_size")
    if bd_size is None:
        raise ValueError(
            f"config.json declares a Fast-dLLM v2 model (model_type={raw.get('model_type')!r})"
            " but has no bd_size: the block size it was trained with is unknown, so it cannot be"
            " loaded as a block-diffusion model"
        )
    bd_size = _number(raw, "bd_size", str(raw.get("model_type")))
    cfg = _from_dream(raw)
    cfg.arch = "fast_dllm_v2"
    cfg.rope_theta = _rope_theta(raw)
    cfg.block_size = int(bd_size)
    return cfg


def to_native(cfg: ModelConfig) -> dict[str, Any]:
    """The config.json a published checkpoint of this architecture would carry."""
    eos = cfg.eos_token_ids[0] if len(cfg.eos_token_ids) == 1 else (cfg.eos_token_ids or None)
    if cfg.arch == "llada":
        return {
            "architectures": ["LLaDAModelLM"],
            "model_type": "llada",
            "auto_map": {
                "AutoConfig": "configuration_llada.LLaDAConfig",
                "AutoModel": "modeling_llada.LLaDAModelLM",
                "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
            },
            "activation_type": "silu",
            "alibi": False,
            "alibi_bias_max": 8.0,
            "attention_dropout": 0.0,
            "attention_layer_norm": False,
            "attention_layer_norm_with_affine": True,
            "bias_for_layer_norm": False,
            "block_group_size": 1,
            "block_type": "llama",
            "d_model": cfg.d_model,
            "embedding_dropout": 0.0,
            "embedding_size": cfg.vocab_size,
            "eos_token_id": eos,
            "flash_attention": False,
            "include_bias": False,
            "include_qkv_bias": cfg.qkv_bias,
            "init_cutoff_factor": None,
            "init_device": "meta",
            "init_fn": "mitchell",
            "init_std": 0.02,
            "input_emb_norm": False,
            "layer_norm_type": "rms",
            "layer_norm_with_affine": True,
            "mask_token_id": cfg.mask_token_id,
            "max_sequence_length": cfg.max_seq_len,
            "mlp_hidden_size": cfg.mlp_hidden,
            "mlp_ratio": max(1, cfg.mlp_hidden // cfg.d_model),
            "multi_query_attention": None,
            "n_heads": cfg.n_heads,
            "n_kv_heads": cfg.n_kv_heads,
            "n_layers": cfg.n_layers,
            "pad_token_id": cfg.pad_token_id,
            "precision": "amp_bf16",
            "residual_dropout": 0.0,
            "rms_norm_eps": cfg.rms_eps,
            "rope": True,
            "rope_full_precision": cfg.rope_fp32,
            "rope_theta": cfg.rope_theta,
            "scale_logits": False,
            "torch_dtype": cfg.torch_dtype or "float32",
            "use_cache": False,
            "vocab_size": cfg.vocab_size,
            "weight_tying": cfg.tie_embeddings,
        }
    if cfg.arch == "fast_dllm_v2":
        return _fast_dllm_v2_native(cfg, eos)
    return {
        "architectures": ["DreamModel"],
        "model_type": "Dream",
        "auto_map": {
            "AutoConfig": "configuration_dream.DreamConfig",
            "AutoModel": "modeling_dream.DreamModel",
        },
        **_qwen2_fields(cfg, eos),
        "use_cache": False,
    }


def _qwen2_fields(cfg: ModelConfig, eos) -> dict[str, Any]:
    """The Qwen2 config fields Dream and Fast-dLLM v2 checkpoints share."""
    return {
        "attention_dropout": 0.0,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": eos,
        "hidden_act": "silu",
        "hidden_size": cfg.d_model,
        "initializer_range": 0.02,
        "intermediate_size": cfg.mlp_hidden,
        "mask_token_id": cfg.mask_token_id,
        "max_position_embeddings": cfg.max_seq_len,
        "max_window_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_hidden_layers": cfg.n_layers,
        "num_key_value_heads": cfg.n_kv_heads,
        "pad_token_id": cfg.pad_token_id,
        "rms_norm_eps": cfg.rms_eps,
        "rope_scaling": None,
        "rope_theta": cfg.rope_theta,
        "sliding_window": None,
        "tie_word_embeddings": cfg.tie_embeddings,
        "torch_dtype": cfg.torch_dtype or "float32",
        "use_sliding_window": False,
        "vocab_size": cfg.vocab_size,
    }


def _fast_dllm_v2_native(cfg: ModelConfig, eos) -> dict[str, Any]:
    """The Qwen2 config of ``Efficient-Large-Model/Fast_dLLM_v2_*`` (``Fast_dLLM_QwenConfig``)
    plus ``bd_size``; ``mask_token_id`` is ours (the reference passes the mask id to ``generate``)."""
    return {
        "architectures": ["Fast_dLLM_QwenForCausalLM"],
        "model_type": "Fast_dLLM_Qwen",
        "auto_map": {
            "AutoConfig": "configuration.Fast_dLLM_QwenConfig",
            "AutoModel": "modeling.Fast_dLLM_QwenModel",
            "AutoModelForCausalLM": "modeling.Fast_dLLM_QwenForCausalLM",
        },
        "bd_size": cfg.block_size,
        **_qwen2_fields(cfg, eos),
        "layer_types": ["full_attention"] * cfg.n_layers,
        "use_cache": True,
    }


# LLaDA-8B-Instruct and Dream-v0-Instruct-7B (Qwen2.5-7B) attention / MLP / vocabulary sizes and
# special ids: ModelConfig fields of random-weight models at the real shapes (benchmarks, GPU check).
REFERENCE_LAYOUTS = {
    "llada-8b": dict(
        arch="llada",
        d_model=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        head_dim=128,
        mlp_hidden=12288,
        vocab_size=126464,
        rope_theta=500000.0,
        rms_eps=1e-5,
        qkv_bias=False,
        shift_logits=False,
        rope_fp32=True,
        max_seq_len=4096,
        mask_token_id=126336,
        eos_token_ids=[126081],
        pad_token_id=126081,
    ),
    "dream-7b": dict(
        arch="dream",
        d_model=3584,
        n_layers=28,
        n_heads=28,
        n_kv_heads=4,
        head_dim=128,
        mlp_hidden=18944,
        vocab_size=152064,
        rope_theta=1000000.0,
        rms_eps=1e-6,
        qkv_bias=True,
        shift_logits=True,
        rope_fp32=False,
        max_seq_len=4096,
        mask_token_id=151666,
        eos_token_ids=[151643],
        pad_token_id=151643,
    ),
}


def small_layout(arch: str, tokenizer, *, d_model: int, n_layers: int, rms_eps: float) -> ModelConfig:
    """A small LLaDA or Dream layout over ``tokenizer``'s vocabulary and special ids, for
    random-weight models that exercise the plumbing: 4 heads; Dream with 2 K/V heads, QKV bias,
    shifted logits and RoPE in the model dtype, as the real checkpoints have."""
    dream = arch == "dream"
    return ModelConfig(
        arch=arch,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=4,
        n_kv_heads=2 if dream else 4,
        head_dim=d_model // 4,
        mlp_hidden=2 * d_model,
        vocab_size=len(tokenizer),
        rope_theta=10000.0,
        rms_eps=rms_eps,
        qkv_bias=dream,
        shift_logits=dream,
        rope_fp32=not dream,
        max_seq_len=512,
        mask_token_id=tokenizer.mask_token_id,
        eos_token_ids=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
