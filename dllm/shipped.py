"""Where the shipped data is: tiny checkpoints, Learn2PD filters and the shared tokenizer.

The files live in the ``dllm.zoo`` package folder (``dllm/zoo/models/<name>/``,
``dllm/zoo/filters/<model>/``, ``dllm/zoo/tokenizer/``), next to the recipes that build them; this
module only finds them. Everything that looks for shipped data goes through :func:`shipped_path`
(``importlib.resources`` on the ``dllm`` package), so a wheel install finds the same files as the
checkout.

A leaf of the core: it imports nothing of dllm, so the model loader, the samplers and the
evaluation harness can find shipped files without importing the training recipes.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

MODELS, FILTERS, TOKENIZER = "models", "filters", "tokenizer"
_FOLDER = "zoo"  # the package folder holding the shipped data


def shipped_path(*parts: str) -> Path:
    """A file or folder shipped inside the ``dllm.zoo`` package (it may not exist)."""
    root = resources.files("dllm").joinpath(_FOLDER)
    if not isinstance(root, Path):  # e.g. imported from a zip: checkpoints need real files
        raise RuntimeError(f"dllm's shipped data needs an unpacked installation; dllm.zoo is at {root}")
    return root.joinpath(*parts)


def shipped_models() -> dict[str, Path]:
    """Names of the shipped checkpoint folders that are present in this installation."""
    return _folders_with(shipped_path(MODELS), "config.json")


def shipped_filters() -> dict[str, Path]:
    """Models with a shipped Learn2PD filter -> the filter's folder."""
    return _folders_with(shipped_path(FILTERS), "filter.json")


def tokenizer_dir() -> Path:
    """The shipped tokenizer folder (``AutoTokenizer.from_pretrained`` reads it)."""
    return shipped_path(TOKENIZER)


def _folders_with(folder: Path, marker: str) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / marker).exists()}
