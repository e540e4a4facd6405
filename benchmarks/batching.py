"""Batch scaling: tokens/s and row-forwards as the batch grows (issue 21).

    python benchmarks/batching.py                          # tiny-llada, fast-dllm 0.9, dual and none, gen 128
    python benchmarks/batching.py --models tiny-llada tiny-dream --samplers fast-dllm learn2pd --gen 128 256
    python benchmarks/batching.py --json before.json  # from another checkout, for a before/after table
    python benchmarks/batching.py --compare results/batching_before.json results/batching_after.json

The same held-out prompts (8 per task over 8 tasks the tiny models solve, eval split) are decoded
at batch 1, 4, 16 and 64 in order (the last batch of a size may be smaller), and with continuous
batching (``--continuous 16``: one ``generate`` call, ``max_batch=16``). Columns: the summed
answer tokens / summed wall seconds of the batches (``dllm.metrics.throughput``), its ratio to
batch 1, row-forwards (``dllm.metrics``: rows the model computed, summed over forwards; read from
``GenerationResult.batch_row_forwards``, or for a checkout without it the number of forwards x the
batch, since every forward then computed every row) and its ratio to batch 1's sum, and whether
every prompt's canvas equals its batch-1 canvas. One torch thread (``--threads``). Targets:
row-forwards <= 1.1x batch 1's at every size; tokens/s at batch 16 and 64 >= batch 1's.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import dllm
from dllm.eval import tasks
from dllm.generate import Loop
from dllm.metrics import throughput

TASKS = (
    "copy",
    "reverse",
    "insert_index",
    "remove_index",
    "replace_index",
    "sudoku",
    "letters_copy",
    "letters_reverse",
)


def prompts(n_per_task: int) -> list[str]:
    return [e.prompt for t in TASKS for e in tasks.get(t).examples("eval", n_per_task)]


def row_forwards(results) -> int:
    counted = getattr(results[0], "batch_row_forwards", 0)
    return counted or max(r.nfe for r in results) * len(results)


def run(model, texts, sampler, cache, gen, batch, continuous=False) -> dict:
    """Fixed batches of ``batch`` prompts, or (``continuous``) one call keeping ``batch`` rows running."""
    canvases, tokens, seconds, forwards = [], 0, 0.0, 0
    per_call, extra = (len(texts), {"max_batch": batch}) if continuous else (batch, {})
    for start in range(0, len(texts), per_call):
        began = time.perf_counter()
        results = dllm.generate(
            model,
            texts[start : start + per_call],
            sampler=sampler,
            cache=cache,
            gen_length=gen,
            block_length=32,
            **extra,
        )
        seconds += time.perf_counter() - began
        tokens += sum(r.gen_tokens for r in results)
        forwards += row_forwards(results)
        canvases += [r.canvas for r in results]
    return {"tokens": tokens, "seconds": seconds, "row_forwards": forwards, "canvases": canvases}


def loop_overhead(model, texts, sampler="fast-dllm", cache="dual", gen=128) -> dict:
    """Share of decoding time spent outside the model's forward (batch 1, one prompt at a time):
    over the whole ``generate`` calls (with each row's canvas and result) and within the steps only
    (``Loop.step``: plan, forward, sampler, commit, block close, the decision point)."""
    inside, stepping, began_at = [0.0], [0.0], [0.0]
    pre = model.net.register_forward_pre_hook(lambda *_: began_at.__setitem__(0, time.perf_counter()))
    post = model.net.register_forward_hook(
        lambda *_: inside.__setitem__(0, inside[0] + time.perf_counter() - began_at[0])
    )
    step = Loop.step

    def timed_step(self, state):
        began = time.perf_counter()
        try:
            return step(self, state)
        finally:
            stepping[0] += time.perf_counter() - began

    Loop.step = timed_step
    try:
        began = time.perf_counter()
        for text in texts:
            dllm.generate(model, [text], sampler=sampler, cache=cache, gen_length=gen, block_length=32)
        total = time.perf_counter() - began
    finally:
        pre.remove()
        post.remove()
        Loop.step = step
    return {
        "total_s": round(total, 3),
        "forward_s": round(inside[0], 3),
        "outside_share": round(1 - inside[0] / total, 3),
        "step_outside_share": round(1 - inside[0] / stepping[0], 3),
    }


def table_row(name, sampler, cache, gen, label, out, base) -> dict:
    speed, speed1 = throughput(out["tokens"], out["seconds"]), throughput(base["tokens"], base["seconds"])
    return {
        "model": name,
        "sampler": sampler,
        "cache": cache,
        "gen": gen,
        "batch": label,
        "tokens_per_second": round(speed, 1),
        "speed_vs_b1": round(speed / speed1, 2),
        "row_forwards": out["row_forwards"],
        "forwards_vs_b1": round(out["row_forwards"] / base["row_forwards"], 2),
        "same_as_b1": out["canvases"] == base["canvases"],
    }


def compare(before_path: str, after_path: str) -> None:
    """The README's summary and the before -> after table of two ``--json`` runs."""
    import statistics

    before, after = (json.load(open(path)) for path in (before_path, after_path))
    key = lambda row: (row["model"], row["sampler"], row["cache"], row["gen"], str(row["batch"]))  # noqa: E731
    old = {key(row): row for row in before}
    print(
        "| batch | tok/s vs b1 before: min / median (>= 1) | after"
        " | row-forwards vs b1, worst: before | after |"
    )
    print("|---|---|---|---|---|")
    for batch in ["4", "16", "64", "cont. 16"]:
        cells = [f"{batch}"]
        rows = [row for row in after if str(row["batch"]) == batch]
        for side in ([old[key(r)] for r in rows if key(r) in old], rows):
            speeds = [r["speed_vs_b1"] for r in side]
            cells.append(
                f"{min(speeds)}x / {statistics.median(speeds):.2f}x"
                f" ({sum(v >= 1 for v in speeds)} of {len(speeds)})"
                if speeds
                else "—"
            )
        for side in ([old[key(r)] for r in rows if key(r) in old], rows):
            cells.append(f"{max(r['forwards_vs_b1'] for r in side)}x" if side else "—")
        print("| " + " | ".join(cells) + " |")
    print()
    print(
        "| model | sampler | cache | gen | batch | tok/s before -> after (vs b1)"
        " | row-forwards before -> after (vs b1) | = batch 1 |"
    )
    print("|---|---|---|---:|---:|---|---|---|")
    for row in after:
        was = old.get(key(row))
        speed = f"{was['speed_vs_b1']}x" if was else "—"
        forwards = f"{was['forwards_vs_b1']}x" if was else "—"
        print(
            f"| {row['model']} | {row['sampler']} | {row['cache']} | {row['gen']} | {row['batch']} "
            f"| {speed} -> {row['speed_vs_b1']}x ({row['tokens_per_second']}) "
            f"| {forwards} -> {row['forwards_vs_b1']}x ({row['row_forwards']}) "
            f"| {'yes' if row['same_as_b1'] else 'NO'} |"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["tiny-llada"])
    parser.add_argument("--samplers", nargs="+", default=["fast-dllm"])
    parser.add_argument("--caches", nargs="+", default=["dual", "none"])
    parser.add_argument("--gen", nargs="+", type=int, default=[128])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4, 16, 64])
    parser.add_argument(
        "--continuous", nargs="*", type=int, default=[16], help="max_batch of continuous runs"
    )
    parser.add_argument("--per-task", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--overhead", action="store_true", help="only: time outside the forward, per model")
    parser.add_argument(
        "--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="only: tables of two --json runs"
    )
    args = parser.parse_args(argv)
    if args.compare:
        compare(*args.compare)
        return
    torch.set_num_threads(args.threads)
    texts = prompts(args.per_task)
    plans = [(b, False) for b in args.batches] + [(b, True) for b in args.continuous]
    rows = []
    print("| model | sampler | cache | gen | batch | tok/s | vs b1 | row-forwards | vs b1 | = batch 1 |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    for name in args.models:
        model = dllm.load(name)
        dllm.generate(model, texts[:1], gen_length=32, block_length=32)  # warm-up, untimed
        if args.overhead:
            print(
                name,
                {
                    f"{s}/{c}/{g}": loop_overhead(model, texts, s, c, g)
                    for s in args.samplers
                    for c in args.caches
                    for g in args.gen
                },
            )
            continue
        for sampler, cache, gen in [(s, c, g) for s in args.samplers for c in args.caches for g in args.gen]:
            base = None
            for batch, continuous in plans:
                out = run(model, texts, sampler, cache, gen, batch, continuous)
                base = base or out
                row = table_row(
                    name, sampler, cache, gen, f"cont. {batch}" if continuous else str(batch), out, base
                )
                rows.append(row)
                cells = [
                    name,
                    sampler,
                    cache,
                    gen,
                    row["batch"],
                    row["tokens_per_second"],
                    f"{row['speed_vs_b1']}x",
                    row["row_forwards"],
                    f"{row['forwards_vs_b1']}x",
                    "yes" if row["same_as_b1"] else "NO",
                ]
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
