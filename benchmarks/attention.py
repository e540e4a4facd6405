"""GPU speed and agreement of the two ``attend()`` backends: the Triton kernel vs PyTorch SDPA.

    python benchmarks/attention.py                    # needs a CUDA GPU; bf16; about a minute on an H100
    python benchmarks/attention.py --batch 1 --lk 1024 4096 --json attention.json

Shapes are those of the real checkpoints' attention: LLaDA-8B (32 query / 32 KV heads, head dim
128) and Dream-7B (28 query / 4 KV heads, GQA), over full-length K/V buffers of ``Lk`` positions,
with the query sets the caches produce: a 32-position block (dual cache, Elastic's window), the
masked half of the canvas (prefix cache: block + suffix), and every position (no cache). Every
case has a key-validity mask; at batch > 1 the rows have different valid lengths (left padding of
a varlen batch), as ``dllm.generate`` lays them out. SDPA gets that mask as a boolean
``attn_mask`` (PyTorch then cannot use its flash kernel; ``sdpa_attend`` also repeats K/V for GQA)
-- exactly what the PyTorch path of ``attend()`` runs. Rows with LSE time ``return_lse=True`` on
the 32-query block (Elastic's attention-drift test), which the SDPA path computes with an explicit softmax.

Columns: median milliseconds (``triton.testing.do_bench``), TFLOP/s (4 B Hq Lq Lk D over the time;
masked keys counted), the speedup of Triton over SDPA, and the max abs difference of the outputs
(and LSE) between the two backends.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys

MODELS = {"llada-8b": (32, 32, 128), "dream-7b": (28, 4, 128)}  # query heads, KV heads, head dim


def query_sets(lk: int) -> dict[str, int]:
    return {"block 32": 32, "half canvas": lk // 2, "all": lk}


def make_case(batch: int, hq: int, hkv: int, d: int, lq: int, lk: int, dtype, device):
    import torch

    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(batch, hq, lq, d, device=device, dtype=dtype, generator=gen)
    k = torch.randn(batch, hkv, lk, d, device=device, dtype=dtype, generator=gen)
    v = torch.randn(batch, hkv, lk, d, device=device, dtype=dtype, generator=gen)
    # Varlen batch: row b has its first pad[b] positions padded (left padding), row 0 none.
    pad = torch.tensor([(b * lk) // (4 * batch) for b in range(batch)], device=device)
    k_valid = torch.arange(lk, device=device)[None, :] >= pad[:, None]
    return q, k, v, k_valid


def bench_case(model: str, batch: int, lq_name: str, lq: int, lk: int, lse: bool, dtype) -> dict:
    import torch
    from triton.testing import do_bench

    from dllm.models.attention import attend

    hq, hkv, d = MODELS[model]
    q, k, v, k_valid = make_case(batch, hq, hkv, d, lq, lk, dtype, "cuda")
    # The queries are the last lq positions of the canvas, so every query row sees some key.
    run = {
        name: functools.partial(attend, q, k, v, k_valid=k_valid, return_lse=lse, backend=name)
        for name in ("triton", "sdpa")
    }
    with torch.no_grad():
        res = {name: fn() for name, fn in run.items()}
        ms = {name: do_bench(fn, warmup=10, rep=50, return_mode="median") for name, fn in run.items()}
    out_t, out_s = (res["triton"][0], res["sdpa"][0]) if lse else (res["triton"], res["sdpa"])
    row = {
        "model": model,
        "batch": batch,
        "Lk": lk,
        "queries": lq_name,
        "Lq": lq,
        "lse": lse,
        "triton_ms": ms["triton"],
        "sdpa_ms": ms["sdpa"],
        "max_abs_diff": (out_t.float() - out_s.float()).abs().max().item(),
    }
    if lse:
        row["lse_max_abs_diff"] = (res["triton"][1] - res["sdpa"][1]).abs().max().item()
    flops = 4 * batch * hq * lq * lk * d
    row["triton_tflops"] = flops / ms["triton"] / 1e9
    row["sdpa_tflops"] = flops / ms["sdpa"] / 1e9
    del q, k, v, res
    torch.cuda.empty_cache()
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    parser.add_argument(
        "--lk", nargs="+", type=int, default=[512, 1024, 2048, 4096], help="K/V buffer lengths"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--no-lse", action="store_true", help="skip the return_lse=True rows")
    parser.add_argument("--json", default=None, help="also write every row to this file")
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(
            "benchmarks/attention.py times the Triton kernel on a CUDA GPU, and none is available here; "
            "its correctness on CPU is checked by tests/test_triton_attention.py (Triton interpreter).",
            file=sys.stderr,
        )
        return 2
    import triton

    dtype = getattr(torch, args.dtype)
    print(
        f"# attend(): Triton vs SDPA on {torch.cuda.get_device_name()} — torch {torch.__version__}, "
        f"triton {triton.__version__}, {args.dtype}, key-validity mask on every case"
    )
    header = (
        "| model | batch | Lk | queries (Lq) | LSE | Triton ms | SDPA ms | Triton / SDPA speedup "
        "| Triton TFLOP/s | SDPA TFLOP/s | max abs diff out | max abs diff LSE |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    rows = []
    for model in args.models:
        for batch in args.batch:
            for lk in args.lk:
                for lq_name, lq in query_sets(lk).items():
                    # LSE: Elastic asks for it on its query window only (the SDPA path materialises
                    # the fp32 scores, which would not fit at batch 8 x 4096 x 4096).
                    for lse in (False,) if args.no_lse or lq_name != "block 32" else (False, True):
                        r = bench_case(model, batch, lq_name, lq, lk, lse, dtype)
                        rows.append(r)
                        lse_diff = f"{r['lse_max_abs_diff']:.1e}" if lse else ""
                        print(
                            f"| {model} | {batch} | {lk} | {lq_name} ({lq}) | {'yes' if lse else 'no'} "
                            f"| {r['triton_ms']:.3f} | {r['sdpa_ms']:.3f} "
                            f"| {r['sdpa_ms'] / r['triton_ms']:.2f}x "
                            f"| {r['triton_tflops']:.0f} | {r['sdpa_tflops']:.0f} | {r['max_abs_diff']:.1e} "
                            f"| {lse_diff} |",
                            flush=True,
                        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
