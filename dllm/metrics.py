"""The one definition of every count the project reports.

- **NFE**: every model forward a row took part in — denoising steps, length probes, cache
  refreshes. A classifier-free-guidance forward (conditional + unconditional batch) counts once.
- **steps**: denoising decisions (one ``select`` call) the row went through.
- **generated tokens**: tokens of the answer, i.e. before the first EOS; EOS padding excluded.
- **tokens per forward (TPF)**: generated tokens / NFE.
- **tokens per step**: generated tokens / steps.
- **row-forwards** (``GenerationResult.batch_row_forwards``): rows the model computed, summed
  over a ``generate`` call's forwards: a forward over a batch of 8 rows counts 8. Rows leave the
  batch when they finish, so a batch needs about the sum of its prompts' NFE run alone.
- **throughput**: generated tokens / wall seconds (for a batch: summed tokens / batch seconds).
- **host syncs**: operations after which the host waits for the device on a GPU: tensor values
  read on the host (``item``, ``bool``, ``int``, ``tolist``), ``nonzero`` and boolean-mask
  indexing. ``count_host_syncs`` counts them.
  ``Result.seconds`` (both kinds of result) is a request's decoding time: from its row joining the
  running batch (its canvas built, ``dllm.engine``) to its row leaving it; ``queue_seconds`` is its
  wait before joining. Model loading and tokenisation are outside both. A call's wall time is
  ``batch_seconds`` (first submission to last row leaving); a batch's throughput is
  ``batch_throughput`` = summed generated tokens / ``batch_seconds``.
- **decode tok/s** (what ``dllm generate`` prints, labelled ``decode-tok/s(warm)``): a row's
  generated tokens / the seconds of the decoding call, measured after an untimed one-forward
  warm-up call over a canvas of the same shape (so the first forward's one-time costs are excluded), with one
  torch thread unless ``--threads`` says otherwise. A batch's line: summed tokens / batch seconds.

README tables, benchmarks, the evaluation harness and the demo all read these functions.
"""

from __future__ import annotations

import collections
import contextlib
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterator, Sequence


def answer_length(ids: Sequence[int], eos_ids: Sequence[int]) -> int:
    """Number of tokens before the first EOS (the whole sequence when there is none)."""
    eos = set(eos_ids)
    for i, tok in enumerate(ids):
        if tok in eos:
            return i
    return len(ids)


def cut_at_stop(text: str, until) -> tuple[str, str | None]:
    """``text`` up to its earliest stop string (``until``: one, a list, or None), and which one
    matched (None: none did). The evaluation and the server cut answers with it."""
    stops = [until] if isinstance(until, str) else list(until or [])
    best, which = len(text), None
    for stop in stops:
        if stop:
            idx = text.find(stop)
            if 0 <= idx < best:
                best, which = idx, stop
    return text[:best], which


def tokens_per_forward(gen_tokens: int, nfe: int) -> float:
    return gen_tokens / nfe if nfe else 0.0


def tokens_per_step(gen_tokens: int, steps: int) -> float:
    return gen_tokens / steps if steps else 0.0


TOKENS_PER_SECOND_LABEL = "decode-tok/s(warm)"


def throughput(gen_tokens: int, seconds: float) -> float:
    return gen_tokens / seconds if seconds > 0 else 0.0


# Operations after which the host must wait for the device: a scalar read (``item``, ``bool``,
# ``int``), ``nonzero`` and the indexing that needs it (a boolean mask as an index, ``masked_select``),
# and ``unique`` / ``repeat_interleave`` without an output size (their shape is data-dependent).
SYNCING_OPS = (
    "_local_scalar_dense",
    "nonzero",
    "masked_select",
    "unique",
    "_unique2",
    "unique_dim",
    "unique_consecutive",
    "repeat_interleave",
)


def _syncing(func, args) -> str | None:
    import torch

    name = func._schema.name.split("::")[-1]
    if name in SYNCING_OPS:
        return "scalar" if name == "_local_scalar_dense" else name
    if name in ("index", "index_put", "index_put_") and len(args) > 1:
        indices = args[1] if isinstance(args[1], (list, tuple)) else ()
        if any(getattr(i, "dtype", None) in (torch.bool, torch.uint8) for i in indices):
            return "bool-index"
    return None


@contextlib.contextmanager
def count_host_syncs(where: Callable[[str], object] | None = None) -> Iterator[collections.Counter]:
    """Count every host sync inside the ``with`` block: each operation whose result the host waits
    for (``SYNCING_OPS``, boolean-mask indexing) as the dispatcher sees it, plus ``Tensor.tolist``
    (which reads the data without dispatching). The yielded counter is keyed by the kind of sync,
    or by ``where(kind)`` (called at each sync, e.g. to name the source line)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    counts: collections.Counter = collections.Counter()

    def count(kind: str) -> None:
        counts[kind if where is None else where(kind)] += 1

    class Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kind = _syncing(func, args)
            if kind is not None:
                count(kind)
            return func(*args, **(kwargs or {}))

    tolist = torch.Tensor.tolist

    def counted_tolist(self, *args, **kwargs):
        count("tolist")
        return tolist(self, *args, **kwargs)

    torch.Tensor.tolist = counted_tolist
    try:
        with Counting():
            yield counts
    finally:
        torch.Tensor.tolist = tolist


@dataclass
class StepRecord:
    """Which canvas offsets (0 = first generated position) one step committed, and how sure it was."""

    step: int
    nfe: int
    positions: list[int]
    tokens: list[int]
    confidences: list[float]


@dataclass(kw_only=True)
class Result:
    """What every result carries, whichever kind of step made it (``dllm.engine``): the answer,
    its length, and its timing: ``seconds`` the request's decoding time (from its row joining the
    running batch to leaving it), ``queue_seconds`` its wait before that (from submission)."""

    ids: list[int]  # answer tokens, stopped before the first EOS
    text: str
    gen_tokens: int
    seconds: float = 0.0
    queue_seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return throughput(self.gen_tokens, self.seconds)

    def stats(self) -> dict:
        return {
            "gen_tokens": self.gen_tokens,
            "seconds": round(self.seconds, 4),
            "queue_seconds": round(self.queue_seconds, 4),
            "tokens_per_second": round(self.tokens_per_second, 2),
        }

    def to_dict(self, with_trace: bool = False) -> dict:
        out = {"text": self.text, "ids": self.ids, **self.stats()}
        if with_trace:
            out["trace"] = [asdict(r) for r in getattr(self, "trace", [])]
        return out


def batch_seconds(results: Sequence[Result]) -> float:
    """Wall time of a call (or of requests submitted together): its first submission to its last
    row leaving the batch."""
    return max((r.queue_seconds + r.seconds for r in results), default=0.0)


def batch_throughput(results: Sequence[Result]) -> float:
    """A batch's tokens per second: summed generated tokens / ``batch_seconds``."""
    return throughput(sum(r.gen_tokens for r in results), batch_seconds(results))


@dataclass(kw_only=True)
class GenerationResult(Result):
    """One row of a generation: the answer and the counts defined in this module."""

    canvas: list[int]  # the whole generated region, EOS padding included
    steps: int
    nfe: int
    trace: list[StepRecord] = field(default_factory=list)
    batch_row_forwards: int = 0  # the batch's row-forwards when the row left (module docstring)

    @property
    def tokens_per_forward(self) -> float:
        return tokens_per_forward(self.gen_tokens, self.nfe)

    @property
    def tokens_per_step(self) -> float:
        return tokens_per_step(self.gen_tokens, self.steps)

    def stats(self) -> dict:
        return {
            "steps": self.steps,
            "nfe": self.nfe,
            "tokens_per_forward": round(self.tokens_per_forward, 4),
            "tokens_per_step": round(self.tokens_per_step, 4),
            **super().stats(),
        }


# ---- speculative decoding (draft and verify) ------------------------------------------------
# - **round**: one draft (possibly empty) and one verifier forward that scores all of it.
# - **verifier forwards**: every forward of the verifier; the first round's forward also encodes
#   the prompt (there is no separate prefill), so plain AR decoding of n tokens takes n forwards.
# - **drafted / accepted**: draft tokens verified / accepted (the correction or bonus token that
#   every round adds is *not* an accepted draft token).
# - **tau** (mean accepted length, DiffuSpec's L_acc, "MAT" without bonus): accepted / rounds.
# - **tau with bonus** (Spec-Bench's mean accepted tokens): committed tokens / rounds, where a
#   round commits accepted + 1 tokens unless EOS or max_new_tokens cut it.
# - **tokens per verifier forward**: generated tokens (before the first EOS, as everywhere) /
#   verifier forwards.
# - **acceptance rate**: accepted / drafted; **acceptance by position**: of the rounds whose
#   verification reached draft position i, the share that accepted it.


def mean_accepted_length(accepted: int, rounds: int) -> float:
    return accepted / rounds if rounds else 0.0


def acceptance_rate(accepted: int, drafted: int) -> float:
    return accepted / drafted if drafted else 0.0


@dataclass
class RoundRecord:
    """One round of one row: the draft, how much of it was accepted, the token that followed."""

    k: int  # draft length asked for
    draft: list[int]
    accepted: int
    token: int | None  # the correction (accepted < len(draft)) or bonus token; None if cut
    committed: list[int]  # what the round added (after the EOS / budget cut)


@dataclass(kw_only=True)
class SpeculativeResult(Result):
    """One row of speculative decoding: the answer and the counts defined above."""

    rounds: int
    drafted: int
    accepted: int
    committed: int
    verifier_forwards: int
    drafter_forwards: int
    draft_seconds: float = 0.0  # drafting time of the rounds the row took part in
    verify_seconds: float = 0.0  # ... and their verifying time
    reached: list[int] = field(default_factory=list)  # rounds whose verification reached position i
    accepted_at: list[int] = field(default_factory=list)  # ... and accepted it
    trace: list[RoundRecord] = field(default_factory=list)

    @property
    def tau(self) -> float:
        return mean_accepted_length(self.accepted, self.rounds)

    @property
    def tau_with_bonus(self) -> float:
        return mean_accepted_length(self.committed, self.rounds)

    @property
    def tokens_per_verifier_forward(self) -> float:
        return tokens_per_forward(self.gen_tokens, self.verifier_forwards)

    @property
    def acceptance_rate(self) -> float:
        return acceptance_rate(self.accepted, self.drafted)

    @property
    def acceptance_by_position(self) -> list[float]:
        return [a / r if r else 0.0 for a, r in zip(self.accepted_at, self.reached)]

    @property
    def other_seconds(self) -> float:
        return max(0.0, self.seconds - self.draft_seconds - self.verify_seconds)

    def stats(self) -> dict:
        return {
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "tau": round(self.tau, 4),
            "tau_with_bonus": round(self.tau_with_bonus, 4),
            "tokens_per_verifier_forward": round(self.tokens_per_verifier_forward, 4),
            "acceptance_rate": round(self.acceptance_rate, 4),
            "acceptance_by_position": [round(a, 4) for a in self.acceptance_by_position],
            "verifier_forwards": self.verifier_forwards,
            "drafter_forwards": self.drafter_forwards,
            "draft_seconds": round(self.draft_seconds, 4),
            "verify_seconds": round(self.verify_seconds, 4),
            "other_seconds": round(self.other_seconds, 4),
            **super().stats(),
        }
