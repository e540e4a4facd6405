"""DEER: a diffusion drafter aligned to its verifier drafts a whole block in one denoising step.

The drafting rule is ``onepass``'s: one forward over ``context + [MASK] * k`` gives per-position
marginals q_i; the draft is their argmax when the verifier is greedy, else an independent sample
from each q_i, verified by the ratio rule (lossless: q_i does not depend on the other drafted
tokens). What makes it DEER is the model: one trained by ``python -m dllm.zoo.deer`` on the
verifier's own answers (Stage I continuation distillation, Stage II prefix-conditioned refinement),
shipped as ``tiny-deer``. Blocks of up to 32 tokens (the paper's largest), ``k = 32`` by default.

Source: Cheng et al., "DEER: Draft with Diffusion, Verify with Autoregressive Models" (arXiv
2512.15176), §3.2, Alg. 1. Deviation: no ``[SEP]`` after the block (see ``dllm.zoo.deer``).
"""

from __future__ import annotations

from dataclasses import dataclass

from . import register
from .onepass import OnePassDrafter


@register("deer")
@dataclass
class DeerDrafter(OnePassDrafter):
    """DEER: one-step block drafting with a dLLM aligned to the verifier (the shipped tiny-deer)."""

    model: object = "tiny-deer"
    k: int = 32

    def __post_init__(self):
        from dllm.config import check_range

        check_range("deer", "k", self.k, 1)

    def default_length(self):
        from .length import FixedLength

        return FixedLength(k=self.k)
