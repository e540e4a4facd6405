"""What one speculative round costs against one plain-AR step, by batch size (tiny models, CPU).

    python benchmarks/round_costs.py [--batch 1 8 32] [--threads 1]

Median milliseconds of: a tiny-ar verifier forward over F new columns per row after a 40-token
cached context (F = 1 is a plain-AR step; F = k + 1 verifies a k-token draft), and one tiny-deer
drafting forward over a 50-token context + k masks (the one-pass drafters recompute the context
every round). The ratio round / AR step is what a round's accepted tokens per row must beat.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _median_ms(run, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def verify_ms(verifier, batch: int, fed: int, context: int = 40, reps: int = 20) -> float:
    from dllm.drafters.runner import CausalRunner

    runner = CausalRunner(verifier.net, verifier.pad_id)
    runner.reset(batch)
    runner.feed([[5] * context] * batch)

    def run():
        runner.feed([[5] * fed] * batch)
        runner.keep([context] * batch)

    return _median_ms(run, reps)


def draft_ms(drafter, batch: int, k: int, context: int = 50, reps: int = 20) -> float:
    width = context + k
    tokens = torch.full((batch, width), 5)
    positions = torch.arange(width).expand(batch, -1)
    valid = torch.ones(batch, width, dtype=torch.bool)
    targets = (context + torch.arange(k)).expand(batch, -1)

    def run():
        with torch.no_grad():
            drafter.net(tokens, positions, valid, logits_for=targets)

    return _median_ms(run, reps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import dllm

    verifier, drafter = dllm.load("tiny-ar"), dllm.load("tiny-deer")
    print("| batch | AR step (F = 1) | verify F = 9 / 17 / 33 | draft k = 8 / 16 / 32 | round k=16 / step |")
    print("|---:|---:|---:|---:|---:|")
    for batch in args.batch:
        step = verify_ms(verifier, batch, 1)
        verify = [verify_ms(verifier, batch, fed) for fed in (9, 17, 33)]
        draft = [draft_ms(drafter, batch, k) for k in (8, 16, 32)]
        print(
            f"| {batch} | {step:.2f} ms | {' / '.join(f'{v:.2f}' for v in verify)} ms"
            f" | {' / '.join(f'{d:.2f}' for d in draft)} ms | {(verify[1] + draft[1]) / step:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
