"""DiffuSpec: a pretrained dLLM drafts a whole block in one forward; a causal-consistency path
search (CPS) picks a left-to-right path through the per-position candidates.

One forward over ``context + [MASK] * k`` gives per-position log-probabilities ℓ_i. Each position
keeps its smallest top set reaching cumulative mass ``tau`` (at most ``m_max`` tokens) plus EOS;
a beam search (width ``beam``) scores each path by Σ λ·ℓ_i(v) + (1 − λ)·log P_proxy(v | previous
tokens), where the proxy is a token-level n-gram model of a corpus (``proxy="ngram"``, the
paper's 3-gram KenLM fitted on the task's training split) or absent (``proxy="none"``: λ = 1). A
path ends at its first EOS. The draft is a deterministic function of the model's output, so
sampling verification uses the point-mass rule (the paper's L2R-proxy ratio is not lossless and
is not implemented; specs/drafters.md §2.3). Paths are ranked by their mean per-token score
(``normalize=True``, our default): with the plain sum the paper writes (``normalize=False``) a
path that stops at EOS at once keeps its one-token score while every longer path keeps adding
negative terms, and the search proposed a lone EOS on our tasks (tokens per verifier forward 3.0
vs 4.6 on the benchmark); the paper does not say how it handles this.

Source: Li et al., "DiffuSpec: Unlocking Diffusion Language Models for Speculative Decoding"
(arXiv 2510.02358), §4.1–4.3, Alg. 1; defaults M_max = 15, τ = 0.8, B = 3, λ = 0.5, with the
adaptive draft length of ``dllm.drafters.length.AdaptiveLength`` (scaled to our short answers).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm.config import check_range

from . import register
from .base import DiffusionDrafter, DiffusionRun, Proposal, eos_aware_length, stop_cut
from .ngram import NgramModel, fit


@dataclass
class DiffuSpecRun(DiffusionRun):
    ngram: NgramModel | None = None  # the causal-consistency proxy (None: lambda = 1)


@register("diffuspec")
@dataclass
class DiffuSpecDrafter(DiffusionDrafter):
    """One dLLM forward over k masks, then a causal-consistency beam search over its candidates."""

    m_max: int = 15
    tau: float = 0.8
    beam: int = 3
    lam: float = 0.5
    proxy: str = "ngram"
    ngram_order: int = 3
    corpus: str = "tasks"
    corpus_size: int = 300
    normalize: bool = True

    def __post_init__(self):
        check_range("diffuspec", "m_max", self.m_max, 1)
        check_range("diffuspec", "tau", self.tau, 0.0, 1.0, low_open=True)
        check_range("diffuspec", "beam", self.beam, 1)
        check_range("diffuspec", "lam", self.lam, 0.0, 1.0)
        check_range("diffuspec", "ngram_order", self.ngram_order, 1)
        check_range("diffuspec", "corpus_size", self.corpus_size, 1)
        if self.proxy not in ("ngram", "none"):
            raise ValueError(f"diffuspec.proxy={self.proxy!r}; expected 'ngram' or 'none'")

    def start(self, verifier, sampling) -> DiffuSpecRun:
        run = super().start(verifier, sampling)
        ngram = (
            fit(self.corpus, self.ngram_order, self.corpus_size, verifier.tokenizer)
            if self.proxy == "ngram"
            else None
        )
        return DiffuSpecRun(**vars(run), ngram=ngram)

    def default_length(self):
        from .length import AdaptiveLength

        return AdaptiveLength()

    def propose(self, run, requests):
        logits = self.block_logits(run, [r.context for r in requests], [r.k for r in requests])
        logp = torch.log_softmax(logits, dim=-1)
        out = []
        for row, request in enumerate(requests):
            row_logp = logp[row, : request.k]
            raw = row_logp.argmax(-1).tolist()
            path = self.search(run, row_logp, request.context)
            out.append(
                Proposal(
                    tokens=stop_cut(path, run.stop_ids),
                    kind="deterministic",
                    raw_len=request.k,
                    gen_len=eos_aware_length(raw, run.stop_ids),
                    forwards=1,
                )
            )
        return out

    def candidates(self, logp: torch.Tensor, stop_ids) -> list[list[int]]:
        """Per position: the smallest top set with mass >= tau (at most m_max), plus the stop tokens."""
        probs, order = logp.exp().sort(dim=-1, descending=True)
        sizes = ((probs.cumsum(-1) < self.tau).sum(-1) + 1).clamp(max=self.m_max).tolist()
        out = []
        for i, size in enumerate(sizes):
            tokens = order[i, :size].tolist()
            tokens += [t for t in sorted(stop_ids) if t not in tokens and logp[i, t] > float("-inf")]
            out.append(tokens)
        return out

    def search(self, run: DiffuSpecRun, logp: torch.Tensor, context: list[int]) -> list[int]:
        """The best path of the beam search over the candidate lattice."""
        lattice = self.candidates(logp, run.stop_ids)
        scores = logp.tolist()
        beams = [(0.0, [], False)]  # (score, path, ended at a stop token)
        for i, cands in enumerate(lattice):
            grown = [b for b in beams if b[2]]
            for score, path, _ in (b for b in beams if not b[2]):
                for token in cands:
                    gain = self.lam * scores[i][token]
                    if run.ngram is not None and self.lam < 1:
                        gain += (1 - self.lam) * run.ngram.logprob(context + path, token)
                    grown.append((score + gain, path + [token], token in run.stop_ids))
            beams = sorted(grown, key=self._rank, reverse=True)[: self.beam]
            if all(done for _, _, done in beams):
                break
        return max(beams, key=self._rank)[1]

    def _rank(self, beam) -> float:
        score, path, _ = beam
        return score / len(path) if self.normalize and path else score
