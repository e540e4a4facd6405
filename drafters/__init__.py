"""Drafters: models that propose tokens for an autoregressive verifier (speculative decoding).

``dllm.drafters.get("diffuspec", model="tiny-dream")`` builds one by name; ``names()`` and
``describe()`` list them. ``dllm.speculate(verifier, prompts, drafter=...)`` runs the draft–verify
loop (``loop.py``) with the verification rules of ``verify.py`` and the draft-length controllers
of ``length.py``.
"""

from dllm.registry import Registry

_registry = Registry("drafter")
register = _registry.register
get = _registry.get
names = _registry.names
describe = _registry.describe

from . import length  # noqa: E402
from .ar import ARDrafter  # noqa: E402
from .base import DiffusionDrafter, Drafter, DraftRequest, Proposal, Sampling, VocabMap  # noqa: E402
from .deer import DeerDrafter  # noqa: E402
from .denoise import DenoisingDrafter  # noqa: E402
from .diffuspec import DiffuSpecDrafter  # noqa: E402
from .loop import SpeculativeConfig, speculate  # noqa: E402
from .onepass import OnePassDrafter  # noqa: E402

__all__ = [
    "ARDrafter",
    "DeerDrafter",
    "DenoisingDrafter",
    "DiffuSpecDrafter",
    "DiffusionDrafter",
    "DraftRequest",
    "Drafter",
    "OnePassDrafter",
    "Proposal",
    "Sampling",
    "SpeculativeConfig",
    "VocabMap",
    "describe",
    "get",
    "length",
    "names",
    "register",
    "speculate",
]
