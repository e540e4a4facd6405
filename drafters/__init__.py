"""Drafters: models that propose tokens for an autoregressive verifier (speculative decoding).

``dllm.drafters.get("diffuspec", model="tiny-dream")`` builds one by name; ``names()`` and
``describe()`` list them. ``dllm.speculate(verifier, prompts, drafter=...)`` runs the draft–verify
loop (``loop.py``) with the verification rules of ``verify.py`` and the draft-length controllers
of ``length.py``.
"""

import dataclasses

from dllm.registry import Registry

_registry = Registry("drafter")
register = _registry.register
get = _registry.get
names = _registry.names
describe = _registry.describe

from . import length  # noqa: E402


def build(name: str | None, params: dict | None = None, length_name: str | None = None, length_params=None):
    """A drafter and its draft-length controller by name (``None`` / ``"none"``: plain AR decoding,
    ``(None, None)``); the controller is ``length_name``'s, or the drafter's own (``default_length``,
    what ``speculate`` uses when given none), with ``length_params`` applied. A parameter of the
    wrong type is a ``ValueError`` naming the parameters."""
    if name is None or name.lower() == "none":
        return None, None
    try:
        drafter = get(name, **(params or {}))
        if length_name is not None:
            controller = length.get(length_name, **(length_params or {}))
        else:  # the drafter's own controller (its settings, e.g. DEER's k), with length_params on top
            own = drafter.default_length()
            settings = {f.name: getattr(own, f.name) for f in dataclasses.fields(own) if f.init}
            controller = length.get(type(own), **{**settings, **(length_params or {})})
    except TypeError as exc:  # a value of the wrong type, e.g. a string compared with a number
        raise ValueError(f"bad drafter or length-controller parameter: {exc}") from exc
    return drafter, controller


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
    "build",
    "describe",
    "get",
    "length",
    "names",
    "register",
    "speculate",
]
