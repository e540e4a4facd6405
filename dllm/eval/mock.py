"""Tiny random-weight dLLMs with the shipped tokenizer: spec model names ``random:llada`` / ``random:dream``.

They read and write real text, so the whole harness (runner, lm-eval adapter, data parallel)
runs end to end in seconds on a CPU before any trained checkpoint exists. Their answers are
noise; only the plumbing is being tested.
"""

from __future__ import annotations

import torch

from dllm.models.config import small_layout
from dllm.models.loading import DiffusionModel
from dllm.models.transformer import Transformer
from dllm.shipped import tokenizer_dir

PREFIX = "random:"


def random_model(
    arch: str = "llada",
    seed: int = 0,
    d_model: int = 32,
    n_layers: int = 2,
    device: str | torch.device = "cpu",
) -> DiffusionModel:
    """A ``DiffusionModel`` with random weights (seeded) in the ``arch`` layout and the shipped tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    cfg = small_layout(arch, tok, d_model=d_model, n_layers=n_layers, rms_eps=1e-5)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the default init must not move the caller's RNG
        net = Transformer(cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.dim() > 1:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.3)
            elif "norm" in name:
                p.fill_(1.0)
            else:
                p.zero_()
    net = net.eval().to(device)
    model = DiffusionModel(
        net=net,
        config=cfg,
        tokenizer=tok,
        mask_id=tok.mask_token_id,
        eos_ids=[tok.eos_token_id],
        pad_id=tok.pad_token_id,
        bos_id=tok.bos_token_id,
        name=f"{PREFIX}{arch}",
    )
    model.fingerprint = f"{PREFIX}{arch}:{seed}:{d_model}x{n_layers}"
    return model


def from_name(name: str, device: str | torch.device = "cpu") -> DiffusionModel:
    """``random:llada`` / ``random:dream`` / ``random:llada:SEED``."""
    parts = name[len(PREFIX) :].split(":")
    arch = parts[0] or "llada"
    seed = int(parts[1]) if len(parts) > 1 else 0
    return random_model(arch, seed=seed, device=device)
