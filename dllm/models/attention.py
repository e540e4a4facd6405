"""One attention entry point, ``attend()``, over full-length position-indexed K/V buffers.

Queries are a padded set of canvas columns per row; keys/values are the whole canvas (the
cache buffers). Two backends compute the same thing: a Triton kernel (CUDA; or the Triton
interpreter on CPU for tests) and PyTorch's scaled-dot-product attention (everywhere). The
backend is picked per call: ``backend=`` argument, else the ``DLLM_ATTENTION`` environment
variable (``sdpa`` / ``triton``), else Triton on CUDA tensors when triton imports, SDPA otherwise.
The kernel is forward-only: when autograd needs gradients through attention (training), SDPA is
picked, and forcing Triton there is an error.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F

BACKENDS = ("sdpa", "triton")


def _resolve_backend(backend: str | None, device: torch.device, needs_grad: bool = False) -> str:
    choice = backend or os.environ.get("DLLM_ATTENTION") or ""
    if choice:
        if choice not in BACKENDS:
            raise ValueError(f"attention backend {choice!r} is unknown; choose one of {BACKENDS}")
        if choice == "triton" and needs_grad:
            raise ValueError(
                "the Triton attention kernel is forward-only (no backward): use the 'sdpa' backend "
                "for training, or run decoding under torch.no_grad()"
            )
        return choice
    if needs_grad:  # training: only SDPA has a backward
        return "sdpa"
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "sdpa"
        return "triton"
    return "sdpa"


def attention_mask(
    q_pos: torch.Tensor | None,
    k_pos: torch.Tensor | None,
    k_valid: torch.Tensor | None,
    block_size: int | None,
) -> torch.Tensor | None:
    """Boolean ``[B, 1, Lq, Lk]`` mask (True = may attend), or None when every key is visible.

    ``k_valid`` hides padding; ``block_size`` applies the block-diffusion rule: a query in
    block ``q_pos // bs`` sees keys of its own and earlier blocks only.
    """
    mask = None
    if k_valid is not None:
        mask = k_valid[:, None, None, :]
    if block_size is not None:
        if q_pos is None or k_pos is None:
            raise ValueError("block-causal attention needs q_pos and k_pos")
        causal = (k_pos[:, None, None, :] // block_size) <= (q_pos[:, None, :, None] // block_size)
        mask = causal if mask is None else (mask & causal)
    return mask


def sdpa_attend(
    q, k, v, *, q_pos=None, k_pos=None, k_valid=None, block_size=None, return_lse=False, attn_mask=None
):
    """Reference backend: ``torch.nn.functional.scaled_dot_product_attention`` (its own GQA: query
    head ``h`` reads K/V head ``h // (Hq / Hkv)``, as ``repeat_interleave`` would, without copying
    the full-length buffers)."""
    mask = attention_mask(q_pos, k_pos, k_valid, block_size)
    if attn_mask is not None:
        mask = attn_mask if mask is None else (mask & attn_mask)
    if not return_lse:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=q.shape[1] != k.shape[1])
    n_rep = q.shape[1] // k.shape[1]
    if n_rep > 1:
        k = k.repeat_interleave(n_rep, dim=1)
        v = v.repeat_interleave(n_rep, dim=1)
    scores = torch.matmul(q.float(), k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    lse = torch.logsumexp(scores, dim=-1)
    probs = torch.exp(scores - lse[..., None]).nan_to_num(0.0)  # a query with no visible key -> zeros
    out = torch.matmul(probs, v.float()).to(q.dtype)
    return out, lse


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    q_pos: torch.Tensor | None = None,
    k_pos: torch.Tensor | None = None,
    k_valid: torch.Tensor | None = None,
    block_size: int | None = None,
    return_lse: bool = False,
    backend: str | None = None,
    attn_mask: torch.Tensor | None = None,
):
    """Attention of queries over the full K/V buffers.

    Shapes: ``q [B, Hq, Lq, D]``; ``k, v [B, Hkv, Lk, D]`` with ``Hq % Hkv == 0`` (GQA);
    ``q_pos [B, Lq]`` and ``k_pos [B, Lk]`` are position ids (only the block-causal rule reads
    them); ``k_valid [B, Lk]`` marks real (non-padding) keys. Scale is ``1/sqrt(D)``, no causal
    mask. Returns ``out [B, Hq, Lq, D]`` and, with ``return_lse``, the natural-log
    log-sum-exp of the scaled scores ``[B, Hq, Lq]`` in float32. ``attn_mask [B, 1, Lq, Lk]``: an
    explicit boolean mask (True = may attend) on top of the rules above; SDPA backend only
    (training layouts such as Fast-dLLM v2's ``[x_t ; x_0]``).
    """
    if q.shape[1] % k.shape[1] != 0:
        raise ValueError(f"query heads {q.shape[1]} are not a multiple of key/value heads {k.shape[1]}")
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
    chosen = _resolve_backend(backend, q.device, needs_grad)
    if attn_mask is not None:
        if chosen == "triton" and backend == "triton":
            raise ValueError("an explicit attn_mask is only supported by the 'sdpa' attention backend")
        chosen = "sdpa"
    if chosen == "triton":
        from .triton_attention import triton_attend

        return triton_attend(
            q, k, v, q_pos=q_pos, k_pos=k_pos, k_valid=k_valid, block_size=block_size, return_lse=return_lse
        )
    return sdpa_attend(
        q,
        k,
        v,
        q_pos=q_pos,
        k_pos=k_pos,
        k_valid=k_valid,
        block_size=block_size,
        return_lse=return_lse,
        attn_mask=attn_mask,
    )
