"""dllm: fast decoding for diffusion language models.

import dllm
model = dllm.load("tiny-llada")
[result] = dllm.generate(model, "reverse: Emma, Liam, Noah\n", sampler="fast-dllm", gen_length=32)
print(result.text, result.nfe, result.tokens_per_forward)
"""

from dllm import (  # noqa: E402  (registries; import after the core)
    caches,
    drafters,  # noqa: E402
    samplers,
)
from dllm.config import GenerationConfig
from dllm.drafters import speculate  # noqa: E402
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
