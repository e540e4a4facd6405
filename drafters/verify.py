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
``verify_rows`` applies these rules to every row of a round at once (the drafts padded to the
longest, per-row lengths and logit offsets; one host read); ``verify`` is the one-row reference
the tests compare it with.
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


def verify_rows(
    scores: torch.Tensor,
    first: list[int],
    drafts: list[list[int]],
    qs: list[torch.Tensor | None],
    *,
    probabilities=None,
    generators: list[torch.Generator | None],
) -> tuple[list[int], list[int]]:
    """Every row of one round at once. ``scores [B, F, V]``: the verifier's logits over each row's
    fed columns, column ``first[b] + i`` scoring ``drafts[b][i]`` (``first[b] + m``: the bonus
    position); ``qs[b]``: the ``[m, V]`` distributions row b's draft was drawn from (None: a
    deterministic draft, the point-mass rule); ``probabilities``: logits ``[N, V]`` -> the processed
    distribution (None: greedy verification). Returns ``(accepted, next token)`` per row, read from
    the device once."""
    batch, device = len(drafts), scores.device
    lengths = torch.tensor([len(d) for d in drafts], device=device)
    width = max((len(d) for d in drafts), default=0)
    draft = torch.zeros(batch, width, dtype=torch.long, device=device)
    for row, tokens in enumerate(drafts):
        draft[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long, device=device)
    within = torch.arange(width, device=device)[None] < lengths[:, None]
    columns = (torch.tensor(first, device=device)[:, None] + torch.arange(width + 1, device=device)).clamp(
        max=scores.shape[1] - 1
    )
    rows = torch.arange(batch, device=device)[:, None]
    scored = scores[rows, columns]  # [B, m + 1, V]: the positions of the draft, then the bonus
    if probabilities is None:
        target = scored.argmax(-1)
        accepted = ((draft == target[:, :width]) & within).long().cumprod(1).sum(1)
        token = target.gather(1, accepted[:, None])[:, 0]
        return _read(accepted, token)
    p = probabilities(scored.flatten(0, 1)).view_as(scored)
    ratio = torch.tensor([q is not None for q in qs], device=device)
    q = torch.zeros(batch, width, scored.shape[-1], device=device)
    for row, q_row in enumerate(qs):
        if q_row is not None and len(q_row):
            q[row, : len(q_row)] = q_row
    p_draft = p[:, :width].gather(2, draft[..., None])[..., 0]
    q_draft = q.gather(2, draft[..., None])[..., 0]
    impossible = (within & ratio[:, None] & (q_draft <= 0)).any()
    chance = torch.where(ratio[:, None], (p_draft / q_draft).clamp(max=1.0), p_draft)
    coins = torch.ones(batch, width, device=device)  # padding: never accepted
    for row, tokens in enumerate(drafts):
        if tokens:
            coins[row, : len(tokens)] = torch.rand(len(tokens), generator=generators[row], device=device)
    accepted = ((coins < chance) & within).long().cumprod(1).sum(1)
    p_next = p[torch.arange(batch, device=device), accepted]  # the correction's or the bonus's position
    if width:
        at = accepted.clamp(max=width - 1)[:, None]
        q_next = q.gather(1, at[..., None].expand(-1, -1, q.shape[-1]))[:, 0]
        rejected_token = draft.gather(1, at)
        point_mass = p_next.scatter(1, rejected_token, 0.0)
        left = torch.where(ratio[:, None], (p_next - q_next).clamp(min=0.0), point_mass)
        total = left.sum(-1, keepdim=True)
        # zero mass only when a rejection has probability 0 (p == q, or p(token) == 1): any choice is exact
        left = torch.where(total > 0, left / total, p_next)
        p_next = torch.where((accepted < lengths)[:, None], left, p_next)
    token = torch.cat([torch.multinomial(p_next[row], 1, generator=generators[row]) for row in range(batch)])
    return _read(accepted, token, impossible)


def _read(accepted: torch.Tensor, token: torch.Tensor, impossible=None) -> tuple[list[int], list[int]]:
    """The round's one host read: accepted counts, next tokens (and the deferred q check)."""
    flags = [accepted, token] + ([] if impossible is None else [impossible.long().reshape(1)])
    values = torch.cat(flags).tolist()
    batch = accepted.shape[0]
    if impossible is not None and values[-1]:
        raise ValueError("a draft token has probability 0 under the proposal q it was said to be drawn from")
    return values[:batch], values[batch : 2 * batch]
