"""Triton backend of ``attend()``: one flash-style forward kernel over full-length K/V buffers.

``triton_attend`` computes exactly what ``dllm.models.attention.sdpa_attend`` computes (same
arguments, same masking rules, same ``1/sqrt(D)`` scale, same optional float32 LSE), with
one pinned-down corner: a query row that sees no key at all (every key padding or hidden by
the block-causal rule) gets an all-zero output row and ``lse = -inf``, never NaN. (Recent
torch's fused SDPA also returns zeros there; ``sdpa_attend(return_lse=True)``, which does an
explicit softmax, returns NaN in ``out`` for such rows.)

Where it runs:

* CUDA tensors: compiled Triton kernel. bf16/fp16 inputs go through ``tl.dot`` in their own
  dtype with fp32 accumulation; fp32 inputs use IEEE fp32 dots (no TF32).
* CPU tensors: only under the Triton interpreter (``TRITON_INTERPRET=1`` in the environment
  *before* this module is imported, since ``@triton.jit`` reads it when the kernel is
  defined). The interpreter simulates every program instance with numpy; it cannot do
  bf16 math, so there every tile is cast to fp32 right after it is loaded (``UPCAST``).
  This mode is for tests: about 0.05-0.2 s per call at test shapes (Lk <= 64), about 1 s
  at Hq=32, Lk=512, D=128, so CPU end-to-end generation should use the SDPA backend.

This module imports ``triton`` at import time; ``dllm.models.attention.attend`` imports it lazily,
only when the Triton backend is chosen.
"""

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError as exc:  # pragma: no cover - exercised only where triton is absent
    raise ImportError(
        "the Triton attention backend needs the `triton` package; install it with "
        "`pip install 'dllm[triton]'` (or `pip install triton`), or use the SDPA backend "
        "(attend(..., backend='sdpa') / DLLM_ATTENTION=sdpa)"
    ) from exc

__all__ = ["triton_attend"]

_LOG2E = 1.4426950408889634  # log2(e): scores are kept in base-2 units inside the kernel
_SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@triton.jit
def _attn_fwd_kernel(
    Q,
    K,
    V,
    Out,
    Lse,
    QBlk,
    KBlk,
    KValid,
    stride_qb,
    stride_qh,
    stride_qm,
    stride_qd,
    stride_kb,
    stride_kh,
    stride_kn,
    stride_kd,
    stride_vb,
    stride_vh,
    stride_vn,
    stride_vd,
    stride_ob,
    stride_oh,
    stride_om,
    stride_od,
    stride_lb,
    stride_lh,
    stride_lm,
    stride_qbb,
    stride_qbm,
    stride_kbb,
    stride_kbn,
    stride_kvb,
    stride_kvn,
    num_q_heads,
    group_size,
    len_q,
    len_k,
    head_dim,
    qk_scale,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    HAS_KEY_VALID: tl.constexpr,
    BLOCK_CAUSAL: tl.constexpr,
    RETURN_LSE: tl.constexpr,
    UPCAST: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    """Attention forward for one tile of BLOCK_M queries of one (batch row, query head).

    Idea (flash attention, forward only): stream the keys/values of this row and kv head in
    tiles of BLOCK_N, keep per query a running max ``m`` of the scores, a running sum ``l`` of
    ``exp(score - m)`` and an unnormalised output ``acc``; when ``m`` grows, rescale ``l`` and
    ``acc`` by ``exp(m_old - m_new)``. At the end ``out = acc / l`` and ``lse = m + log(l)``.
    Scores are pre-multiplied by ``log2(e)`` (folded into ``qk_scale``) so ``exp2`` can be
    used; ``lse`` is converted back to natural log on store. All softmax state is fp32.

    Layout: grid = (cdiv(len_q, BLOCK_M), B * Hq); program (i, b * Hq + h) handles queries
    ``[i * BLOCK_M, (i + 1) * BLOCK_M)`` of batch row ``b``, query head ``h``, which reads kv
    head ``h // group_size`` (GQA). Q/K/V/Out are addressed purely through strides, so any
    strided view works. ``BLOCK_D`` is the head dim rounded up to a power of two; the extra
    lanes are loaded as zeros and never stored.

    Masking rules (a key is *visible* to a query when all hold):
      * the key index is < len_k (tail of the last key tile);
      * ``KValid[b, n] != 0`` when HAS_KEY_VALID (padding mask);
      * ``KBlk[b, n] <= QBlk[b, m]`` when BLOCK_CAUSAL; the block ids ``pos // block_size``
        are precomputed on the host (floor division, like torch).
    Invisible scores are set to -inf. The max used for ``exp`` is replaced by 0 while it is
    still -inf, so a query with no visible key so far contributes ``exp2(-inf) = 0`` instead
    of NaN; a query that never sees a key ends with ``l = 0`` and stores zeros and
    ``lse = -inf``. Query rows >= len_q are computed on zero-padded data and not stored.
    """
    pid_m = tl.program_id(0)
    pid_bh = tl.program_id(1)
    b = (pid_bh // num_q_heads).to(tl.int64)
    h = (pid_bh % num_q_heads).to(tl.int64)
    kv_h = h // group_size

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    m_ok = offs_m < len_q
    d_ok = offs_d < head_dim

    q_ptrs = Q + b * stride_qb + h * stride_qh + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qd
    q = tl.load(q_ptrs, mask=m_ok[:, None] & d_ok[None, :], other=0.0)
    if UPCAST:
        q = q.to(tl.float32)
    if BLOCK_CAUSAL:
        q_blk = tl.load(QBlk + b * stride_qbb + offs_m * stride_qbm, mask=m_ok, other=0)

    k_base = K + b * stride_kb + kv_h * stride_kh
    v_base = V + b * stride_vb + kv_h * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    for start_n in range(0, len_k, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        n_ok = offs_n < len_k

        # K tile loaded already transposed: [BLOCK_D, BLOCK_N].
        kt = tl.load(
            k_base + offs_n[None, :] * stride_kn + offs_d[:, None] * stride_kd,
            mask=d_ok[:, None] & n_ok[None, :],
            other=0.0,
        )
        if UPCAST:
            kt = kt.to(tl.float32)
        s = tl.dot(q, kt, input_precision=DOT_PRECISION) * qk_scale  # [BLOCK_M, BLOCK_N], log2 units

        visible = n_ok[None, :]
        if HAS_KEY_VALID:
            k_valid = tl.load(KValid + b * stride_kvb + offs_n * stride_kvn, mask=n_ok, other=0)
            visible = visible & (k_valid != 0)[None, :]
        if BLOCK_CAUSAL:
            k_blk = tl.load(KBlk + b * stride_kbb + offs_n * stride_kbn, mask=n_ok, other=0)
            visible = visible & (k_blk[None, :] <= q_blk[:, None])
        s = tl.where(visible, s, float("-inf"))

        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # safe reference while nothing is visible
        p = tl.exp2(s - m_ref[:, None])
        alpha = tl.exp2(m_i - m_ref)
        l_i = l_i * alpha + tl.sum(p, axis=1)

        v = tl.load(
            v_base + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vd,
            mask=n_ok[:, None] & d_ok[None, :],
            other=0.0,
        )
        if UPCAST:
            v = v.to(tl.float32)
        acc = acc * alpha[:, None]
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PRECISION)
        m_i = m_new

    has_key = l_i > 0.0
    out = acc / tl.where(has_key, l_i, 1.0)[:, None]
    o_ptrs = Out + b * stride_ob + h * stride_oh + offs_m[:, None] * stride_om + offs_d[None, :] * stride_od
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=m_ok[:, None] & d_ok[None, :])
    if RETURN_LSE:
        # back to natural log: ln(sum exp(s)) = (m + log2(l)) * ln(2)
        lse = tl.where(
            has_key, (m_i + tl.log2(tl.where(has_key, l_i, 1.0))) * 0.6931471805599453, float("-inf")
        )
        tl.store(Lse + b * stride_lb + h * stride_lh + offs_m * stride_lm, lse, mask=m_ok)


def _interpreter_kernel() -> bool:
    """True when the kernel above was defined under ``TRITON_INTERPRET=1``."""
    try:
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:  # pragma: no cover - layout of older/newer triton
        return os.environ.get("TRITON_INTERPRET") == "1"
    return isinstance(_attn_fwd_kernel, InterpretedFunction)


def _check_tile(name: str, value: int) -> int:
    if value < 16 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 16, got {value}")
    return value


def triton_attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    q_pos: torch.Tensor | None = None,
    k_pos: torch.Tensor | None = None,
    k_valid: torch.Tensor | None = None,
    block_size: int | None = None,
    return_lse: bool = False,
    block_m: int | None = None,
    block_n: int | None = None,
):
    """Triton backend of ``attend()``; same arguments and results as ``sdpa_attend``.

    ``q [B, Hq, Lq, D]``, ``k, v [B, Hkv, Lk, D]`` (``Hq % Hkv == 0``; q head ``h`` reads kv
    head ``h // (Hq // Hkv)``), any strides. ``k_valid [B, Lk]`` (bool) hides padding keys;
    ``block_size`` with ``q_pos [B, Lq]`` / ``k_pos [B, Lk]`` applies the block-causal rule
    ``k_pos // bs <= q_pos // bs``. Position / validity tensors may also be broadcastable to
    those shapes. Returns ``out [B, Hq, Lq, D]`` in q's dtype and, with ``return_lse``,
    ``lse [B, Hq, Lq]`` float32 (natural log of the sum of ``exp(q.k / sqrt(D))`` over the
    visible keys).

    A query with no visible key gets zeros in ``out`` and ``-inf`` in ``lse`` (never NaN;
    ``sdpa_attend(return_lse=True)`` gives NaN there). ``block_m`` / ``block_n`` override the
    query / key tile sizes (powers of two >= 16); they change the reduction order only.

    CPU tensors need the Triton interpreter (``TRITON_INTERPRET=1`` set before import);
    otherwise a ``ValueError`` is raised.
    """
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(
            f"q, k, v must be 4-D [B, H, L, D]; got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    B, Hq, Lq, D = q.shape
    Bk, Hkv, Lk, Dk = k.shape
    if Bk != B or tuple(v.shape) != tuple(k.shape) or Dk != D:
        raise ValueError(
            f"shape mismatch: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} "
            "(need k, v [B, Hkv, Lk, D] with q's B and D)"
        )
    if D == 0:
        raise ValueError("head dim 0 is not supported")
    if Hkv == 0 or Hq % Hkv != 0:
        raise ValueError(f"query heads {Hq} are not a multiple of key/value heads {Hkv}")
    if q.dtype not in _SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(
            f"triton_attend needs q, k, v of one dtype among float32/float16/bfloat16; "
            f"got {q.dtype}, {k.dtype}, {v.dtype}"
        )
    if block_size is not None and (q_pos is None or k_pos is None):
        raise ValueError("block-causal attention needs q_pos and k_pos")
    device = q.device
    for name, t in (("k", k), ("v", v), ("q_pos", q_pos), ("k_pos", k_pos), ("k_valid", k_valid)):
        if t is not None and t.device != device:
            raise ValueError(f"{name} is on {t.device} but q is on {device}")
    interpreted = _interpreter_kernel()
    if device.type == "cpu" and (os.environ.get("TRITON_INTERPRET") != "1" or not interpreted):
        raise ValueError(
            "triton_attend got CPU tensors, but Triton kernels run on CPU only under the Triton "
            "interpreter: set TRITON_INTERPRET=1 in the environment before dllm.models.triton_attention "
            "(and triton) are imported, or use the SDPA backend (backend='sdpa' / DLLM_ATTENTION=sdpa)"
        )

    out = torch.empty((B, Hq, Lq, D), dtype=q.dtype, device=device)
    lse = torch.empty((B, Hq, Lq), dtype=torch.float32, device=device) if return_lse else None
    if B == 0 or Hq == 0 or Lq == 0:
        return (out, lse) if return_lse else out

    # Side inputs: block ids (floor division as in torch) and the key-valid flags, expanded to
    # [B, L] (stride 0 where they broadcast). Unused pointers get a harmless placeholder.
    dummy = torch.zeros(1, dtype=torch.int64, device=device)
    if block_size is not None:
        q_blk = torch.div(q_pos, block_size, rounding_mode="floor").to(torch.int64).expand(B, Lq)
        k_blk = torch.div(k_pos, block_size, rounding_mode="floor").to(torch.int64).expand(B, Lk)
    else:
        q_blk = k_blk = dummy.expand(1, 1)
    if k_valid is not None:
        kv_flags = (k_valid != 0).to(torch.int8).expand(B, Lk)
    else:
        kv_flags = dummy.expand(1, 1)

    # Tiles: the interpreter wants few, large numpy tiles; a GPU wants 64x64 (32 keys for big D).
    block_d = max(16, triton.next_power_of_2(D))
    if block_m is None:
        block_m = max(16, min(64, triton.next_power_of_2(Lq)))
    if block_n is None:
        block_n = 64 if (interpreted or block_d <= 128) else 32
    _check_tile("block_m", block_m)
    _check_tile("block_n", block_n)

    upcast = interpreted or q.dtype == torch.float32
    lse_arg = lse if lse is not None else out
    lse_strides = lse.stride() if lse is not None else (0, 0, 0)
    grid = (triton.cdiv(Lq, block_m), B * Hq)
    _attn_fwd_kernel[grid](
        q,
        k,
        v,
        out,
        lse_arg,
        q_blk,
        k_blk,
        kv_flags,
        *q.stride(),
        *k.stride(),
        *v.stride(),
        *out.stride(),
        *lse_strides,
        *q_blk.stride(),
        *k_blk.stride(),
        *kv_flags.stride(),
        Hq,
        Hq // Hkv,
        Lq,
        Lk,
        D,
        _LOG2E / math.sqrt(D),
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        BLOCK_D=block_d,
        HAS_KEY_VALID=k_valid is not None,
        BLOCK_CAUSAL=block_size is not None,
        RETURN_LSE=return_lse,
        UPCAST=upcast,
        DOT_PRECISION="ieee" if upcast else "tf32",
        num_warps=4 if block_d <= 64 else 8,
        num_stages=2,
    )
    return (out, lse) if return_lse else out
