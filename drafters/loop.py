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

import dataclasses
import time
from dataclasses import dataclass, field

import torch

from dllm.config import check_fields, check_range
from dllm.engine import Engine, Request, check_max_batch
from dllm.metrics import RoundRecord, SpeculativeResult, answer_length
from dllm.prompts import encode_prompts

from .base import DraftRequest, Proposal, Sampling, stop_cut
from .runner import CausalRunner
from .verify import verify_rows


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


def resolve_speculative(config: SpeculativeConfig | None = None, **settings) -> SpeculativeConfig:
    """``settings`` (``SpeculativeConfig`` fields) on top of ``config``, as ``dllm.generate`` applies
    its keywords on top of its config (``dllm.config.resolve_generation``)."""
    names = [f.name for f in dataclasses.fields(SpeculativeConfig)]
    unknown = sorted(set(settings) - set(names))
    if unknown:
        raise TypeError(
            f"unknown speculative setting(s) {', '.join(map(repr, unknown))};"
            f" the settings are {', '.join(names)}"
        )
    if config is None:
        return SpeculativeConfig(**settings)
    if not isinstance(config, SpeculativeConfig):
        raise TypeError(f"config={config!r} must be a SpeculativeConfig (or None)")
    return dataclasses.replace(config, **settings) if settings else config


def _generator(seed: int, device, salt: int) -> torch.Generator:
    """A row's verifier (salt 0) or drafter (salt 1) generator."""
    return torch.Generator(device=device).manual_seed((seed * 2 + salt) % 2**63)


def speculate(
    verifier,
    prompts,
    drafter=None,
    *,
    length=None,
    config: SpeculativeConfig | None = None,
    chat: bool = False,
    allow_special: bool = False,
    max_batch: int | None = None,
    callback=None,
    **settings,
) -> list[SpeculativeResult]:
    """Speculative decoding of one prompt or a batch (text or verifier token ids); one result each.

    ``verifier``: a causal LM (name, folder, hub id or ``dllm.load`` result). ``drafter``: a registered
    drafter name, class or instance (None: plain AR decoding). ``length``: a length-controller name or
    instance (default: the drafter's). ``settings``: ``SpeculativeConfig`` fields, applied on top of
    ``config``. ``max_batch`` bounds the running batch: more prompts than that are decoded with
    continuous batching (``dllm.engine``); every result equals the prompt's run alone. ``callback``
    gets a ``RoundEvent`` after every round. Prompts follow ``dllm.prompts``' rules;
    ``allow_special=True`` lets text contain special-token text.
    """
    config = resolve_speculative(config, **settings)
    verifier = as_verifier(verifier)
    check_max_batch(max_batch)
    prompts = encode_prompts(
        verifier, prompts, chat=chat, allow_special=allow_special, vocabulary=Speculative.vocabulary
    )
    kind = Speculative(verifier, drafter, length, config)  # after the prompts: it may load a drafter
    seeds = config.row_seeds(len(prompts))
    requests = [kind.request(ids, index=i, seed=seed) for i, (ids, seed) in enumerate(zip(prompts, seeds))]
    return Engine(kind, max_batch, callback).run(requests)


@dataclass
class _Row:
    """A running speculative row: its tokens, generators, draft-length state and counts."""

    key: int  # the request number (the drafter's name for the row)
    budget: int  # max_new_tokens of this row
    committed: list[int]  # prompt + output
    out: list[int]
    verifier_rng: torch.Generator
    drafter_rng: torch.Generator
    length: object  # the length controller's state
    counts: dict = field(default_factory=lambda: dict(rounds=0, drafted=0, accepted=0, committed=0))
    forwards: dict = field(default_factory=lambda: dict(verifier_forwards=0, drafter_forwards=0))
    seconds: dict = field(default_factory=lambda: dict(draft_seconds=0.0, verify_seconds=0.0))
    reached: list[int] = field(default_factory=list)
    accepted_at: list[int] = field(default_factory=list)
    trace: list[RoundRecord] = field(default_factory=list)


@dataclass
class RoundEvent:
    """Passed to listeners after every round: what each row committed (``new[row]``) and its output
    so far (``out[row]``, verifier ids)."""

    rows: list[int]  # the request number of each row
    new: list[list[int]]
    out: list[list[int]]
    accepted: list[int]
    drafted: list[int]
    draft: list[list[int]]  # each row's draft this round (its first ``accepted[row]`` tokens were kept)


@dataclass
class _Batch:
    rows: list[_Row]
    runner: CausalRunner
    event: RoundEvent | None = None
    rows_seen: int = 0
    longest: int = 0  # the largest max_new_tokens of the rows seen


class Speculative:
    """The speculative round as the engine's step kind (``dllm.engine``): every row drafts (one
    ``propose`` for all), one verifier forward scores every row's uncached tokens and draft, the
    rules of ``verify_rows`` accept, and each row's verifier K/V is rolled back to ``committed - 1``
    tokens. Rows join between rounds (their prompt is fed with the others' next tokens) and leave
    when they stop; every row draws from its own generators, so its output is its run alone."""

    joins, keeps_finished = True, False
    vocabulary = "the verifier's vocabulary"  # what prompt ids are checked against (dllm.prompts)

    def __init__(self, verifier, drafter=None, length=None, config: SpeculativeConfig | None = None):
        from . import get as get_drafter
        from . import length as length_registry

        self.verifier, self.config = verifier, config or SpeculativeConfig()
        self.sampling, self.stop_ids = self.config.sampling, set(verifier.eos_ids)
        self.drafter = None if drafter is None else get_drafter(drafter)
        if self.drafter is None and length is not None:
            raise ValueError("a draft-length controller was given without a drafter")
        self.controller = None
        if self.drafter is not None:
            self.controller = (
                length_registry.get(length) if length is not None else self.drafter.default_length()
            )
        # a controller that stops drafts at a low-confidence token (length.ConfidenceLength)
        self.stop_below = getattr(self.controller, "stop_below", None)
        if self.stop_below is not None and not self.drafter.stops_on_confidence:
            raise ValueError(
                f"length controller {self.controller.name!r} ends drafts at a low-confidence token;"
                f" drafter {self.drafter.name!r} cannot (use a drafter with stops_on_confidence, e.g. 'ar')"
            )
        self.run = None if self.drafter is None else self.drafter.start(verifier, self.sampling)

    def request(
        self,
        ids: list[int],
        on_step=None,
        index: int | None = None,
        seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> Request:
        """A request for ``ids`` (verifier ids, checked against the context). ``seed`` and
        ``max_new_tokens`` are the row's own (default: the config's): rows with other values share
        a running batch."""
        budget = self.config.max_new_tokens if max_new_tokens is None else max_new_tokens
        check_range("SpeculativeConfig", "max_new_tokens", budget, 1)
        limit = self.verifier.max_length
        if len(ids) + budget > limit:
            raise ValueError(
                f"prompt of {len(ids)} tokens + max_new_tokens {budget} exceeds the "
                f"verifier's context of {limit} positions"
            )
        seed = self.config.row_seeds(1)[0] if seed is None else seed
        check_range("SpeculativeConfig", "seed", seed, 0, 2**63 - 1)
        return Request(ids, on_step, index=index, seed=seed, max_new_tokens=budget)

    def start(self, requests: list[Request], prompt_width: int | None) -> _Batch:
        batch = _Batch(rows=[], runner=CausalRunner(self.verifier.net, self.verifier.pad_id))
        self.join(batch, requests)
        return batch

    def join(self, batch: _Batch, requests: list[Request]) -> None:
        device = self.verifier.device
        batch.rows += [  # their runner rows come with their first round (Speculative.feed)
            _Row(
                key=r.index,
                budget=r.extra["max_new_tokens"],
                committed=list(r.ids),
                out=[],
                verifier_rng=_generator(r.extra["seed"], device, 0),
                drafter_rng=_generator(r.extra["seed"], device, 1),
                length=None if self.controller is None else self.controller.initial(),
            )
            for r in requests
        ]
        batch.rows_seen += len(requests)
        batch.longest = max([batch.longest] + [r.extra["max_new_tokens"] for r in requests])

    def active(self, batch: _Batch) -> list[bool]:
        return [True] * len(batch.rows)

    def fits(self, batch: _Batch, request: Request) -> bool:
        return True

    def stalled(self, batch: _Batch, steps: int) -> bool:
        return steps > (batch.longest + 1) * batch.rows_seen

    def stop(self, batch: _Batch, rows: list[int]) -> None:
        return None  # a cancelled row only leaves

    def leave(self, batch: _Batch, keep: list[int]) -> None:
        batch.runner.select(keep)
        batch.rows = [batch.rows[i] for i in keep]

    def event(self, batch: _Batch) -> RoundEvent:
        return batch.event

    def step(self, batch: _Batch) -> list[bool]:
        """One round of every row (module docstring)."""
        rows, runner = batch.rows, batch.runner
        tick = time.perf_counter()
        proposals = self.propose(rows)
        drafted = time.perf_counter()
        cached = runner.lengths() + [0] * (len(rows) - runner.batch)  # joined rows: nothing yet
        logits, joined = self.feed(
            batch, [row.committed[n:] + p.tokens for row, n, p in zip(rows, cached, proposals)]
        )
        accepted, tokens = verify_rows(
            logits,
            [len(row.committed) - n - 1 for row, n in zip(rows, cached)],  # the column scoring draft[0]
            [p.tokens for p in proposals],
            [p.q for p in proposals],
            probabilities=None if self.sampling.greedy else self.sampling.distribution,
            generators=[row.verifier_rng for row in rows],
        )
        news = []
        for row, proposal, n, token in zip(rows, proposals, accepted, tokens):
            new = stop_cut(proposal.tokens[:n] + [token], self.stop_ids)[: row.budget - len(row.out)]
            row.committed += new
            row.out += new
            news.append(new)
            self._record(row, proposal, n, token, new)
        kept = [len(row.committed) - 1 for row in rows]
        runner.keep(kept[: runner.batch])
        if joined is not None:
            joined.keep(kept[runner.batch :])
            runner.merge(joined)
        verified = time.perf_counter()
        for row in rows:
            row.seconds["draft_seconds"] += drafted - tick
            row.seconds["verify_seconds"] += verified - drafted
        batch.event = RoundEvent(
            rows=[row.key for row in rows],
            new=news,
            out=[list(row.out) for row in rows],
            accepted=accepted,
            drafted=[len(p.tokens) for p in proposals],
            draft=[list(p.tokens) for p in proposals],
        )
        return [not (new[-1] in self.stop_ids or len(row.out) >= row.budget) for row, new in zip(rows, news)]

    def feed(self, batch: _Batch, feeds: list[list[int]]) -> tuple[torch.Tensor, CausalRunner | None]:
        """The round's verifier forward: ``feeds[b]`` appended to row b; logits ``[B, F, V]``. Rows
        that joined since the last round (at the end, nothing cached yet) feed their prompts in a
        forward of their own, so the running rows' forward is not padded to a prompt's width;
        their runner is returned, to be merged after the round."""
        runner = batch.runner
        if not runner.batch or runner.batch == len(feeds):
            runner.add(len(feeds) - runner.batch)
            return runner.feed(feeds), None
        joined = CausalRunner(self.verifier.net, self.verifier.pad_id)
        joined.reset(len(feeds) - runner.batch)
        parts = [runner.feed(feeds[: runner.batch]), joined.feed(feeds[runner.batch :])]
        width = max(part.shape[1] for part in parts)
        parts = [torch.nn.functional.pad(part, (0, 0, 0, width - part.shape[1])) for part in parts]
        return torch.cat(parts), joined

    def propose(self, rows: list[_Row]) -> list[Proposal]:
        """Each row's draft (empty without a drafter, or when no draft token fits its budget)."""
        empty = Proposal(tokens=[], kind="deterministic")
        if self.drafter is None:
            return [empty] * len(rows)
        asks = []
        for i, row in enumerate(rows):
            k = min(
                self.controller.next_length(row.length),
                row.budget - len(row.out) - 1,
                self.drafter.room(self.run, len(row.committed)),
            )
            if k >= 1:
                floor = 0.0 if self.stop_below is None else self.stop_below(row.length)
                request = DraftRequest(row.key, row.committed, k, row.drafter_rng, stop_below=floor)
                asks.append((i, request))
        proposals = [empty] * len(rows)
        if not asks:
            return proposals
        for (i, request), proposal in zip(asks, self.drafter.propose(self.run, [r for _, r in asks])):
            if len(proposal.tokens) > request.k:
                raise ValueError(
                    f"drafter {self.drafter.name!r} proposed {len(proposal.tokens)} tokens for k={request.k}"
                )
            bad = [t for t in proposal.tokens if not 0 <= t < self.verifier.vocab_size]
            if bad:
                raise ValueError(
                    f"drafter {self.drafter.name!r} proposed ids {bad[:4]} outside the verifier's vocabulary"
                )
            proposals[i] = proposal
        return proposals

    def _record(self, row: _Row, proposal: Proposal, n: int, token: int, new: list[int]) -> None:
        draft = proposal.tokens
        row.counts["rounds"] += 1
        row.counts["drafted"] += len(draft)
        row.counts["accepted"] += n
        row.counts["committed"] += len(new)
        row.forwards["verifier_forwards"] += 1
        row.forwards["drafter_forwards"] += proposal.forwards
        depth = min(n + 1, len(draft))  # positions whose verdict was reached this round
        while len(row.reached) < depth:
            row.reached.append(0)
            row.accepted_at.append(0)
        for i in range(depth):
            row.reached[i] += 1
            row.accepted_at[i] += int(i < n)
        if self.controller is not None:
            row.length = self.controller.update(row.length, proposal, n)
        if self.config.trace:
            row.trace.append(
                RoundRecord(
                    k=max(proposal.raw_len, len(draft)),
                    draft=list(draft),
                    accepted=n,
                    token=token if len(new) > n else None,
                    committed=list(new),
                )
            )

    def result(self, batch: _Batch, index: int, request: Request) -> SpeculativeResult:
        row = batch.rows[index]
        n = answer_length(row.out, self.verifier.eos_ids)
        return SpeculativeResult(
            ids=row.out[:n],
            text=self.verifier.decode(row.out[:n]),
            gen_tokens=n,
            **row.counts,
            **row.forwards,
            **row.seconds,
            reached=row.reached,
            accepted_at=row.accepted_at,
            trace=row.trace,
        )
