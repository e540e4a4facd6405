"""One-pass block drafting: one dLLM forward over ``context + [MASK] * k``, every position at once.

The draft is each position's argmax when the verifier is greedy; otherwise each token is drawn
independently from its own marginal q_i (the dLLM's distribution under the verifier's logits
processors), an ``independent`` proposal that the ratio rule verifies losslessly: q_i does not
depend on the other drafted tokens, so conditioning on the accepted ones leaves it unchanged
(specs/drafters.md §2.3, case 1). This is the drafting step of DEER (Cheng et al., arXiv
2512.15176, §3.2) and DiffuSpec's draft without path search (arXiv 2510.02358, "CPS off").
"""

from __future__ import annotations

from dataclasses import dataclass

from . import register
from .base import DiffusionDrafter, Proposal, eos_aware_length, stop_cut
from .verify import sample


@register("onepass")
@dataclass
class OnePassDrafter(DiffusionDrafter):
    """One dLLM forward over k masks: the argmax per position, or independent samples from the marginals."""

    def propose(self, run, requests):
        logits = self.block_logits(run, [r.context for r in requests], [r.k for r in requests])
        out = []
        for row, request in enumerate(requests):
            block = logits[row, : request.k]
            if run.sampling.greedy:
                raw, q = block.argmax(-1).tolist(), None
            else:
                q = run.sampling.probabilities(block, request.context)
                raw = [sample(q_i, request.generator) for q_i in q]
            tokens = stop_cut(raw, run.stop_ids)
            out.append(
                Proposal(
                    tokens=tokens,
                    kind="deterministic" if q is None else "independent",
                    q=None if q is None else q[: len(tokens)],
                    raw_len=len(raw),
                    gen_len=eos_aware_length(raw, run.stop_ids),
                    forwards=1,
                )
            )
        return out
