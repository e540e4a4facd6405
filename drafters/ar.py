"""The classic speculative-decoding drafter: a smaller causal LM drafting token by token.

Each round the drafter's own KV cache is rolled back to the longest prefix it shares with the
committed tokens, the uncached tail is fed, then ``k`` tokens are drafted one forward each: the
argmax when the verifier is greedy (or ``greedy=True``: then a deterministic proposal), else a
sample from q = the drafter's distribution under the verifier's logits processors (``sequential``
proposals: token i is drawn given tokens < i). A row's draft also ends after its first token whose
probability (q's, or the softmax of the drafter's logits when drafting the argmax) is below the
request's ``stop_below``, as transformers' ``ConfidenceCriteria`` ends an assistant's draft; each
token's probability is reported in ``Proposal.confidence``.

Source: Leviathan et al. 2023 (arXiv 2211.17192), Chen et al. 2023 (arXiv 2302.01318); the same
loop as ``transformers``' ``generate(assistant_model=...)``. This drafter's default draft length is
transformers' former heuristic schedule (+2/−1 from 5), ``dllm.drafters.length.HeuristicLength``; not
transformers' current default for assisted generation, which is 20 draft tokens with an adaptive
confidence threshold of 0.4 (``num_assistant_tokens=20``, ``assistant_confidence_threshold=0.4``):
that one is the ``confidence`` length controller (issue 29), ``length="confidence"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import register
from .base import Drafter, DraftRun, Proposal, VocabMap, _load_cached, stop_cut
from .runner import CausalRunner
from .verify import sample


@dataclass
class ARRun(DraftRun):
    lm: object = None  # the drafting causal LM
    vocab: VocabMap | None = None
    runner: CausalRunner | None = None  # the drafter's own KV cache, one row per drafting row
    slots: list[int] = field(default_factory=list)  # the request number of each runner row


@register("ar")
@dataclass
class ARDrafter(Drafter):
    """A small causal LM drafting k tokens sequentially with its own rolled-back KV cache."""

    model: object = "tiny-ar-draft"
    greedy: bool = False  # draft the argmax even when the verifier samples (a deterministic proposal)
    stops_on_confidence = True

    def start(self, verifier, sampling) -> ARRun:
        from dllm.models import CausalLM

        lm = _load_cached(self.model, verifier.device) if isinstance(self.model, str) else self.model
        if not isinstance(lm, CausalLM):
            raise ValueError(
                f"drafter 'ar' needs a causal LM as its model; {getattr(lm, 'name', lm)!r} is "
                f"{type(lm).__name__}"
            )
        vocab = VocabMap.build(lm.tokenizer, verifier.tokenizer, verifier.vocab_size, lm.name, verifier.name)
        base = super().start(verifier, sampling)
        return ARRun(**vars(base), lm=lm, vocab=vocab, runner=CausalRunner(lm.net, lm.pad_id))

    def default_length(self):
        from .length import HeuristicLength

        return HeuristicLength()

    def room(self, run: ARRun, context_length: int) -> int:
        return run.lm.max_length - context_length

    def propose(self, run: ARRun, requests):
        order = self._follow(run, [r.row for r in requests])
        requests = [requests[i] for i in order]  # in the runner's row order
        cached = []
        for request, ids in zip(requests, run.runner.ids):
            shared = 0
            limit = min(len(ids), len(request.context) - 1)
            while shared < limit and ids[shared] == request.context[shared]:
                shared += 1
            cached.append(shared)
        run.runner.keep(cached)
        feeds = [req.context[n:] for req, n in zip(requests, cached)]
        drafts = [[] for _ in requests]
        dists = [[] for _ in requests]
        confidence = [[] for _ in requests]  # each drafted token's probability
        forwards = [0] * len(requests)
        for _step in range(max(r.k for r in requests)):
            live = [
                i
                for i, r in enumerate(requests)
                if len(drafts[i]) < r.k
                and not _stopped(drafts[i], run.stop_ids)
                and not (confidence[i] and confidence[i][-1] < r.stop_below)  # the confidence stop
            ]
            if not live:
                break
            logits = run.runner.feed([feeds[i] if i in live else [] for i in range(len(requests))])
            for i in live:
                last = run.vocab.logits(logits[i, len(feeds[i]) - 1][None])
                if run.sampling.greedy or self.greedy:
                    token = int(last.argmax())
                    confidence[i].append(float(torch.softmax(last[0], -1)[token]))
                else:
                    q = run.sampling.probabilities(last, requests[i].context + drafts[i])[0]
                    token = sample(q, requests[i].generator)
                    dists[i].append(q)
                    confidence[i].append(float(q[token]))
                drafts[i].append(token)
                feeds[i] = [token]
                forwards[i] += 1
        out = [None] * len(requests)
        for i, position in enumerate(order):
            tokens = stop_cut(drafts[i], run.stop_ids)
            q = torch.stack(dists[i][: len(tokens)]) if dists[i] else None
            out[position] = Proposal(
                tokens=tokens,
                kind="deterministic" if q is None else "sequential",
                q=q,
                raw_len=len(drafts[i]),
                forwards=forwards[i],
                confidence=confidence[i][: len(tokens)],
            )
        return out

    @staticmethod
    def _follow(run: ARRun, rows: list[int]) -> list[int]:
        """Make the runner's rows those of ``rows``: rows not asked for leave, new rows join at the
        end. Returns, per runner row, the index into ``rows`` of its request."""
        kept = [slot for slot in run.slots if slot in rows]
        run.runner.select([run.slots.index(slot) for slot in kept])
        new = [row for row in rows if row not in kept]
        run.runner.add(len(new))
        run.slots = kept + new
        return [rows.index(slot) for slot in run.slots]


def _stopped(draft: list[int], stop_ids) -> bool:
    return bool(draft) and draft[-1] in stop_ids
