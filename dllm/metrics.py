"""The one definition of every count the project reports.

- **NFE**: every model forward a row took part in — denoising steps, length probes, cache
  refreshes. A classifier-free-guidance forward (conditional + unconditional batch) counts once.
- **steps**: denoising decisions (one ``select`` call) the row went through.
- **generated tokens**: tokens of the answer, i.e. before the first EOS; EOS padding excluded.
- **tokens per forward (TPF)**: generated tokens / NFE.
- **tokens per step**: generated tokens / steps.
- **throughput**: generated tokens / wall seconds (for a batch: summed tokens / batch seconds).

README tables, benchmarks, the evaluation harness and the demo all read these functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence


def answer_length(ids: Sequence[int], eos_ids: Sequence[int]) -> int:
    """Number of tokens before the first EOS (the whole sequence when there is none)."""
    eos = set(eos_ids)
    for i, tok in enumerate(ids):
        if tok in eos:
            return i
    return len(ids)


def tokens_per_forward(gen_tokens: int, nfe: int) -> float:
    return gen_tokens / nfe if nfe else 0.0


def tokens_per_step(gen_tokens: int, steps: int) -> float:
    return gen_tokens / steps if steps else 0.0


def throughput(gen_tokens: int, seconds: float) -> float:
    return gen_tokens / seconds if seconds > 0 else 0.0


@dataclass
class StepRecord:
    """Which canvas offsets (0 = first generated position) one step committed, and how sure it was."""

    step: int
    nfe: int
    positions: list[int]
    tokens: list[int]
    confidences: list[float]


@dataclass
class GenerationResult:
    """One row of a generation: the answer and the counts defined in this module."""

    ids: list[int]                  # answer tokens, stopped before the first EOS
    text: str
    canvas: list[int]               # the whole generated region, EOS padding included
    steps: int
    nfe: int
    gen_tokens: int
    seconds: float
    trace: list[StepRecord] = field(default_factory=list)

    @property
    def tokens_per_forward(self) -> float:
        return tokens_per_forward(self.gen_tokens, self.nfe)

    @property
    def tokens_per_step(self) -> float:
        return tokens_per_step(self.gen_tokens, self.steps)

    @property
    def tokens_per_second(self) -> float:
        return throughput(self.gen_tokens, self.seconds)

    def stats(self) -> dict:
        return {
            "steps": self.steps,
            "nfe": self.nfe,
            "gen_tokens": self.gen_tokens,
            "tokens_per_forward": round(self.tokens_per_forward, 4),
            "tokens_per_step": round(self.tokens_per_step, 4),
            "seconds": round(self.seconds, 4),
            "tokens_per_second": round(self.tokens_per_second, 2),
        }

    def to_dict(self, with_trace: bool = False) -> dict:
        out = {"text": self.text, "ids": self.ids, **self.stats()}
        if with_trace:
            out["trace"] = [asdict(r) for r in self.trace]
        return out
