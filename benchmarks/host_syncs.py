"""Host reads per denoising step, by source line (issue 21, part 4: one decision point per step).

    python benchmarks/host_syncs.py                        # llada / fast-dllm x none / dual, tiny-llada
    python benchmarks/host_syncs.py --samplers learn2pd --caches elastic --batch 8

Every ``Tensor.item`` / ``__bool__`` / ``__int__`` / ``tolist`` call made while decoding (each one
waits for the device on a GPU) is counted and attributed to the innermost project source line that
made it; the table gives calls per step (steps counted by the streaming callback, whose own read
is listed under ``generate.py ... step``). One warm-up call first, untimed and uncounted.
"""

from __future__ import annotations

import argparse
import collections
import traceback
from pathlib import Path

import torch

import dllm
from dllm.eval import tasks
from dllm.metrics import count_host_reads

ROOT = str(Path(__file__).resolve().parents[1]) + "/"


def _caller(kind: str) -> tuple[str, str]:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if frame.filename.startswith(ROOT) and not frame.filename.endswith(("host_syncs.py", "metrics.py")):
            return kind, f"{frame.filename[len(ROOT) :]}:{frame.lineno} {frame.name}"
    return kind, "(outside the project)"


def count_reads(model, prompts, sampler, cache, gen) -> tuple[int, collections.Counter]:
    steps = []
    with count_host_reads(_caller) as counts:
        dllm.generate(
            model,
            prompts,
            sampler=sampler,
            cache=cache,
            gen_length=gen,
            block_length=32,
            callback=lambda event: steps.append(1),
        )
    return len(steps), counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llada")
    parser.add_argument("--samplers", nargs="+", default=["llada", "fast-dllm"])
    parser.add_argument("--caches", nargs="+", default=["none", "dual"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--top", type=int, default=12, help="source lines listed per configuration")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = dllm.load(args.model)
    prompts = [e.prompt for e in tasks.get("sudoku").examples("eval", args.batch)]
    for sampler in args.samplers:
        for cache in args.caches:
            dllm.generate(model, prompts, sampler=sampler, cache=cache, gen_length=args.gen, block_length=32)
            steps, counts = count_reads(model, prompts, sampler, cache, args.gen)
            per_step = sum(counts.values()) / steps
            print(f"## {sampler} + {cache}: {steps} steps, {per_step:.1f} host reads per step")
            for (kind, where), n in counts.most_common(args.top):
                print(f"  {n / steps:6.2f}  {kind:9s} {where}")


if __name__ == "__main__":
    main()
