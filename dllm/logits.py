"""Logit rules and the token proposal: what happens to a forward's logits before a sampler sees them.

A rule is one small object, ``rule(logits, state) -> logits``, applied in order (the idea of
``transformers``' ``LogitsProcessor``: one pure rule per object, stackable). ``logit_rules``
builds the list a ``GenerationConfig`` asks for. After the rules, ``propose`` picks each
position's token (argmax, or a Gumbel-max draw at ``temperature > 0`` from noise that depends
only on the row's own step and column, so a prompt draws the same alone or in a batch),
``confidence`` is the softmax probability of that token, and ``ranking_score`` is what the
samplers rank positions by.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import GenerationConfig
from dllm.state import DecodeState, hash_uniform


@dataclass(frozen=True)
class SuppressTokens:
    """Token ids that may never be proposed: their logits become -inf."""

    token_ids: tuple[int, ...]
    why: str = ""

    def __call__(self, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
        logits[..., torch.tensor(self.token_ids, device=logits.device)] = float("-inf")
        return logits


def logit_rules(cfg: GenerationConfig, state: DecodeState) -> list:
    """The rules in the order they apply."""
    rules = [SuppressTokens((state.mask_id,), "committing a mask would undo progress")]
    if cfg.logits_eos_inf:
        rules.append(SuppressTokens(tuple(state.eos_ids), "logits_eos_inf: EOS is never proposed"))
    return rules


def apply_rules(rules, logits: torch.Tensor, state: DecodeState) -> torch.Tensor:
    for rule in rules:
        logits = rule(logits, state)
    return logits


def classifier_free_guidance(
    conditional: torch.Tensor, unconditional: torch.Tensor, scale: float
) -> torch.Tensor:
    """LLaDA's CFG: ``uncond + (scale + 1) * (cond - uncond)``."""
    return unconditional + (scale + 1) * (conditional - unconditional)


def propose(logits: torch.Tensor, state: DecodeState, cols: torch.Tensor) -> torch.Tensor:
    """[B, W] proposed tokens: the argmax, or at ``temperature > 0`` a Gumbel-max sample."""
    cfg = state.config
    if cfg.temperature <= 0:
        return logits.argmax(-1)
    vocab = torch.arange(logits.shape[-1], device=logits.device)
    noise = hash_uniform(cfg.seed, state.steps, cols - state.gen_start, vocab)
    return (logits.double() / cfg.temperature - torch.log(-torch.log(noise))).argmax(-1)


def confidence(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[B, W] softmax probability of ``tokens`` under ``logits``."""
    return torch.exp(logits.gather(-1, tokens[..., None])[..., 0] - torch.logsumexp(logits, dim=-1))


def ranking_score(conf: torch.Tensor, pred: torch.Tensor, state: DecodeState) -> torch.Tensor:
    """What samplers rank by: the confidence, with EOS/EoT pushed below every other candidate
    when ``confidence_eos_eot_inf`` is set (they stay proposable, they just come last)."""
    if state.config.confidence_eos_eot_inf:
        return torch.where(state.is_eos(pred), conf - 2.0, conf)
    return conf
