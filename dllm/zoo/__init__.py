"""Shipped tiny models and the code that builds them (tokenizer, training recipes).

Each shipped model is a checkpoint folder in the native layout of its architecture under
``dllm/zoo/models/<name>/``, loadable offline with ``dllm.load("<name>")``; Learn2PD filters live
under ``dllm/zoo/filters/<model>/`` and the shared tokenizer under ``dllm/zoo/tokenizer/``.

The lookup of those files is :mod:`dllm.shipped` (a leaf of the core: the loader and the samplers
find shipped data without importing the recipes); its names are re-exported here.
"""

from __future__ import annotations

from dllm.shipped import (
    FILTERS,
    MODELS,
    TOKENIZER,
    shipped_filters,
    shipped_models,
    shipped_path,
    tokenizer_dir,
)

__all__ = [
    "FILTERS",
    "FILTERS_DIR",
    "MODELS",
    "MODELS_DIR",
    "TOKENIZER",
    "shipped_filters",
    "shipped_models",
    "shipped_path",
    "tokenizer_dir",
]

MODELS_DIR = shipped_path(MODELS)  # where the training recipes write new shipped models
FILTERS_DIR = shipped_path(FILTERS)  # where ``python -m dllm.zoo.learn2pd_train`` writes filters
