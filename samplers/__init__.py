"""Sampler plugins: which masked positions to commit at each denoising step.

``dllm.samplers.get("fast-dllm", threshold=0.9)`` builds one by name; the classes work directly
too. ``names()`` lists the registered plugins and ``describe()`` their parameters.
"""

from dllm.registry import Registry

_registry = Registry("sampler")
register = _registry.register
get = _registry.get
names = _registry.names
describe = _registry.describe

from .base import Sampler, best_candidate, threshold_mask, top_k_mask  # noqa: E402
from .fast_dllm import FastDLLMSampler  # noqa: E402
from .llada import LLaDASampler  # noqa: E402

__all__ = ["FastDLLMSampler", "LLaDASampler", "Sampler", "best_candidate", "describe", "get", "names",
           "register", "threshold_mask", "top_k_mask"]
