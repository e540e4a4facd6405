"""The model layer: one transformer, per-architecture configs and weight-name maps, loading."""

from .config import ModelConfig
from .hooks import LayerHook
from .loading import CausalLM, DiffusionModel, load, save_pretrained
from .transformer import KVStore, Transformer

__all__ = [
    "CausalLM",
    "DiffusionModel",
    "KVStore",
    "LayerHook",
    "ModelConfig",
    "Transformer",
    "load",
    "save_pretrained",
]
