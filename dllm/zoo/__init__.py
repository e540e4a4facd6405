"""Shipped tiny models and the code that builds them (tokenizer, training recipes).

Each shipped model is a checkpoint folder in the native layout of its architecture under
``dllm/zoo/models/<name>/``, loadable offline with ``dllm.load("<name>")``; Learn2PD filters live
under ``dllm/zoo/filters/<model>/`` and the shared tokenizer under ``dllm/zoo/tokenizer/``.

Everything that looks for shipped data goes through :func:`shipped_path` (``importlib.resources``
on this package), so a wheel install finds the same files as the checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

MODELS, FILTERS, TOKENIZER = "models", "filters", "tokenizer"


def shipped_path(*parts: str) -> Path:
    """A file or folder shipped inside the ``dllm.zoo`` package (it may not exist)."""
    root = resources.files(__name__)
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


MODELS_DIR = shipped_path(MODELS)  # where the training recipes write new shipped models
FILTERS_DIR = shipped_path(FILTERS)  # where ``python -m dllm.zoo.learn2pd_train`` writes filters
