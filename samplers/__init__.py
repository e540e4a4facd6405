"""Sampler plugins: which masked positions to commit at each denoising step.

``dllm.samplers.get("fast-dllm", threshold=0.9)`` builds one by name; the classes work directly
too. ``names()`` lists the registered plugins, ``describe()`` their parameters and ``cls(name)`` the class.
"""

from dllm.registry import Registry

_registry = Registry("sampler")
register = _registry.register
get = _registry.get
cls = _registry.cls
names = _registry.names
describe = _registry.describe

from dllm.selection import best_candidate, threshold_mask, top_k_mask  # noqa: E402  (re-exported)

from .adablock import AdaBlockSampler  # noqa: E402
from .base import Sampler, Wrapper  # noqa: E402
from .daedal import DAEDALSampler  # noqa: E402
from .eotp import EndOfTextSampler  # noqa: E402
from .fast_dllm import FastDLLMSampler  # noqa: E402
from .learn2pd import Learn2PDSampler  # noqa: E402
from .llada import LLaDASampler  # noqa: E402
from .localleap import LocalLeapSampler  # noqa: E402
from .prophet import ProphetSampler  # noqa: E402

__all__ = [
    "AdaBlockSampler",
    "DAEDALSampler",
    "EndOfTextSampler",
    "FastDLLMSampler",
    "LLaDASampler",
    "Learn2PDSampler",
    "LocalLeapSampler",
    "ProphetSampler",
    "Sampler",
    "Wrapper",
    "best_candidate",
    "cls",
    "describe",
    "get",
    "names",
    "register",
    "threshold_mask",
    "top_k_mask",
]
