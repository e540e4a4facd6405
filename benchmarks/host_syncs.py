"""Host syncs per denoising step, by source line (issue 21, part 4: one decision point per step).

    python benchmarks/host_syncs.py                        # llada / fast-dllm x none / dual, tiny-llada
    python benchmarks/host_syncs.py --samplers learn2pd --caches elastic --batch 8

Every operation after which the host waits for the device on a GPU (``dllm.metrics.count_host_syncs``:
scalar reads, ``tolist``, ``nonzero``, boolean-mask indexing) is counted and attributed to the innermost
project source line that made it. Syncs made once per call or per row (building a row's canvas,
reading its result) are listed apart from those of the steps; the figure is step syncs per step
(steps counted by the streaming callback). One warm-up call first, untimed and uncounted.
"""

from __future__ import annotations

import argparse
import collections
import traceback
from pathlib import Path

import torch

import dllm
from dllm.eval import tasks
from dllm.metrics import count_host_syncs

ROOT = str(Path(__file__).resolve().parents[1]) + "/"
PER_CALL = {"start", "join", "_result", "encode_prompts"}  # not parts of a step


def _caller(kind: str) -> tuple[str, str, str]:
    stack = [f for f in traceback.extract_stack()[:-2] if f.filename.startswith(ROOT)]
    stack = [f for f in stack if not f.filename.endswith(("host_syncs.py", "metrics.py"))]
    if not stack:
        return "step", kind, "(outside the project)"
    phase = "call" if any(f.name in PER_CALL and "dllm/" in f.filename for f in stack) else "step"
    frame = stack[-1]
    return phase, kind, f"{frame.filename[len(ROOT) :]}:{frame.lineno} {frame.name}"


def count_syncs(model, prompts, sampler, cache, gen, block) -> tuple[int, collections.Counter]:
    steps = []
    with count_host_syncs(_caller) as counts:
        dllm.generate(
            model,
            prompts,
            sampler=sampler,
            cache=cache,
            gen_length=gen,
            block_length=block,
            callback=lambda event: steps.append(1),
        )
    return len(steps), counts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llada")
    parser.add_argument("--samplers", nargs="+", default=["llada", "fast-dllm"])
    parser.add_argument("--caches", nargs="+", default=["none", "dual"])
    parser.add_argument("--task", default="sudoku")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--gen", type=int, default=64)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--top", type=int, default=12, help="source lines listed per configuration")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model = dllm.load(args.model)
    prompts = [e.prompt for e in tasks.get(args.task).examples("eval", args.batch)]
    for sampler in args.samplers:
        for cache in args.caches:
            run = (model, prompts, sampler, cache, args.gen, args.block)
            count_syncs(*run)
            steps, counts = count_syncs(*run)
            in_steps = sum(n for (phase, *_), n in counts.items() if phase == "step")
            per_call = sum(counts.values()) - in_steps
            print(
                f"## {sampler} + {cache}: {steps} steps, {in_steps / steps:.2f} host syncs per step"
                f" (+ {per_call} once per call or row)"
            )
            for (phase, kind, where), n in counts.most_common(args.top):
                print(f"  {phase:4s} {n / steps:6.2f}  {kind:10s} {where}")


if __name__ == "__main__":
    main()
