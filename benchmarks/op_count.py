"""Top-level ATen operator calls per decoding step, per cache policy (the host-side cost that a GPU
waits for; on a CPU the tiny models' steps are bound by memory traffic instead).

    python benchmarks/op_count.py                      # 32-layer random LLaDA-layout model, SDPA path
    python benchmarks/op_count.py --layers 4 --caches none dual elastic

Counts the operators ``torch.profiler`` sees at the top level (not their internal calls) over one
generation with the 1-token sampler, divided by its steps: model, cache policy and loop together.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def ops_per_step(model, cache: str, gen: int) -> float:
    from torch.profiler import profile

    import dllm

    with profile() as prof:
        [result] = dllm.generate(
            model, [list(range(5, 45))], sampler="llada", cache=cache, gen_length=gen, block_length=gen
        )
    top = [e for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")]
    return len(top) / result.steps


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--gen", type=int, default=32)
    parser.add_argument("--caches", nargs="*", default=["none", "dual", "elastic"])
    args = parser.parse_args(argv)
    if args.layers < 1 or args.gen < 1:
        parser.error(f"--layers and --gen must be at least 1, got {args.layers} and {args.gen}")
    import torch

    import dllm

    unknown = [c for c in args.caches if c not in dllm.caches.names()]
    if unknown:
        parser.error(f"--caches: unknown {unknown}; known: {', '.join(dllm.caches.names())}")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _models import random_model

    torch.set_num_threads(1)
    model = random_model("llada", n_layers=args.layers, max_seq_len=64 + args.gen)
    print(f"| cache | top-level ATen calls per step ({args.layers} layers) |\n|---|---:|")
    for cache in args.caches:
        print(f"| {cache} | {ops_per_step(model, cache, args.gen):.0f} |")


if __name__ == "__main__":
    main()
