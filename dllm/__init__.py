"""dllm: fast decoding for diffusion language models.

import dllm
model = dllm.load("tiny-llada")
[result] = dllm.generate(model, "reverse: Emma, Liam, Noah\n", sampler="fast-dllm", gen_length=32)
print(result.text, result.nfe, result.tokens_per_forward)
"""

from dllm import caches, samplers  # the registries
from dllm.config import GenerationConfig
from dllm.generate import StepEvent, generate
from dllm.metrics import GenerationResult, StepRecord
from dllm.models import DiffusionModel, load
from dllm.prompts import encode_prompts

__version__ = "0.1.0"

__all__ = [
    "DiffusionModel",
    "GenerationConfig",
    "GenerationResult",
    "StepEvent",
    "StepRecord",
    "caches",
    "drafters",
    "encode_prompts",
    "generate",
    "load",
    "samplers",
    "speculate",
]


def __getattr__(name: str):
    """``dllm.drafters`` and ``dllm.speculate`` load on first use: every module of dllm runs this
    file first, and the core (the loop, the models, the engine) does not need the drafters."""
    if name in ("drafters", "speculate"):
        import dllm.drafters as drafters

        return drafters if name == "drafters" else drafters.speculate
    raise AttributeError(f"module 'dllm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
