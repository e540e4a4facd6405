"""Accuracy and speed of the shipped tiny models on every task (held-out ``eval`` split).

    python benchmarks/tiny_models.py [--n 50] [--models tiny-llada tiny-dream] [--tasks copy reverse ...]
    python benchmarks/tiny_models.py --ar [--n 50]          # tiny-ar, greedy transformers generate

Diffusion models run three decoding settings per task: ``llada`` with one token per step
(``steps = gen_length``), ``fast-dllm`` threshold 0.9 and ``fast-dllm`` factor 1.0. Rule:
``gen_length`` = the task's ``max_new_tokens``, ``block_length = gen_length`` (one block).
Counts (steps, NFE, tokens per forward, tokens/s) come from ``GenerationResult`` and
``dllm.metrics``: TPF = summed answer tokens / summed NFE, tokens/s = summed answer tokens /
summed batch wall seconds.

Quality bar (``llada`` k=1 setting; ``--ar``: greedy): >= 90 % on copy, reverse, insert_index,
remove_index and replace_index restricted to lists of 3-6 names, and (diffusion models) >= 70 %
accuracy averaged over all tasks.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

BAR_TASKS = ("copy", "reverse", "insert_index", "remove_index", "replace_index")
BAR_SIZES = range(3, 7)
BAR_TASK_MIN, BAR_AVG_MIN = 0.9, 0.7
DIFFUSION_MODELS = ("tiny-llada", "tiny-dream")


def settings():
    from dllm import samplers

    return [
        ("llada k=1", lambda: samplers.get("llada"), True),
        ("fast-dllm thr=0.9", lambda: samplers.get("fast-dllm", threshold=0.9), False),
        ("fast-dllm factor=1.0", lambda: samplers.get("fast-dllm", factor=1.0), False),
    ]


def _subset_acc(examples, scores):
    picked = [s for e, s in zip(examples, scores) if e.meta.get("n") in BAR_SIZES]
    return sum(picked) / len(picked) if picked else None


def run_diffusion(model, task, examples, make_sampler, one_per_step: bool, batch: int) -> dict:
    import dllm
    from dllm import metrics

    gen = task.max_new_tokens
    kwargs = {"gen_length": gen, "block_length": gen}
    if one_per_step:
        kwargs["steps"] = gen
    results, seconds = [], 0.0
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        out = dllm.generate(model, [e.prompt for e in chunk], sampler=make_sampler(), **kwargs)
        seconds += dllm.metrics.batch_seconds(out)
        results += out
    scores = [task.score(r.text, e) for r, e in zip(results, examples)]
    tokens = sum(r.gen_tokens for r in results)
    nfe = sum(r.nfe for r in results)
    return {
        "acc": sum(scores) / len(scores),
        "acc_3_6": _subset_acc(examples, scores),
        "steps": sum(r.steps for r in results) / len(results),
        "nfe": nfe / len(results),
        "tpf": metrics.tokens_per_forward(tokens, nfe),
        "tps": metrics.throughput(tokens, seconds),
    }


def run_ar(model, tokenizer, task, examples, batch: int) -> dict:
    from dllm.zoo.train import ar_generate

    texts, seconds = [], 0.0
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        t0 = time.perf_counter()
        texts += ar_generate(model, tokenizer, [e.prompt for e in chunk], task.max_new_tokens)
        seconds += time.perf_counter() - t0
    scores = [task.score(t, e) for t, e in zip(texts, examples)]
    return {"acc": sum(scores) / len(scores), "acc_3_6": _subset_acc(examples, scores)}


def _pct(x):
    return "—" if x is None else f"{100 * x:.1f}"


def print_table(title: str, rows: dict[str, dict], with_speed: bool) -> None:
    print(f"\n### {title}\n")
    if with_speed:
        print("| task | acc % | acc % (n=3-6) | steps | NFE | TPF | tok/s |")
        print("|---|---:|---:|---:|---:|---:|---:|")
    else:
        print("| task | acc % | acc % (n=3-6) |")
        print("|---|---:|---:|")
    for name, r in rows.items():
        sub = _pct(r["acc_3_6"]) if name in BAR_TASKS else "—"
        if with_speed:
            print(
                f"| {name} | {_pct(r['acc'])} | {sub} | {r['steps']:.1f} | {r['nfe']:.1f} | {r['tpf']:.2f} "
                f"| {r['tps']:.1f} |"
            )
        else:
            print(f"| {name} | {_pct(r['acc'])} | {sub} |")
    n = len(rows)
    avg = {k: sum(r[k] for r in rows.values()) / n for k in ("acc",)}
    if with_speed:
        for k in ("steps", "nfe", "tpf", "tps"):
            avg[k] = sum(r[k] for r in rows.values()) / n
        print(
            f"| **average** | **{_pct(avg['acc'])}** | | {avg['steps']:.1f} | {avg['nfe']:.1f} "
            f"| {avg['tpf']:.2f} | {avg['tps']:.1f} |"
        )
    else:
        print(f"| **average** | **{_pct(avg['acc'])}** | |")


def verdict(name: str, rows: dict[str, dict], need_avg: bool) -> bool:
    ok = True
    parts = []
    for task in BAR_TASKS:
        if task not in rows:
            parts.append(f"{task}: not run")
            ok = False
            continue
        acc = rows[task]["acc_3_6"]
        passed = acc is not None and acc >= BAR_TASK_MIN
        ok &= passed
        parts.append(f"{task} {_pct(acc)}% {'ok' if passed else 'FAIL'}")
    if need_avg:
        avg = sum(r["acc"] for r in rows.values()) / len(rows)
        passed = avg >= BAR_AVG_MIN
        ok &= passed
        parts.append(f"average over {len(rows)} tasks {_pct(avg)}% {'ok' if passed else 'FAIL'}")
    print(f"\n**Quality bar {name}: {'PASS' if ok else 'FAIL'}** — " + "; ".join(parts))
    return ok


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=50, help="held-out examples per task")
    parser.add_argument("--models", nargs="+", default=list(DIFFUSION_MODELS))
    parser.add_argument("--tasks", nargs="+", default=None, help="default: every registered task")
    parser.add_argument("--ar", action="store_true", help="benchmark tiny-ar (greedy transformers generate)")
    parser.add_argument("--ar-model", default=None, help="tiny-ar folder (default: the shipped one)")
    parser.add_argument("--batch", type=int, default=50, help="prompts per generate call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device of the diffusion models (e.g. cuda)")
    parser.add_argument(
        "--settings", nargs="+", default=None, help="subset of setting names (default: all three)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    import dllm
    from dllm.eval import tasks as task_lib

    task_names = args.tasks or task_lib.names()
    tasks = [task_lib.get(t) for t in task_names]
    print(
        f"# Tiny-model benchmark: {args.n} held-out (eval split, seed 0) examples per task, greedy, "
        f"batch {args.batch}, {torch.get_num_threads()} CPU threads"
        + (f", diffusion models on {args.device}" if args.device != "cpu" else "")
    )
    all_ok = True
    if args.ar:
        from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

        from dllm.zoo import shipped_models

        folder = args.ar_model or shipped_models().get("tiny-ar")
        if folder is None:
            print("tiny-ar is not shipped (no dllm/zoo/models/tiny-ar/config.json)")
            return 1
        print(
            "Decoding: transformers `generate`, greedy, max_new_tokens = the task's max_new_tokens, "
            "stop at EOS."
        )
        model = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
        # Not AutoTokenizer: for a folder whose config.json says model_type "qwen2", transformers 5
        # builds a Qwen2Tokenizer, whose pre-tokenizer splits digits/spaces differently from the
        # shipped tokenizer.json the model was trained with.
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
        rows = {
            t.name: run_ar(model, tokenizer, t, t.examples("eval", args.n, seed=0), args.batch) for t in tasks
        }
        print_table("tiny-ar — greedy", rows, with_speed=False)
        return 0 if verdict("tiny-ar", rows, need_avg=False) else 1

    print(
        "Decoding rule: gen_length = the task's max_new_tokens, block_length = gen_length (one block); "
        "steps = gen_length for `llada k=1`."
    )
    chosen = [s for s in settings() if args.settings is None or s[0] in args.settings]
    for model_name in args.models:
        model = dllm.load(model_name, device=args.device)
        n_params = sum(p.numel() for p in model.net.parameters())
        print(f"\n## {model_name} ({model.config.arch}, {n_params / 1e6:.2f}M parameters)")
        results = {}
        for label, make_sampler, one_per_step in chosen:
            rows = {}
            for task in tasks:
                examples = task.examples("eval", args.n, seed=0)
                rows[task.name] = run_diffusion(model, task, examples, make_sampler, one_per_step, args.batch)
            results[label] = rows
            print_table(f"{model_name} — {label}", rows, with_speed=True)
            sys.stdout.flush()
        if "llada k=1" in results:
            all_ok &= verdict(f"{model_name} (llada k=1)", results["llada k=1"], need_avg=args.tasks is None)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
