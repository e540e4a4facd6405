"""The classic speculative-decoding drafter: a smaller causal LM drafting token by token.

Each round the drafter's own KV cache is rolled back to the longest prefix it shares with the
committed tokens, the uncached tail is fed, then ``k`` tokens are drafted one forward each: the
argmax when the verifier is greedy (or ``greedy=True``: then a deterministic proposal), else a
sample from q = the drafter's distribution under the verifier's logits processors (``sequential``
proposals: token i is drawn given tokens < i).

Source: Leviathan et al. 2023 (arXiv 2211.17192), Chen et al. 2023 (arXiv 2302.01318); the same
loop as ``transformers``' ``generate(assistant_model=...)`` (HF's heuristic length schedule is
this drafter's default: ``dllm.drafters.length.HeuristicLength``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from . import register
from .base import Drafter, Proposal, VocabMap, _load_cached, stop_cut
from .runner import CausalRunner
from .verify import sample


@register("ar")
@dataclass
class ARDrafter(Drafter):
    """A small causal LM drafting k tokens sequentially with its own rolled-back KV cache."""

    model: object = "tiny-ar-draft"
    greedy: bool = False  # draft the argmax even when the verifier samples (a deterministic proposal)

    def bind(self, verifier, sampling) -> None:
        from dllm.models import CausalLM

        super().bind(verifier, sampling)
        lm = _load_cached(self.model, verifier.device) if isinstance(self.model, str) else self.model
        if not isinstance(lm, CausalLM):
            raise ValueError(
                f"drafter 'ar' needs a causal LM as its model; {getattr(lm, 'name', lm)!r} is "
                f"{type(lm).__name__}"
            )
        self.lm = lm
        self.vocab = VocabMap.build(
            lm.tokenizer, verifier.tokenizer, verifier.vocab_size, lm.name, verifier.name
        )
        self.runner = CausalRunner(lm.net, lm.pad_id)

    def default_length(self):
        from .length import HeuristicLength

        return HeuristicLength()

    def room(self, context_length: int) -> int:
        return self.lm.max_length - context_length

    def start(self, rows: int) -> None:
        self.runner.reset(rows)
        self.slots = list(range(rows))  # prompt index of each runner row

    def propose(self, requests):
        rows = [r.row for r in requests]
        if rows != self.slots:  # rows left the batch, or some asked for no draft this round
            if not set(rows) <= set(self.slots):
                raise ValueError("the ar drafter was asked for rows it was not started with")
            self.runner.select([self.slots.index(r) for r in rows])
            self.slots = rows
        cached = []
        for request, ids in zip(requests, self.runner.ids):
            shared = 0
            limit = min(len(ids), len(request.context) - 1)
            while shared < limit and ids[shared] == request.context[shared]:
                shared += 1
            cached.append(shared)
        self.runner.keep(cached)
        feeds = [req.context[n:] for req, n in zip(requests, cached)]
        drafts = [[] for _ in requests]
        dists = [[] for _ in requests]
        forwards = [0] * len(requests)
        for _step in range(max(r.k for r in requests)):
            live = [
                i for i, r in enumerate(requests) if len(drafts[i]) < r.k and not self._stopped(drafts[i])
            ]
            if not live:
                break
            logits = self.runner.feed([feeds[i] if i in live else [] for i in range(len(requests))])
            for i in live:
                last = self.vocab.logits(logits[i, len(feeds[i]) - 1][None])
                if self.sampling.greedy or self.greedy:
                    token = int(last.argmax())
                else:
                    q = self.sampling.probabilities(last, requests[i].context + drafts[i])[0]
                    token = sample(q, requests[i].generator)
                    dists[i].append(q)
                drafts[i].append(token)
                feeds[i] = [token]
                forwards[i] += 1
        out = []
        for i, _request in enumerate(requests):
            tokens = stop_cut(drafts[i], self.stop_ids)
            q = torch.stack(dists[i][: len(tokens)]) if dists[i] else None
            out.append(
                Proposal(
                    tokens=tokens,
                    kind="deterministic" if q is None else "sequential",
                    q=q,
                    raw_len=len(drafts[i]),
                    forwards=forwards[i],
                )
            )
        return out

    def _stopped(self, draft: list[int]) -> bool:
        return bool(draft) and draft[-1] in self.stop_ids
