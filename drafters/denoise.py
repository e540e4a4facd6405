"""Any dLLM with any registered sampler and cache as a multi-step drafter.

Each round runs ``dllm.generate`` over ``context + [MASK] * k`` (one block of length k) with the
named sampler and cache, e.g. Fast-dLLM's threshold rule, and proposes the denoised block cut
after its first stop token. Every sampler of the project thereby becomes a drafter; drafter
forwards are the generation's NFE. Multi-step denoising is a deterministic function of the
context (greedy denoising), so sampling verification uses the point-mass rule: the final-pass
marginals are not the distributions the tokens were drawn from (specs/drafters.md §2.3, case 3).
Rows asking for different k are generated in separate calls, so a row's draft never depends on
the rest of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import register
from .base import DiffusionDrafter, Proposal, eos_aware_length, stop_cut


@register("dllm")
@dataclass
class DenoisingDrafter(DiffusionDrafter):
    """A dLLM decoding k masks with any registered sampler and cache; the block is the draft."""

    sampler: str = "fast-dllm"
    sampler_params: dict = field(default_factory=dict)
    cache: str = "none"
    cache_params: dict = field(default_factory=dict)

    def __post_init__(self):
        from dllm.caches import get as get_cache
        from dllm.samplers import get as get_sampler

        self.sampler_obj = get_sampler(self.sampler, **self.sampler_params)
        self.cache_obj = get_cache(self.cache, **self.cache_params)
        if self.sampler_obj.changes_length():
            raise ValueError(
                f"drafter 'dllm': sampler {self.sampler!r} changes the canvas length, but a drafter must"
                " fill exactly the k masks it is given; choose a sampler with a fixed canvas"
            )

    def propose(self, run, requests):
        from dllm.generate import generate

        out = {}
        for k in sorted({r.k for r in requests}):
            group = [r for r in requests if r.k == k]
            results = generate(
                run.dlm,
                [r.context for r in group],
                sampler=self.sampler_obj,
                cache=self.cache_obj,
                gen_length=k,
                block_length=k,
            )
            for request, result in zip(group, results):
                raw = result.canvas
                tokens = stop_cut(run.vocab.usable_prefix(raw), run.stop_ids)
                out[id(request)] = Proposal(
                    tokens=tokens,
                    kind="deterministic",
                    raw_len=len(raw),
                    gen_len=eos_aware_length(raw, run.stop_ids),
                    forwards=result.nfe,
                )
        return [out[id(r)] for r in requests]
