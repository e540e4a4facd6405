"""Verification rules: how many draft tokens a verifier forward accepts, and which token follows.

The rule is chosen by the proposal's declared kind (specs/drafters.md §2):

- **greedy** (temperature 0, any kind): accept the longest prefix equal to the verifier's argmax;
  the next token is the argmax after it. The output is the verifier's greedy output exactly.
- **ratio** (``independent`` / ``sequential`` drafts, sampled from a known q): accept token y with
  probability min(1, p(y) / q(y)); on a rejection draw from norm(max(0, p − q)) (Leviathan et al.
  2023, arXiv 2211.17192; Chen et al. 2023, arXiv 2302.01318). Lossless for any q the token was
  really drawn from.
- **point mass** (``deterministic`` drafts: argmax, path search, multi-step denoising): q is a
  point mass on y, so accept with probability p(y) and on a rejection draw from p with y removed.
  Lossless for any drafting procedure whose randomness is independent of the verifier's.

After a fully accepted draft the bonus token is drawn from the verifier's next distribution.
``p`` is the verifier's distribution *after* its logits processors (temperature, top-k, top-p);
lossless means lossless with respect to that processed distribution. All maths in float32.
"""

from __future__ import annotations

import torch

KINDS = ("independent", "sequential", "deterministic")


def accept_probability(p: torch.Tensor, q: torch.Tensor | None, token: int) -> float:
    """Probability of accepting draft ``token`` at one position (``q`` None: the point-mass rule)."""
    if q is None:
        return float(p[token])
    if q[token] <= 0:
        raise ValueError(
            f"draft token {token} has probability 0 under the proposal q it was said to be drawn from"
        )
    return float(torch.clamp(p[token] / q[token], max=1.0))


def residual(p: torch.Tensor, q: torch.Tensor | None, token: int) -> torch.Tensor:
    """The distribution a rejected position is resampled from."""
    if q is None:
        r = p.clone()
        r[token] = 0.0
    else:
        r = torch.clamp(p - q, min=0.0)
    total = r.sum()
    # Zero mass only when a rejection has probability 0 (p == q, or p(token) == 1): any choice is exact.
    return r / total if total > 0 else p


def verify(
    p: torch.Tensor,
    draft: list[int],
    q: torch.Tensor | None,
    *,
    greedy: bool,
    generator: torch.Generator | None,
) -> tuple[int, int]:
    """One row of one round. ``p [m+1, V]``: the verifier's processed probabilities (greedy: its
    logits), row i for the position of ``draft[i]`` (row m: the bonus position). Returns
    ``(n accepted, next token)``: a correction after a rejection, else the bonus token."""
    m = len(draft)
    if greedy:
        target = p.argmax(-1).tolist()
        n = 0
        while n < m and draft[n] == target[n]:
            n += 1
        return n, target[n]
    coins = torch.rand(m, generator=generator, device=p.device).tolist() if m else []
    for i, token in enumerate(draft):
        q_i = None if q is None else q[i]
        if coins[i] >= accept_probability(p[i], q_i, token):
            return i, sample(residual(p[i], q_i, token), generator)
    return m, sample(p[m], generator)


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(probs, 1, generator=generator))
