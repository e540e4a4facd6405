"""Checks of ``dllm.models.triton_attention.triton_attend`` against ``sdpa_attend``, run under the
Triton interpreter in a separate process (``TRITON_INTERPRET=1`` must be set before triton is
imported, so pytest cannot run these in its own process).

Usage: ``TRITON_INTERPRET=1 python tests/_triton_attention_checks.py [CASE ...]`` (no case =
all); on a CUDA machine ``DLLM_CHECKS_DEVICE=cuda python tests/_triton_attention_checks.py`` runs the
same cases with the compiled kernel on the GPU (every tensor is created there; SDPA on the GPU is
the reference; fp32 matmuls stay IEEE, TF32 off). Prints one JSON object per case on stdout,
``{"case", "ok", "max_abs_err", "seconds", "error"}``; ``max_abs_err`` maps each comparison to its
max |triton - reference| over the rows that see at least one key. Exit status 1 when a case fails.
Used by ``tests/test_triton_attention.py``.
"""

import json
import math
import os
import sys
import time
import traceback

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dllm.models.attention import attend, attention_mask, sdpa_attend  # noqa: E402
from dllm.models.triton_attention import triton_attend  # noqa: E402

ATOL = 1e-5  # fp32 vs fp32 reference
DEVICE = os.environ.get("DLLM_CHECKS_DEVICE", "cpu")
if DEVICE != "cpu":
    torch.set_default_device(DEVICE)  # every tensor below (inputs, masks, positions) is made there
    torch.backends.cuda.matmul.allow_tf32 = False  # an IEEE fp32 reference, as the kernel's fp32 dots


# ----------------------------------------------------------------------------------- helpers
def _rand(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=torch.float32).to(dtype)


def _visible_rows(q, k, q_pos, k_pos, k_valid, block_size):
    """Bool [B, Hq, Lq]: rows that see at least one key."""
    B, Hq, Lq, _ = q.shape
    mask = attention_mask(q_pos, k_pos, k_valid, block_size)
    if mask is None:
        return torch.ones(B, Hq, Lq, dtype=torch.bool)
    return mask.expand(B, 1, Lq, k.shape[2]).any(-1).expand(B, Hq, Lq)


def _compare(errs, name, got, ref, rows, atol=ATOL, no_key_value=0.0):
    """Record max |got - ref| over ``rows``; the other rows (no visible key) must all equal
    ``no_key_value`` (0 for outputs, -inf for LSE)."""
    got = got.float()
    ref = ref.float()
    if got.shape != ref.shape:
        raise AssertionError(f"{name}: shape {tuple(got.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(got[rows]).all():
        raise AssertionError(f"{name}: non-finite values in the Triton output")
    err = (got - ref).abs()[rows].max().item() if rows.any() else 0.0
    errs[name] = err
    if not err <= atol:
        raise AssertionError(f"{name}: max abs error {err:.3e} > atol {atol:.1e}")
    if (~rows).any():
        dead = got[~rows]
        errs[name + "/no-key-rows"] = int((dead != no_key_value).sum())  # count of wrong entries
        if not torch.all(dead == no_key_value):
            raise AssertionError(
                f"{name}: rows with no visible key must be {no_key_value}, got {dead.unique()[:5]}"
            )


def _check_both(errs, tag, q, k, v, atol=ATOL, **kw):
    """triton_attend vs sdpa_attend, with and without return_lse; block_m/block_n go to Triton only."""
    tiles = {name: kw.pop(name) for name in ("block_m", "block_n") if name in kw}
    rows = _visible_rows(q, k, kw.get("q_pos"), kw.get("k_pos"), kw.get("k_valid"), kw.get("block_size"))
    out = triton_attend(q, k, v, **kw, **tiles)
    ref = sdpa_attend(q.float(), k.float(), v.float(), **kw)
    if out.dtype != q.dtype:
        raise AssertionError(f"{tag}: output dtype {out.dtype} != q dtype {q.dtype}")
    _compare(errs, f"{tag}/out", out, ref, rows[..., None].expand_as(out), atol)
    out2, lse = triton_attend(q, k, v, return_lse=True, **kw, **tiles)
    ref2, ref_lse = sdpa_attend(q.float(), k.float(), v.float(), return_lse=True, **kw)
    if lse.dtype != torch.float32 or lse.shape != q.shape[:3]:
        raise AssertionError(f"{tag}: lse has dtype {lse.dtype} shape {tuple(lse.shape)}")
    _compare(errs, f"{tag}/out(lse)", out2, ref2, rows[..., None].expand_as(out2), atol)
    _compare(errs, f"{tag}/lse", lse, ref_lse, rows, atol, no_key_value=float("-inf"))
    if not torch.equal(out, out2):
        raise AssertionError(f"{tag}: out differs with and without return_lse")
    return rows


def _left_right_valid(B, Lk, n_valid, left):
    """k_valid [B, Lk] with n_valid[b] real keys, padded on the left or the right."""
    k_valid = torch.zeros(B, Lk, dtype=torch.bool)
    for b, (n, is_left) in enumerate(zip(n_valid, left)):
        if is_left:
            k_valid[b, Lk - n :] = True
        else:
            k_valid[b, :n] = True
    return k_valid


def _positions_from_valid(k_valid):
    """Position ids that count only real keys (left padding shifts them); padding gets -1."""
    pos = k_valid.long().cumsum(-1) - 1
    return pos.masked_fill(~k_valid, -1)


# ------------------------------------------------------------------------------------- cases
def case_mha(errs):
    q, k, v = _rand(2, 3, 40, 32), _rand(2, 3, 40, 32), _rand(2, 3, 40, 32)
    _check_both(errs, "tiles16", q, k, v, block_m=16, block_n=16)  # ragged last tiles (40 = 2*16 + 8)
    _check_both(errs, "default-tiles", q, k, v)


def case_gqa_4_2(errs):
    q, k, v = _rand(2, 4, 20, 16), _rand(2, 2, 37, 16), _rand(2, 2, 37, 16)
    _check_both(errs, "gqa4:2", q, k, v, block_m=16, block_n=16)


def case_gqa_6_1(errs):
    q, k, v = _rand(1, 6, 9, 16), _rand(1, 1, 33, 16), _rand(1, 1, 33, 16)
    _check_both(errs, "gqa6:1", q, k, v, block_n=16)


def case_partial_queries(errs):
    """A few queries at arbitrary (unsorted) canvas positions over the whole K/V buffer."""
    B, Hq, Hkv, Lk, D = 2, 4, 2, 48, 16
    k, v = _rand(B, Hkv, Lk, D), _rand(B, Hkv, Lk, D)
    x = _rand(B, Hq, Lk, D)  # queries of the whole canvas; keep 7 columns
    q_pos = torch.stack([torch.randperm(Lk)[:7] for _ in range(B)])
    q = torch.stack([x[b][:, q_pos[b]] for b in range(B)])
    k_pos = torch.arange(Lk).expand(B, Lk)
    _check_both(errs, "bidirectional", q, k, v, q_pos=q_pos, k_pos=k_pos, block_m=16, block_n=16)
    _check_both(errs, "block-causal8", q, k, v, q_pos=q_pos, k_pos=k_pos, block_size=8, block_n=16)


def case_varlen(errs):
    """Rows with different numbers of real keys, left and right padded."""
    B, H, Lk, D = 4, 2, 45, 16
    q, k, v = _rand(B, H, 13, D), _rand(B, H, Lk, D), _rand(B, H, Lk, D)
    k_valid = _left_right_valid(B, Lk, n_valid=[45, 30, 9, 17], left=[False, True, False, True])
    _check_both(errs, "varlen", q, k, v, k_valid=k_valid, block_m=16, block_n=16)


def case_padding_mask(errs):
    """Arbitrary holes in the key set (e.g. EOS-truncated tails, dropped columns)."""
    B, Hq, Hkv, Lk, D = 2, 4, 2, 40, 32
    q, k, v = _rand(B, Hq, 17, D), _rand(B, Hkv, Lk, D), _rand(B, Hkv, Lk, D)
    k_valid = torch.rand(B, Lk) < 0.6
    k_valid[:, 0] = True
    _check_both(errs, "holes", q, k, v, k_valid=k_valid, block_n=16)


def _block_causal(errs, bs):
    """Block-causal over a left/right padded batch; positions count real tokens only."""
    B, Hq, Hkv, Lk, D = 3, 2, 1, 40, 16
    k, v = _rand(B, Hkv, Lk, D), _rand(B, Hkv, Lk, D)
    k_valid = _left_right_valid(B, Lk, n_valid=[40, 27, 33], left=[False, True, True])
    k_pos = _positions_from_valid(k_valid)
    q_full = _rand(B, Hq, Lk, D)
    # all canvas columns as queries (padding queries see nothing: zeros), then a partial set.
    rows = _check_both(
        errs,
        "all-columns",
        q_full,
        k,
        v,
        q_pos=k_pos,
        k_pos=k_pos,
        k_valid=k_valid,
        block_size=bs,
        block_m=16,
        block_n=16,
    )
    if rows.all():
        raise AssertionError("expected padding queries with no visible key in this case")
    cols = torch.tensor([[3, 39, 17, 8, 25], [13, 20, 39, 14, 30], [7, 8, 9, 36, 22]])
    q = torch.stack([q_full[b][:, cols[b]] for b in range(B)])
    q_pos = torch.gather(k_pos, 1, cols)
    _check_both(errs, "partial", q, k, v, q_pos=q_pos, k_pos=k_pos, k_valid=k_valid, block_size=bs)
    # no k_valid, positions shifted by the padding (negative on padding): the block id must be
    # floor(pos / bs) as in torch, e.g. -1 // 4 == -1, not C-style truncation (0).
    shifted = torch.arange(Lk)[None, :] - torch.tensor([[0], [13], [7]])
    _check_both(
        errs,
        "negative-positions",
        q_full,
        k,
        v,
        q_pos=shifted,
        k_pos=shifted,
        block_size=bs,
        block_m=16,
        block_n=16,
    )


def case_block_causal_4(errs):
    _block_causal(errs, 4)


def case_block_causal_8(errs):
    _block_causal(errs, 8)


def case_lse(errs):
    """LSE vs an independent torch.logsumexp of the masked, scaled fp32 scores."""
    B, Hq, Hkv, Lk, D = 2, 4, 2, 36, 24
    q, k, v = _rand(B, Hq, 11, D), _rand(B, Hkv, Lk, D), _rand(B, Hkv, Lk, D)
    k_valid = _left_right_valid(B, Lk, n_valid=[36, 21], left=[False, True])
    k_pos = _positions_from_valid(k_valid)
    q_pos = torch.stack([torch.randperm(36)[:11], torch.randperm(21)[:11]])
    for bs in (None, 4):
        _, lse = triton_attend(
            q, k, v, q_pos=q_pos, k_pos=k_pos, k_valid=k_valid, block_size=bs, return_lse=True, block_n=16
        )
        kk = k.repeat_interleave(Hq // Hkv, dim=1)
        scores = (q @ kk.transpose(-1, -2)) / math.sqrt(D)
        vis = k_valid[:, None, None, :]
        if bs is not None:
            vis = vis & ((k_pos // bs)[:, None, None, :] <= (q_pos // bs)[:, None, :, None])
        ref = torch.logsumexp(scores.masked_fill(~vis, float("-inf")), dim=-1)
        rows = vis.expand_as(scores).any(-1)
        _compare(errs, f"lse(bs={bs})", lse, ref, rows, no_key_value=float("-inf"))


def case_head_dim(errs):
    """Head dims that are not powers of two (24, 20) or below the 16-wide minimum tile (8)."""
    for D in (24, 20, 8):
        q, k, v = _rand(2, 2, 10, D), _rand(2, 1, 29, D), _rand(2, 1, 29, D)
        k_valid = _left_right_valid(2, 29, [29, 12], [False, True])
        _check_both(errs, f"D={D}", q, k, v, k_valid=k_valid, block_n=16)


def case_lq_1(errs):
    q, k, v = _rand(3, 4, 1, 32), _rand(3, 2, 50, 32), _rand(3, 2, 50, 32)
    k_valid = _left_right_valid(3, 50, [50, 20, 1], [False, True, False])
    _check_both(errs, "Lq=1", q, k, v, k_valid=k_valid)
    pos = torch.tensor([[49], [30], [0]])
    _check_both(
        errs,
        "Lq=1/block-causal",
        q,
        k,
        v,
        q_pos=pos,
        k_pos=torch.arange(50).expand(3, 50),
        k_valid=k_valid,
        block_size=8,
        block_n=16,
    )


def case_all_keys_invalid(errs):
    """Batch row 1 has no valid key: zeros and lse -inf there, the other rows unchanged."""
    q, k, v = _rand(3, 2, 6, 16), _rand(3, 2, 20, 16), _rand(3, 2, 20, 16)
    k_valid = torch.ones(3, 20, dtype=torch.bool)
    k_valid[1] = False
    rows = _check_both(errs, "row1-empty", q, k, v, k_valid=k_valid)
    if rows[1].any() or not rows[0].all():
        raise AssertionError("visibility bookkeeping is off")
    out, lse = triton_attend(q, k, v, k_valid=k_valid, return_lse=True)
    if not (torch.all(out[1] == 0) and torch.all(lse[1] == float("-inf"))):
        raise AssertionError("row with no valid key must give zeros and lse = -inf")
    alone = triton_attend(q[[0, 2]], k[[0, 2]], v[[0, 2]])
    errs["other-rows-vs-batch-without-row1"] = (alone - out[[0, 2]]).abs().max().item()
    if errs["other-rows-vs-batch-without-row1"] > ATOL:
        raise AssertionError("valid rows change when an empty row shares the batch")


def case_noncontiguous(errs):
    """Strided views: q from a [B, L, H, D] tensor, k/v slices of a bigger buffer, masks as views."""
    B, Hq, Hkv, L, D = 2, 4, 2, 24, 16
    q = _rand(B, L, Hq, D).transpose(1, 2)  # [B, Hq, L, D], non-contiguous
    kv = _rand(B, 2 * Hkv, 64, D)[:, :, 5 : 5 + 37]  # [B, 2*Hkv, 37, D] slice
    k, v = kv[:, :Hkv], kv[:, Hkv:]
    k_valid = (torch.rand(Lk := 37, B) < 0.7).t()
    k_valid[:, -1] = True
    pos_buf = torch.arange(2 * Lk).view(Lk, 2).t()  # [2, Lk] view with stride (1, 2)
    k_pos = pos_buf[:1].expand(B, Lk) // 2
    q_pos = k_pos[:, 3 : 3 + L]
    assert not (q.is_contiguous() or k.is_contiguous() or k_valid.is_contiguous())
    _check_both(
        errs,
        "views",
        q,
        k,
        v,
        q_pos=q_pos,
        k_pos=k_pos,
        k_valid=k_valid,
        block_size=4,
        block_m=16,
        block_n=16,
    )
    # broadcast [1, L] positions / validity
    _check_both(
        errs, "broadcast-masks", q, k, v, q_pos=q_pos[:1], k_pos=k_pos[:1], k_valid=k_valid[:1], block_size=4
    )


def case_low_precision(errs):
    """bf16 / fp16 inputs (upcast to fp32 in the kernel) vs fp32 SDPA on the same values."""
    for dtype, atol in ((torch.float16, 2e-3), (torch.bfloat16, 3e-2)):
        q, k, v = (
            _rand(2, 4, 12, 24, dtype=dtype),
            _rand(2, 2, 40, 24, dtype=dtype),
            _rand(2, 2, 40, 24, dtype=dtype),
        )
        k_valid = _left_right_valid(2, 40, [40, 15], [False, True])
        _check_both(errs, str(dtype).replace("torch.", ""), q, k, v, k_valid=k_valid, atol=atol, block_n=16)


def _counting_triton():
    """Wrap dllm.models.triton_attention.triton_attend (what attend() imports) with a call counter."""
    import dllm.models.triton_attention as mod

    calls = []
    original = mod.triton_attend

    def wrapper(*a, **kw):
        calls.append(1)
        return original(*a, **kw)

    mod.triton_attend = wrapper
    return calls, lambda: setattr(mod, "triton_attend", original)


def _dispatch_inputs():
    q, k, v = _rand(2, 4, 9, 16), _rand(2, 2, 26, 16), _rand(2, 2, 26, 16)
    k_valid = _left_right_valid(2, 26, [26, 11], [False, True])
    k_pos = _positions_from_valid(k_valid)
    q_pos = k_pos[:, -9:]
    return q, k, v, dict(q_pos=q_pos, k_pos=k_pos, k_valid=k_valid, block_size=4)


def case_dispatch_backend_arg(errs):
    os.environ.pop("DLLM_ATTENTION", None)
    q, k, v, kw = _dispatch_inputs()
    calls, restore = _counting_triton()
    try:
        out = attend(q, k, v, backend="triton", **kw)
        out2, lse = attend(q, k, v, backend="triton", return_lse=True, **kw)
        if len(calls) != 2:
            raise AssertionError(
                f"attend(backend='triton') called triton_attend {len(calls)} times, expected 2"
            )
        attend(q, k, v, **kw)  # the default is sdpa on CPU, triton on CUDA
        expected = 2 if DEVICE == "cpu" else 3
        if len(calls) != expected:
            raise AssertionError(f"attend() without backend on {DEVICE}: {len(calls) - 2} Triton calls")
    finally:
        restore()
    ref, ref_lse = sdpa_attend(q, k, v, return_lse=True, **kw)
    rows = _visible_rows(q, k, kw["q_pos"], kw["k_pos"], kw["k_valid"], kw["block_size"])
    _compare(errs, "attend(backend=triton)/out", out, ref, rows[..., None].expand_as(out))
    _compare(errs, "attend(backend=triton)/out(lse)", out2, ref, rows[..., None].expand_as(out))
    _compare(errs, "attend(backend=triton)/lse", lse, ref_lse, rows)


def case_dispatch_env(errs):
    q, k, v, kw = _dispatch_inputs()
    calls, restore = _counting_triton()
    try:
        os.environ["DLLM_ATTENTION"] = "triton"
        out = attend(q, k, v, **kw)
        if len(calls) != 1:
            raise AssertionError("DLLM_ATTENTION=triton did not route attend() to triton_attend")
        os.environ["DLLM_ATTENTION"] = "sdpa"
        attend(q, k, v, **kw)
        if len(calls) != 1:
            raise AssertionError("DLLM_ATTENTION=sdpa still routed attend() to triton_attend")
    finally:
        os.environ.pop("DLLM_ATTENTION", None)
        restore()
    ref = sdpa_attend(q, k, v, **kw)
    rows = _visible_rows(q, k, kw["q_pos"], kw["k_pos"], kw["k_valid"], kw["block_size"])
    _compare(errs, "DLLM_ATTENTION=triton/out", out, ref, rows[..., None].expand_as(out))


CASES = {name[len("case_") :]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


def run_case(name):
    torch.manual_seed(sum(map(ord, name)))
    errs = {}
    t0 = time.perf_counter()
    try:
        CASES[name](errs)
        ok, error = True, None
    except Exception:  # noqa: BLE001 - reported to the test
        ok, error = False, traceback.format_exc()
    return {
        "case": name,
        "ok": ok,
        "max_abs_err": errs,
        "seconds": round(time.perf_counter() - t0, 3),
        "error": error,
    }


def main(argv):
    if os.environ.get("TRITON_INTERPRET") != "1" and DEVICE == "cpu":
        print("run with TRITON_INTERPRET=1 (CPU) or DLLM_CHECKS_DEVICE=cuda (GPU)", file=sys.stderr)
        return 2
    names = argv or list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        print(f"unknown cases {unknown}; known: {list(CASES)}", file=sys.stderr)
        return 2
    failed = False
    for name in names:
        result = run_case(name)
        failed |= not result["ok"]
        print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
