"""Shipped tiny models and the code that builds them (tokenizer, training recipes).

Each shipped model is a checkpoint folder in the native layout of its architecture under
``dllm/zoo/models/<name>/``, loadable offline with ``dllm.load("<name>")``.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).parent / "models"


def shipped_models() -> dict[str, Path]:
    """Names of the shipped checkpoint folders that are present in this installation."""
    if not MODELS_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(MODELS_DIR.iterdir()) if (p / "config.json").exists()}
