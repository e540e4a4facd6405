"""Block diffusion vs AR decoding on the held-out tasks: tiny-fdllm2 (Fast-dLLM v2 recipe on tiny-ar) against
tiny-ar's own greedy AR decoding, with and without the block cache, and tiny-dream with its best cache.

    python benchmarks/block_diffusion.py [--n 25] [--gens 128 512] \
        [--json benchmarks/results/block_diffusion.json]

Systems (every row decoded alone, batch 1, one torch thread, greedy):

* ``tiny-ar AR``: greedy next-token decoding with a KV cache (``transformers`` Qwen2, one forward per token,
  stop at EOS; NFE = forwards = answer tokens + the EOS step).
* ``tiny-fdllm2 <cache>``: ``fast-dllm`` threshold 0.9 inside each block (bd_size 32, sub-blocks of 8, as
  Fast-dLLM v2's chatbot defaults), ``stop_at_eos``; cache ``none`` (every forward over the whole canvas) or
  ``block-cache``.
* ``tiny-dream dual``: ``fast-dllm`` threshold 0.9, blocks of 32, dual cache, ``stop_at_eos``.

``gen`` is the generation budget: the canvas length of the diffusion models, ``max_new_tokens`` of AR.
Counts follow ``dllm.metrics``: accuracy = the task's scorer on the answer (before the first EOS),
TPF = summed answer tokens / summed NFE, tok/s = summed answer tokens / summed decoding seconds (each
call after an untimed warm-up call), speedup = tok/s over tiny-ar AR's at the same ``gen``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

TASKS = ("copy", "reverse", "sort", "insert_index", "remove_index", "replace_index", "sudoku", "cumsum")
BD_SUB_BLOCK = 8


@torch.no_grad()
def ar_decode(net, prompt_ids: list[int], max_new: int, eos: int) -> tuple[list[int], int, float]:
    """Greedy AR with a KV cache: (answer ids, forwards, seconds)."""
    from transformers import DynamicCache

    start = time.perf_counter()
    ids = torch.tensor([prompt_ids])
    cache = DynamicCache()
    out = net(input_ids=ids, past_key_values=cache, use_cache=True)
    forwards, answer = 1, []
    while True:
        token = int(out.logits[0, -1].argmax())
        if token == eos:
            break
        answer.append(token)
        if len(answer) == max_new:
            break
        out = net(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True)
        forwards += 1
    return answer, forwards, time.perf_counter() - start


def systems(gen: int, sub_block: int = BD_SUB_BLOCK):
    import dllm

    threshold = lambda: dllm.samplers.get("fast-dllm", threshold=0.9)  # noqa: E731
    fd = dict(gen_length=gen, block_length=32, sub_block_length=sub_block, stop_at_eos=True)
    return [
        ("tiny-ar AR", "tiny-ar", None),
        ("tiny-fdllm2 no cache", "tiny-fdllm2", dict(sampler=threshold, cache="none", **fd)),
        ("tiny-fdllm2 block-cache", "tiny-fdllm2", dict(sampler=threshold, cache="block-cache", **fd)),
        (
            "tiny-dream dual",
            "tiny-dream",
            dict(sampler=threshold, cache="dual", gen_length=gen, block_length=32, stop_at_eos=True),
        ),
    ]


def run_system(model, settings, examples, task, gen) -> dict:
    import dllm

    hits = tokens = nfe = 0
    seconds = 0.0
    for i, ex in enumerate([examples[0]] + examples):  # the first call is an untimed warm-up
        if settings is None:
            prompt = [1] + model.tokenizer.encode(ex.prompt, add_special_tokens=False)
            answer, forwards, secs = ar_decode(model.net, prompt, gen, model.eos_ids[0])
            text = model.tokenizer.decode(answer, skip_special_tokens=True)
        else:
            params = {**settings, "sampler": settings["sampler"]()}
            [r] = dllm.generate(model, [ex.prompt], **params)
            answer, forwards, secs, text = r.ids, r.nfe, r.seconds, r.text
        if i == 0:
            continue
        hits += task.score(text, ex)
        tokens += len(answer)
        nfe += forwards
        seconds += secs
    from dllm import metrics

    return {
        "acc": hits / len(examples),
        "nfe": nfe / len(examples),
        "tpf": metrics.tokens_per_forward(tokens, nfe),
        "tok_s": metrics.throughput(tokens, seconds),
        "tokens": tokens,
        "seconds": seconds,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=25, help="held-out examples per task")
    parser.add_argument("--gens", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--fdllm2", default="tiny-fdllm2", help="the block-diffusion checkpoint (name or folder)"
    )
    parser.add_argument(
        "--systems", nargs="+", default=None, help="run only these systems (labels, e.g. 'tiny-ar AR')"
    )
    parser.add_argument("--sub-block", type=int, default=BD_SUB_BLOCK, help="tiny-fdllm2's sub-block size")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import dllm
    from dllm.eval import tasks as task_lib

    loaded = {}
    report = {
        "n": args.n,
        "tasks": args.tasks,
        "threads": args.threads,
        "sub_block": args.sub_block,
        "results": {},
    }
    for gen in args.gens:
        rows = {}
        for label, name, settings in systems(gen, args.sub_block):
            if args.systems and label not in args.systems:
                continue
            path = args.fdllm2 if name == "tiny-fdllm2" else name
            model = loaded[name] if name in loaded else loaded.setdefault(name, dllm.load(path))
            per_task = {}
            for task_name in args.tasks:
                task = task_lib.get(task_name)
                per_task[task_name] = run_system(
                    model, settings, task.examples("eval", args.n, seed=0), task, gen
                )
            tokens = sum(r["tokens"] for r in per_task.values())
            seconds = sum(r["seconds"] for r in per_task.values())
            nfe = sum(r["nfe"] * args.n for r in per_task.values())
            rows[label] = {
                "acc": sum(r["acc"] for r in per_task.values()) / len(per_task),
                "nfe": nfe / (args.n * len(per_task)),
                "tpf": tokens / nfe if nfe else 0.0,
                "tok_s": tokens / seconds if seconds else 0.0,
                "per_task": per_task,
            }
            print(
                f"gen {gen} {label}: acc {rows[label]['acc']:.3f} nfe {rows[label]['nfe']:.1f} "
                f"tpf {rows[label]['tpf']:.2f} tok/s {rows[label]['tok_s']:.1f}",
                flush=True,
            )
        report["results"][str(gen)] = rows
    print(markdown(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def markdown(report: dict) -> str:
    lines = [
        f"{report['n']} held-out examples x {len(report['tasks'])} tasks ({', '.join(report['tasks'])}), "
        f"batch 1, {report['threads']} thread(s), greedy.",
        "",
        "| gen | system | acc % | NFE | tokens/forward | tok/s | speedup vs AR | vs no cache |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for gen, rows in report["results"].items():
        ar = rows["tiny-ar AR"]["tok_s"] if "tiny-ar AR" in rows else None
        plain = rows.get("tiny-fdllm2 no cache", {}).get("tok_s")
        for label, r in rows.items():
            vs_plain = f"{r['tok_s'] / plain:.2f}x" if plain and label.startswith("tiny-fdllm2") else ""
            vs_ar = f"{r['tok_s'] / ar:.2f}x" if ar else ""
            lines.append(
                f"| {gen} | {label} | {100 * r['acc']:.1f} | {r['nfe']:.1f} | {r['tpf']:.2f} | "
                f"{r['tok_s']:.1f} | {vs_ar} | {vs_plain} |"
            )
    gens = list(report["results"])
    lines += [
        "",
        f"Per task accuracy % ({' / '.join('gen ' + g for g in gens)}):",
        "",
        "| system | " + " | ".join(report["tasks"]) + " |",
        "|---|" + "---:|" * len(report["tasks"]),
    ]
    for label in report["results"][gens[0]]:
        cells = []
        for t in report["tasks"]:
            cells.append(
                " / ".join(f"{100 * report['results'][g][label]['per_task'][t]['acc']:.0f}" for g in gens)
            )
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
