"""Prompts from users: text or token ids in, checked token id lists out."""

from __future__ import annotations

from typing import Sequence

import torch


def encode_prompts(model, prompts, chat: bool = False) -> list[list[int]]:
    """One prompt or a batch (text or token ids) -> checked token id lists, one per prompt."""
    if isinstance(prompts, str) or (isinstance(prompts, Sequence) and prompts and isinstance(prompts[0], int)):
        prompts = [prompts]
    if torch.is_tensor(prompts):
        prompts = prompts.tolist()
    if not prompts:
        raise ValueError("no prompts given")
    encoded = []
    for prompt in prompts:
        ids = model.encode(prompt, chat=chat) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise ValueError("empty prompt: a prompt needs at least one token")
        bad = [t for t in ids if not 0 <= t < model.config.vocab_size]
        if bad:
            raise ValueError(f"prompt token ids {bad[:5]} are outside the vocabulary of size {model.config.vocab_size}")
        encoded.append(ids)
    return encoded
