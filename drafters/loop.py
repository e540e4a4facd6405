"""The draft–verify loop: a drafter proposes, one verifier forward scores every draft position.

Per round and row (specs/drafters.md §1): the length controller picks ``k`` (clipped so that the
correction / bonus token still fits in ``max_new_tokens``), the drafter proposes up to ``k``
tokens, the verifier (any ``transformers`` causal LM) runs once over the row's uncached committed
tokens plus the draft, the rule of the proposal's kind accepts ``n`` tokens and adds one more
(``dllm.drafters.verify``), the output is cut after the first stop token, and the verifier's KV
cache is rolled back to ``committed − 1`` tokens. ``drafter=None`` is plain AR decoding through the
same code (one token per verifier forward).

Batched: rows accept different numbers of tokens; each row's cache is rolled back on its own
(``dllm.drafters.runner``), finished rows leave the batch, and every row draws from its own random
generators seeded by ``seed`` alone, so a row's output is the output it has when run alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from dllm.config import check_fields, check_range
from dllm.metrics import RoundRecord, SpeculativeResult, answer_length
from dllm.prompts import encode_prompts

from .base import DraftRequest, Sampling, stop_cut
from .runner import CausalRunner
from .verify import verify


@dataclass
class SpeculativeConfig:
    """max_new_tokens: generated tokens at most (stop tokens included).
    temperature: 0 = greedy verification; > 0 samples from the verifier's processed distribution.
    top_k / top_p: ``transformers`` top-k / nucleus filtering of that distribution (None = off).
    seed: seeds each row's verifier and drafter generators: one seed for every row (a row's output is
        then its output alone), or a list with one seed per prompt.
    trace: keep a ``RoundRecord`` per round."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | list[int] = 0
    trace: bool = False

    def __post_init__(self):
        owner = "SpeculativeConfig"
        check_fields(self, owner)
        seeds = list(self.seed) if isinstance(self.seed, (list, tuple)) else [self.seed]
        check_range(owner, "max_new_tokens", self.max_new_tokens, 1)
        check_range(owner, "temperature", self.temperature, 0.0)
        for seed in seeds:
            check_range(owner, "seed", seed, 0, 2**63 - 1)
        if self.top_k is not None:
            check_range(owner, "top_k", self.top_k, 1)
        if self.top_p is not None:
            check_range(owner, "top_p", self.top_p, 0.0, 1.0, low_open=True)

    @property
    def sampling(self) -> Sampling:
        return Sampling(self.temperature, self.top_k, self.top_p)

    def row_seeds(self, rows: int) -> list[int]:
        if not isinstance(self.seed, (list, tuple)):
            return [self.seed] * rows
        if len(self.seed) != rows:
            raise ValueError(f"SpeculativeConfig.seed has {len(self.seed)} seeds for {rows} prompts")
        return list(self.seed)


def as_verifier(verifier, device="cpu"):
    """A loaded ``CausalLM`` from a name / folder / hub id or a ``CausalLM``; anything else is an error."""
    from dllm.models import CausalLM, load

    if isinstance(verifier, str):
        verifier = load(verifier, device=device)
    if not isinstance(verifier, CausalLM):
        raise ValueError(
            f"the verifier must be an autoregressive (causal) LM; got {type(verifier).__name__}"
            f" {getattr(verifier, 'name', '')!r} (a diffusion LM can only be the drafter)"
        )
    return verifier


def _row_generators(seeds: list[int], device, salt: int) -> list[torch.Generator]:
    """Separate verifier (salt 0) and drafter (salt 1) generators per row."""
    return [torch.Generator(device=device).manual_seed((seed * 2 + salt) % 2**63) for seed in seeds]


def speculate(
    verifier,
    prompts,
    drafter=None,
    *,
    length=None,
    config: SpeculativeConfig | None = None,
    chat: bool = False,
    allow_special: bool = False,
    **settings,
) -> list[SpeculativeResult]:
    """Speculative decoding of one prompt or a batch (text or verifier token ids); one result each.

    ``verifier``: a causal LM (name, folder, hub id or ``dllm.load`` result). ``drafter``: a registered
    drafter name, class or instance (None: plain AR decoding). ``length``: a length-controller name or
    instance (default: the drafter's). ``settings``: ``SpeculativeConfig`` fields. Prompts follow
    ``dllm.prompts``' rules; ``allow_special=True`` lets text contain special-token text.
    """
    from . import get as get_drafter
    from . import length as length_registry

    config = SpeculativeConfig(**settings) if config is None else config
    verifier = as_verifier(verifier)
    drafter = None if drafter is None else get_drafter(drafter)
    prompts = encode_prompts(
        verifier, prompts, chat=chat, allow_special=allow_special, vocabulary="the verifier's vocabulary"
    )
    limit = verifier.max_length
    for ids in prompts:
        if len(ids) + config.max_new_tokens > limit:
            raise ValueError(
                f"prompt of {len(ids)} tokens + max_new_tokens {config.max_new_tokens} exceeds the "
                f"verifier's context of {limit} positions"
            )
    sampling = config.sampling
    if drafter is not None:
        bound = getattr(drafter, "bound_to", None)
        if (
            bound is None or bound[0] is not verifier or bound[1] != sampling
        ):  # bind once per verifier + settings
            drafter.bind(verifier, sampling)
            drafter.bound_to = (verifier, sampling)
        controller = length_registry.get(length) if length is not None else drafter.default_length()
    elif length is not None:
        raise ValueError("a draft-length controller was given without a drafter")
    return _Run(verifier, drafter, controller if drafter else None, config).run(prompts)


class _Run:
    def __init__(self, verifier, drafter, controller, config: SpeculativeConfig):
        self.verifier, self.drafter, self.controller, self.config = verifier, drafter, controller, config
        self.sampling = config.sampling
        self.stop_ids = set(verifier.eos_ids)

    def run(self, prompts: list[list[int]]) -> list[SpeculativeResult]:
        start = time.perf_counter()
        rows = len(prompts)
        device = self.verifier.device
        seeds = self.config.row_seeds(rows)
        verifier_rng = _row_generators(seeds, device, 0)
        drafter_rng = _row_generators(seeds, device, 1)
        committed = [list(p) for p in prompts]
        out: list[list[int]] = [[] for _ in range(rows)]
        stats = [
            dict(
                rounds=0,
                drafted=0,
                accepted=0,
                committed=0,
                verifier_forwards=0,
                drafter_forwards=0,
                reached=[],
                accepted_at=[],
                trace=[],
            )
            for _ in range(rows)
        ]
        seconds = {"draft": 0.0, "verify": 0.0}
        runner = CausalRunner(self.verifier.net, self.verifier.pad_id)
        runner.reset(rows)
        if self.drafter is not None:
            self.drafter.start(rows)
            self.controller.start(rows)
        active = list(range(rows))
        while active:
            budget = {r: self.config.max_new_tokens - len(out[r]) for r in active}
            tick = time.perf_counter()
            proposals = self._propose(active, committed, budget, drafter_rng)
            seconds["draft"] += time.perf_counter() - tick
            tick = time.perf_counter()
            cached = runner.lengths()
            feeds = [committed[r][cached[i] :] + proposals[r].tokens for i, r in enumerate(active)]
            logits = runner.feed(feeds)
            finished = []
            for i, r in enumerate(active):
                draft = proposals[r].tokens
                first = len(committed[r]) - cached[i] - 1  # the column that predicts the first draft token
                scores = logits[i, first : first + len(draft) + 1]
                p = scores if self.sampling.greedy else self.sampling.probabilities(scores, committed[r])
                n, token = verify(
                    p, draft, proposals[r].q, greedy=self.sampling.greedy, generator=verifier_rng[r]
                )
                new = stop_cut(draft[:n] + [token], self.stop_ids)[: budget[r]]
                committed[r] += new
                out[r] += new
                self._record(stats[r], proposals[r], n, token, new)
                if self.drafter is not None:
                    self.controller.update(r, proposals[r], n)
                if new[-1] in self.stop_ids or len(out[r]) >= self.config.max_new_tokens:
                    finished.append(r)
            runner.keep([len(committed[r]) - 1 for r in active])
            seconds["verify"] += time.perf_counter() - tick
            if finished:
                keep = [i for i, r in enumerate(active) if r not in finished]
                runner.select(keep)
                active = [active[i] for i in keep]
        total = time.perf_counter() - start
        results = []
        for r in range(rows):
            n = answer_length(out[r], self.verifier.eos_ids)
            s = stats[r]
            results.append(
                SpeculativeResult(
                    ids=out[r][:n],
                    text=self.verifier.decode(out[r][:n]),
                    gen_tokens=n,
                    seconds=total,
                    draft_seconds=seconds["draft"],
                    verify_seconds=seconds["verify"],
                    **s,
                )
            )
        return results

    def _propose(self, active, committed, budget, generators) -> dict:
        from .base import Proposal

        empty = Proposal(tokens=[], kind="deterministic")
        if self.drafter is None:
            return {r: empty for r in active}
        requests = []
        for r in active:
            k = min(self.controller.next_length(r), budget[r] - 1, self.drafter.room(len(committed[r])))
            if k >= 1:
                requests.append(DraftRequest(row=r, context=committed[r], k=k, generator=generators[r]))
        proposals = {r: empty for r in active}
        if requests:
            for request, proposal in zip(requests, self.drafter.propose(requests)):
                if len(proposal.tokens) > request.k:
                    raise ValueError(
                        f"drafter {self.drafter.name!r} proposed {len(proposal.tokens)} tokens "
                        f"for k={request.k}"
                    )
                bad = [t for t in proposal.tokens if not 0 <= t < self.verifier.vocab_size]
                if bad:
                    raise ValueError(
                        f"drafter {self.drafter.name!r} proposed ids {bad[:4]} "
                        "outside the verifier's vocabulary"
                    )
                proposals[request.row] = proposal
        return proposals

    def _record(self, s: dict, proposal, n: int, token: int, new: list[int]) -> None:
        draft = proposal.tokens
        s["rounds"] += 1
        s["verifier_forwards"] += 1
        s["drafter_forwards"] += proposal.forwards
        s["drafted"] += len(draft)
        s["accepted"] += n
        s["committed"] += len(new)
        depth = min(n + 1, len(draft))  # positions whose verdict was reached this round
        while len(s["reached"]) < depth:
            s["reached"].append(0)
            s["accepted_at"].append(0)
        for i in range(depth):
            s["reached"][i] += 1
            s["accepted_at"][i] += int(i < n)
        if self.config.trace:
            s["trace"].append(
                RoundRecord(
                    k=max(proposal.raw_len, len(draft)),
                    draft=list(draft),
                    accepted=n,
                    token=token if len(new) > n else None,
                    committed=list(new),
                )
            )
