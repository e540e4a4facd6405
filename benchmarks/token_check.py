"""Behaviour check of a refactor: decode a grid of configurations and dump (or compare) every token.

The grid: tiny-llada and tiny-dream x every registered sampler x every registered cache x
temperature 0 / 0.7 over a batch of 8 task prompts (gen 32, block 16), plus continuous batching
(``max_batch=3``), classifier-free guidance, the EOS stop rule and tiny-fdllm2's block cache, and
speculative decoding (every drafter, greedy and T = 1, batch of 6). A configuration the library
refuses is recorded with its error. Written so that it runs on older commits too (public API only).

    python benchmarks/token_check.py --dump before.json      # on the old commit
    python benchmarks/token_check.py --compare before.json   # on the new one: prints the differences
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def grid():
    import dllm

    diffusion = [("tiny-llada", {}), ("tiny-dream", {})]
    for model, _ in diffusion:
        for sampler in dllm.samplers.names():
            for cache in dllm.caches.names():
                for temperature in (0.0, 0.7):
                    yield (
                        f"{model}/{sampler}/{cache}/T{temperature}",
                        model,
                        dict(sampler=sampler, cache=cache, temperature=temperature),
                    )
    for model, _ in diffusion:
        yield (
            f"{model}/fast-dllm/dual/max_batch3",
            model,
            dict(sampler="fast-dllm", cache="dual", max_batch=3),
        )
        yield (
            f"{model}/llada/none/max_batch3/T0.7",
            model,
            dict(sampler="llada", temperature=0.7, max_batch=3),
        )
        yield f"{model}/llada/prefix/cfg", model, dict(sampler="llada", cache="prefix", cfg_scale=1.0)
        yield f"{model}/fast-dllm/none/stop_at_eos", model, dict(sampler="fast-dllm", stop_at_eos=True)
    yield (
        "tiny-fdllm2/fast-dllm/block",
        "tiny-fdllm2",
        dict(sampler="fast-dllm", cache="block-cache", block_length=None),
    )


def speculative_grid():
    import dllm

    for drafter in [None, *dllm.drafters.names()]:
        for temperature in (0.0, 1.0):
            yield f"tiny-ar/{drafter}/T{temperature}", drafter, temperature


def run() -> dict:
    import dllm
    from dllm.eval import tasks

    torch.set_num_threads(1)
    prompts = [e.prompt for name in ("copy", "reverse") for e in tasks.get(name).examples("eval", 4)]
    out, models = {}, {}
    for label, name, settings in grid():
        model = models.setdefault(name, dllm.load(name))
        settings = dict(settings)
        gen = {"gen_length": 32, "block_length": 16}
        if settings.get("block_length", 0) is None:  # the block model's own block size
            gen = {"gen_length": 64, "block_length": model.config.block_size}
            settings.pop("block_length")
        try:
            results = dllm.generate(model, prompts, **gen, **settings)
            out[label] = [[r.canvas, r.steps, r.nfe] for r in results]
        except Exception as exc:  # noqa: BLE001 — a refused configuration is part of the behaviour
            out[label] = f"{type(exc).__name__}: {exc}"
    verifier = dllm.load("tiny-ar")
    for label, drafter, temperature in speculative_grid():
        try:
            results = dllm.speculate(
                verifier, prompts[:6], drafter, max_new_tokens=24, temperature=temperature, seed=3
            )
            out[label] = [[r.ids, r.rounds, r.accepted] for r in results]
        except Exception as exc:  # noqa: BLE001
            out[label] = f"{type(exc).__name__}: {exc}"
        print(label, file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dump", help="write the tokens of every configuration to this JSON file")
    parser.add_argument("--compare", help="compare with a dump; exit 1 when any configuration differs")
    args = parser.parse_args()
    out = run()
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(out, f)
        print(f"{len(out)} configurations written to {args.dump}")
    if args.compare:
        with open(args.compare) as f:
            before = json.load(f)
        differ = sorted(k for k in set(before) | set(out) if before.get(k) != out.get(k))
        for label in differ:
            print(
                f"differs: {label}\n  before: {str(before.get(label))[:300]}"
                f"\n  after:  {str(out.get(label))[:300]}"
            )
        print(f"{len(out)} configurations, {len(differ)} differ")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
