"""Tiny random-weight models in both layouts (no tokenizer) for loop and sampler tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from dllm.models.config import ModelConfig
from dllm.models.loading import DiffusionModel
from dllm.models.transformer import Transformer

VOCAB, MASK, EOS, PAD = 64, 63, 62, 61


def random_model(arch: str, seed: int = 0, vocab: int = VOCAB, **overrides) -> DiffusionModel:
    shifted = arch == "dream"
    fields = dict(
        arch=arch,
        d_model=32,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2 if shifted else 4,
        head_dim=8,
        mlp_hidden=64,
        vocab_size=vocab,
        rope_theta=10000.0,
        rms_eps=1e-5,
        qkv_bias=shifted,
        shift_logits=shifted,
        rope_fp32=not shifted,
        max_seq_len=256,
        mask_token_id=MASK,
        eos_token_ids=[EOS],
        pad_token_id=PAD,
    )
    fields.update(overrides)
    cfg = ModelConfig(**fields)
    torch.manual_seed(seed)
    net = Transformer(cfg).eval()
    with torch.no_grad():  # larger weights than the default init, so predictions are far from uniform
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
    return DiffusionModel(
        net=net,
        config=cfg,
        tokenizer=None,
        mask_id=MASK,
        eos_ids=[EOS],
        pad_id=PAD,
        bos_id=None,
        name=f"random-{arch}",
    )


def load_benchmark(name: str = "caches"):
    """The script ``benchmarks/NAME.py`` as a module (benchmarks/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def edit_config(folder, **changes) -> None:
    """Rewrite ``folder/config.json`` with ``changes`` (a None value removes the key)."""
    path = Path(folder) / "config.json"
    raw = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    path.write_text(json.dumps(raw))
