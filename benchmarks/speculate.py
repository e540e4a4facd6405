"""Speculative decoding on the shipped tiny models: tiny-ar verifies, AR and diffusion drafters propose.

    python benchmarks/speculate.py [--samples 8] [--threads 1] [--batch 8] [--json FILE]

Held-out (eval split) prompts of the 8 tasks the sampler benchmark uses, greedy, ``max_new_tokens``
= the task's budget, every prompt decoded alone (batch 1) and timed. The wall-clock baseline, plain
AR, is the faster of ``transformers``' own ``generate`` (greedy, KV cache) and the same decoding
through ``dllm.speculate`` without a drafter (one verifier forward per token). Columns
(definitions in ``dllm.metrics``): tokens per verifier forward (TPVF), τ (accepted draft tokens per
round), τ + bonus (committed tokens per round), acceptance by draft position (positions 1, 2, 4,
8), drafter forwards per round, wall-clock speedup over plain AR (summed seconds), and the share of
outputs identical to plain AR. The last table runs the best dLLM drafter on batches of ``--batch``
prompts: TPVF and identity must stay those of batch 1 (each row is decoded as it would be alone).

``--suite baselines`` (issue 29, part 3) runs, in the same run and on the same prompts,
``transformers``' own ``generate(assistant_model=tiny-ar-draft)`` at its defaults (20 draft tokens,
confidence threshold 0.4, adapted when scikit-learn is installed) and its prompt lookup
(``prompt_lookup_num_tokens``) beside dllm's ``ar`` drafter at the same defaults (length controller
``confidence``) and the dLLM drafters; answer tokens per verifier forward are counted for every
system by a forward hook on the verifier.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch

TASKS = ("copy", "reverse", "sort", "shuffle", "insert_index", "replace_random", "cumsum", "letters_sort")
CONFIGS = [  # (label, drafter name or None, drafter params, length controller or None)
    ("AR through the loop (no drafter)", None, {}, None),
    ("ar: tiny-ar-draft, former HF heuristic k (+2/-1 from 5)", "ar", {}, None),
    ("ar: tiny-ar-draft, k = 8", "ar", {}, ("fixed", {"k": 8})),
    ("onepass tiny-dream, k = 8", "onepass", {"model": "tiny-dream"}, ("fixed", {"k": 8})),
    ("onepass tiny-dream, k = 16", "onepass", {"model": "tiny-dream"}, ("fixed", {"k": 16})),
    ("onepass tiny-llada, k = 16", "onepass", {"model": "tiny-llada"}, ("fixed", {"k": 16})),
    (
        "onepass tiny-dream-draft (2 layers), k = 16",
        "onepass",
        {"model": "tiny-dream-draft"},
        ("fixed", {"k": 16}),
    ),
    (
        "onepass tiny-dream-draft (2 layers), k = 24",
        "onepass",
        {"model": "tiny-dream-draft"},
        ("fixed", {"k": 24}),
    ),
    ("diffuspec tiny-dream (CPS + ADL)", "diffuspec", {"model": "tiny-dream"}, None),
    ("diffuspec tiny-llada (CPS + ADL)", "diffuspec", {"model": "tiny-llada"}, None),
    ("diffuspec tiny-dream, no proxy", "diffuspec", {"model": "tiny-dream", "proxy": "none"}, None),
    (
        "diffuspec tiny-dream, summed scores (paper)",
        "diffuspec",
        {"model": "tiny-dream", "normalize": False},
        None,
    ),
    ("diffuspec tiny-dream-draft (CPS + ADL)", "diffuspec", {"model": "tiny-dream-draft"}, None),
    ("dllm tiny-dream fast-dllm 0.9, k = 16", "dllm", {"model": "tiny-dream"}, ("fixed", {"k": 16})),
    (
        "dllm tiny-dream fast-dllm 0.9 + dual, k = 16",
        "dllm",
        {"model": "tiny-dream", "cache": "dual"},
        ("fixed", {"k": 16}),
    ),
]
POSITIONS = (1, 2, 4, 8)
LOOP_AR = CONFIGS[0][0]


HF_SYSTEMS = [  # --suite baselines, transformers' side: (label, extra generate() arguments)
    ("transformers generate, greedy (plain AR)", {}),
    (
        "transformers assisted generation, tiny-ar-draft, its defaults (20, confidence 0.4 adaptive)",
        {"assistant_model": "tiny-ar-draft"},  # a shipped causal LM, loaded by the suite
    ),
    ("transformers prompt lookup, 10 tokens (its default; n-gram <= 2)", {"prompt_lookup_num_tokens": 10}),
    ("transformers prompt lookup, 20 tokens (n-gram <= 2)", {"prompt_lookup_num_tokens": 20}),
]
BASELINE_CONFIGS = [  # --suite baselines, dllm's side: (label, drafter name or None, params, length)
    (LOOP_AR, None, {}, None),
    (
        "ar: tiny-ar-draft, transformers' current default (20, confidence 0.4 adaptive)",
        "ar",
        {},
        ("confidence", {}),
    ),
    ("ar: tiny-ar-draft, 20, confidence 0.4 not adapted", "ar", {}, ("confidence", {"adaptive": False})),
    ("ar: tiny-ar-draft, former HF heuristic k (+2/-1 from 5)", "ar", {}, None),
    ("deer (tiny-deer), k = 32", "deer", {}, None),
    (
        "onepass tiny-dream-draft (2 layers), k = 24",
        "onepass",
        {"model": "tiny-dream-draft"},
        ("fixed", {"k": 24}),
    ),
]


def prompts_and_budgets(samples: int) -> list[tuple[str, int]]:
    from dllm.eval import tasks

    out = []
    for name in TASKS:
        task = tasks.get(name)
        out += [(e.prompt, task.max_new_tokens) for e in task.examples("eval", samples, seed=0)]
    return out


class ForwardCount:
    """Counts a module's forward calls (a forward hook), to give systems that report no counts of
    their own, transformers' ``generate``, a tokens-per-verifier-forward."""

    def __init__(self, net):
        self.calls = 0
        self._hook = net.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1

    def remove(self):
        self._hook.remove()


def hf_generate(verifier, prompt: str, budget: int, **extra) -> tuple[list[int], float]:
    """``transformers``' own greedy ``generate`` (KV cache) of one prompt, with ``extra`` arguments
    (``assistant_model``, ``prompt_lookup_num_tokens``): the answer tokens and wall seconds."""
    from dllm.metrics import answer_length

    ids = torch.tensor([verifier.encode(prompt)])
    start = time.perf_counter()
    with torch.no_grad():
        gen = verifier.net.generate(
            ids,
            max_new_tokens=budget,
            do_sample=False,
            eos_token_id=verifier.eos_ids,
            pad_token_id=verifier.pad_id,
            **extra,
        )
    seconds = time.perf_counter() - start
    tokens = gen[0, ids.shape[1] :].tolist()
    return tokens[: answer_length(tokens, verifier.eos_ids)], seconds


def plain_ar(verifier, items) -> tuple[list[list[int]], float]:
    outputs, seconds = [], []
    for prompt, budget in items:
        tokens, sec = hf_generate(verifier, prompt, budget)
        outputs.append(tokens)
        seconds.append(sec)
    return outputs, sum(seconds), seconds


def run_config(verifier, items, drafter_name, params, length, batch: int = 1, temperature: float = 0.0):
    import dllm
    from dllm.drafters import length as lengths

    results, seconds = [None] * len(items), 0.0
    drafter = None if drafter_name is None else dllm.drafters.get(drafter_name, **params)
    for start in range(0, len(items), batch):
        chunk = list(range(start, min(start + batch, len(items))))
        for budget in sorted({items[i][1] for i in chunk}):  # one max_new_tokens per call
            part = [i for i in chunk if items[i][1] == budget]
            controller = None if length is None else lengths.get(length[0], **length[1])
            out = dllm.speculate(
                verifier,
                [items[i][0] for i in part],
                drafter,
                length=controller,
                max_new_tokens=budget,
                temperature=temperature,
                seed=0,
            )
            seconds += dllm.metrics.batch_seconds(out)
            for i, result in zip(part, out):
                results[i] = result
    return results, seconds


def summarise(label, results, seconds, reference, baseline_seconds) -> dict:
    rounds = sum(r.rounds for r in results)
    reached = [sum(r.reached[i - 1] for r in results if len(r.reached) >= i) for i in POSITIONS]
    accepted = [sum(r.accepted_at[i - 1] for r in results if len(r.accepted_at) >= i) for i in POSITIONS]
    return {
        "config": label,
        "tpvf": sum(r.gen_tokens for r in results) / sum(r.verifier_forwards for r in results),
        "tau": sum(r.accepted for r in results) / rounds,
        "tau_bonus": sum(r.committed for r in results) / rounds,
        "acceptance_by_position": [a / n if n else None for a, n in zip(accepted, reached)],
        "drafter_forwards_per_round": sum(r.drafter_forwards for r in results) / rounds,
        "seconds": seconds,
        "draft_share": sum(r.draft_seconds for r in results) / max(1e-9, sum(r.seconds for r in results)),
        "speedup": baseline_seconds / seconds,
        "identical": sum(r.ids == ref for r, ref in zip(results, reference)) / len(results),
    }


def table(rows: list[dict], baseline_seconds: float, generate_seconds: float) -> str:
    head = (
        "| config | TPVF | τ | τ + bonus | accept @1 / 2 / 4 / 8 | drafter fwd / round | draft time | "
        "seconds | speedup | identical |"
    )
    lines = [
        head,
        "|" + "---|" * 10,
        f"| transformers generate (greedy, KV cache) | 0.9x* | — | 1.00 | — | — | — | "
        f"{generate_seconds:.2f} | {baseline_seconds / generate_seconds:.2f}× | 100 % |",
    ]
    for r in rows:
        acc = " / ".join("—" if a is None else f"{a:.2f}" for a in r["acceptance_by_position"])
        lines.append(
            f"| {r['config']} | {r['tpvf']:.2f} | {r['tau']:.2f} | {r['tau_bonus']:.2f} | {acc} | "
            f"{r['drafter_forwards_per_round']:.2f} | {100 * r['draft_share']:.0f} % | {r['seconds']:.2f} | "
            f"{r['speedup']:.2f}× | {100 * r['identical']:.0f} % |"
        )
    return "\n".join(lines)


DEER_STAGE1 = "~/.cache/dllm/zoo/tiny-deer-stage1"  # python -m dllm.zoo.deer --stage1-out DIR
DEER_STAGE2_ONLY = "~/.cache/dllm/zoo/tiny-deer-stage2-only"  # python -m dllm.zoo.deer --stages 2 --out DIR
DEER_CONFIGS = [
    ("ar: tiny-ar-draft, former HF heuristic k (+2/-1 from 5)", "ar", {}, None),
    ("ar: tiny-ar-draft, k = 8", "ar", {}, ("fixed", {"k": 8})),
    ("diffuspec tiny-dream (CPS + ADL)", "diffuspec", {"model": "tiny-dream"}, None),
    ("diffuspec tiny-dream, no proxy", "diffuspec", {"model": "tiny-dream", "proxy": "none"}, None),
    ("deer, no alignment (tiny-dream-draft)", "deer", {"model": "tiny-dream-draft"}, None),
    ("deer, Stage I only", "deer", {"model": DEER_STAGE1}, None),
    ("deer, Stage II only", "deer", {"model": DEER_STAGE2_ONLY}, None),
    ("deer (tiny-deer: Stage I + II)", "deer", {}, None),
]


def acceptance_curve(results, depth: int = 32) -> list[float | None]:
    reached = [sum(r.reached[i] for r in results if len(r.reached) > i) for i in range(depth)]
    accepted = [sum(r.accepted_at[i] for r in results if len(r.accepted_at) > i) for i in range(depth)]
    return [a / n if n >= 5 else None for a, n in zip(accepted, reached)]  # fewer than 5 rounds: not drawn


BATCH_CONFIGS = [  # (label, drafter name, drafter params, length controller)
    ("deer (tiny-deer), k = 32", "deer", {}, None),
    ("deer (tiny-deer), k = 16", "deer", {}, ("fixed", {"k": 16})),
    ("deer (tiny-deer), ADL 4..32", "deer", {}, ("adl", {"k_min": 4, "k_max": 32})),
    ("onepass tiny-dream-draft, k = 16", "onepass", {"model": "tiny-dream-draft"}, ("fixed", {"k": 16})),
    ("ar tiny-ar-draft, former HF heuristic k (+2/-1 from 5)", "ar", {}, None),
]


def hf_batched_greedy(verifier, prompts: list[str], budget: int, batch: int) -> tuple[list, float]:
    """``transformers``' own batched greedy ``generate`` (left padding, KV cache) over consecutive
    batches of ``batch`` prompts: the batched plain-AR baseline."""
    from dllm.metrics import answer_length

    outputs, start = [], time.perf_counter()
    for first in range(0, len(prompts), batch):
        rows = [verifier.encode(p) for p in prompts[first : first + batch]]
        width = max(len(r) for r in rows)
        ids = torch.tensor([[verifier.pad_id] * (width - len(r)) + r for r in rows])
        pads = torch.tensor([width - len(r) for r in rows])
        mask = (torch.arange(width)[None] >= pads[:, None]).long()
        with torch.no_grad():
            gen = verifier.net.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=budget,
                do_sample=False,
                eos_token_id=verifier.eos_ids,
                pad_token_id=verifier.pad_id,
            )
        outputs += [row[: answer_length(row, verifier.eos_ids)] for row in gen[:, width:].tolist()]
    return outputs, time.perf_counter() - start


def batch_suite(verifier, items, args) -> int:
    """Continuous speculative batching (``dllm.speculate(..., max_batch=B)`` over every prompt)
    against batched plain AR at the same B: transformers' batched greedy generate and dllm's loop
    without a drafter (also continuous). One ``max_new_tokens`` for every prompt (the largest task
    budget; rows stop at EOS). Tokens/s = generated tokens / wall seconds (``dllm.metrics``)."""
    import dllm
    from dllm.drafters import length as lengths

    prompts, budget = [p for p, _ in items], max(b for _, b in items)
    configs = [c for c in BATCH_CONFIGS if args.configs is None or any(s in c[0] for s in args.configs)]
    dllm.speculate(verifier, prompts[:2], "deer", max_new_tokens=4)  # warm-up (model loads)
    reference, _ = hf_batched_greedy(verifier, prompts, budget, 1)
    rows = []
    print(
        f"# Continuous speculative batching, verifier tiny-ar, greedy: {len(prompts)} held-out prompts,"
        f" max_new_tokens {budget}, {args.threads} CPU thread(s)\n"
    )
    print("| batch | system | tokens/s | vs batched plain AR | TPVF | identical to greedy |")
    print("|---:|---|---:|---:|---:|---:|")
    for batch in args.batch:
        runs = []
        outputs, seconds = hf_batched_greedy(verifier, prompts, budget, batch)
        runs.append(("transformers batched greedy generate", outputs, seconds, None))
        start = time.perf_counter()
        out = dllm.speculate(verifier, prompts, None, max_batch=batch, max_new_tokens=budget)
        runs.append(
            ("dllm loop, no drafter (continuous)", [r.ids for r in out], time.perf_counter() - start, out)
        )
        for label, name, params, length in configs:
            drafter = dllm.drafters.get(name, **params)
            controller = None if length is None else lengths.get(length[0], **length[1])
            dllm.speculate(verifier, prompts[:2], drafter, length=controller, max_new_tokens=4)  # warm-up
            start = time.perf_counter()
            out = dllm.speculate(
                verifier, prompts, drafter, length=controller, max_batch=batch, max_new_tokens=budget
            )
            runs.append((label, [r.ids for r in out], time.perf_counter() - start, out))
        ar = max(sum(map(len, o)) / s for _, o, s, _ in runs[:2])
        for label, outputs, seconds, results in runs:
            tps = sum(map(len, outputs)) / seconds
            tpvf = (
                sum(r.gen_tokens for r in results) / sum(r.verifier_forwards for r in results)
                if results
                else None
            )
            same = sum(o == ref for o, ref in zip(outputs, reference)) / len(reference)
            print(
                f"| {batch} | {label} | {tps:.0f} | {tps / ar:.2f}x | {'' if tpvf is None else f'{tpvf:.2f}'}"
                f" | {100 * same:.0f} % |",
                flush=True,
            )
            rows.append(dict(batch=batch, system=label, tokens_per_second=tps, vs_ar=tps / ar, tpvf=tpvf))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


def deer_suite(verifier, items, reference, args) -> int:
    """DEER against its ablations, the AR drafter and DiffuSpec, greedy and at T = 1."""
    from pathlib import Path

    configs = []
    for label, name, params, length in DEER_CONFIGS:
        model = params.get("model")
        if model and model.startswith("~") and not (Path(model).expanduser() / "config.json").exists():
            print(
                f"skipped {label}: no checkpoint at {model} (see DEER_STAGE1 / DEER_STAGE2_ONLY)",
                file=sys.stderr,
            )
            continue
        configs.append(
            (label, name, {**params, "model": str(Path(model).expanduser())} if model else params, length)
        )
    curves, rows = {}, {}
    for temperature in (0.0, 1.0):
        _, baseline = run_config(verifier, items, None, {}, None, temperature=temperature)
        for label, name, params, length in configs:
            run_config(verifier, items[:2], name, params, length, temperature=temperature)  # warm-up
            results, seconds = run_config(verifier, items, name, params, length, temperature=temperature)
            rows[label, temperature] = summarise(label, results, seconds, reference, baseline)
            if temperature == 0:
                curves[label] = acceptance_curve(results)
            print(
                f"T={temperature} {label}: τ {rows[label, temperature]['tau']:.2f}",
                file=sys.stderr,
                flush=True,
            )
    print(
        f"# DEER ablation, verifier tiny-ar: {len(items)} held-out prompts ({args.samples} per task), "
        f"batch 1, {args.threads} CPU thread(s); "
        "speedup over the loop without a drafter at the same temperature\n"
    )
    print(
        "| drafter | τ (T = 0) | TPVF (T = 0) | accept @1 / 2 / 4 / 8 | speedup (T = 0) | identical | "
        "τ (T = 1) | TPVF (T = 1) | speedup (T = 1) |\n|---|---:|---:|---|---:|---:|---:|---:|---:|"
    )
    for label, *_ in configs:
        g, t = rows[label, 0.0], rows[label, 1.0]
        acc = " / ".join("—" if a is None else f"{a:.2f}" for a in g["acceptance_by_position"])
        print(
            f"| {label} | {g['tau']:.2f} | {g['tpvf']:.2f} | {acc} | {g['speedup']:.2f}× | "
            f"{100 * g['identical']:.0f} % | {t['tau']:.2f} | {t['tpvf']:.2f} | {t['speedup']:.2f}× |"
        )
    _plot(curves, args.plot)
    print(f"\nAcceptance by draft position (greedy): {args.plot}")
    return 0


def baselines_systems(verifier, args) -> list[tuple]:
    """(label, run) of the baselines suite; ``run(prompt, budget)`` returns the answer tokens, wall
    seconds, drafter forwards and dllm's result (None for transformers)."""
    import dllm
    from dllm.drafters import length as lengths

    systems = []
    for label, extra in HF_SYSTEMS:
        counter = None
        if "assistant_model" in extra:
            extra = {**extra, "assistant_model": dllm.load(extra["assistant_model"]).net}
            counter = ForwardCount(extra["assistant_model"])

        def hf_run(p, b, extra=extra, counter=counter):
            before = counter.calls if counter else 0
            tokens, seconds = hf_generate(verifier, p, b, **extra)
            return tokens, seconds, (counter.calls - before if counter else 0), None

        systems.append((label, hf_run))
    for label, name, params, length in BASELINE_CONFIGS:
        drafter = None if name is None else dllm.drafters.get(name, **params)
        controller = None if length is None else lengths.get(length[0], **length[1])

        def run(p, b, drafter=drafter, controller=controller):
            [r] = dllm.speculate(verifier, [p], drafter, length=controller, max_new_tokens=b)
            return r.ids, dllm.metrics.batch_seconds([r]), r.drafter_forwards, r

        systems.append((label, run))
    keep = (HF_SYSTEMS[0][0], LOOP_AR)  # the plain-greedy reference and baselines always run
    return [
        s for s in systems if args.configs is None or s[0] in keep or any(c in s[0] for c in args.configs)
    ]


def baselines_suite(verifier, items, args) -> int:
    """transformers' own assisted generation (at its defaults) and prompt lookup beside dllm's AR
    drafter at the same defaults and its dLLM drafters, greedy, batch 1, in one run. The prompts are
    interleaved (every system decodes prompt i before any decodes prompt i + 1, so a load change on a
    shared machine hits all alike) and each prompt's time is the best of ``--repeats``. Verifier
    forwards are counted the same way for every system, by a forward hook on the verifier's net."""
    import importlib.util

    import transformers

    systems = baselines_systems(verifier, args)
    verifier_calls = ForwardCount(verifier.net)
    for _, run in systems:
        run(*items[0])  # warm-up (model loads)
    n = len(items)
    stats = {
        label: dict(outputs=[None] * n, forwards=[0] * n, drafts=[0] * n, seconds=[math.inf] * n)
        for label, _ in systems
    }
    for _repeat in range(args.repeats):
        for i, (prompt, budget) in enumerate(items):
            for label, run in systems:
                before = verifier_calls.calls
                tokens, seconds, drafts, result = run(prompt, budget)
                row = stats[label]
                row["outputs"][i], row["forwards"][i] = tokens, verifier_calls.calls - before
                row["drafts"][i], row["seconds"][i] = drafts, min(row["seconds"][i], seconds)
                if result is not None and result.verifier_forwards != row["forwards"][i]:
                    print(
                        f"{label}: dllm counts {result.verifier_forwards} verifier forwards, the hook "
                        f"{row['forwards'][i]}",
                        file=sys.stderr,
                    )
    reference = stats[HF_SYSTEMS[0][0]]["outputs"]
    baseline = min(sum(stats[label]["seconds"]) for label in (HF_SYSTEMS[0][0], LOOP_AR))

    def summary(row, part=slice(None)):
        tokens = sum(len(o) for o in row["outputs"][part])
        return dict(
            tpvf=tokens / sum(row["forwards"][part]),
            answer_tokens=tokens,
            verifier_forwards=sum(row["forwards"][part]),
            drafter_forwards=sum(row["drafts"][part]),
            seconds=sum(row["seconds"][part]),
            identical=sum(o == r for o, r in zip(row["outputs"][part], reference[part]))
            / len(reference[part]),
        )

    rows = []
    for label, _ in systems:
        row = {"system": label, **summary(stats[label])}
        row["speedup"] = baseline / row["seconds"]
        row["per_task_tpvf"] = {
            task: summary(stats[label], slice(t * args.samples, (t + 1) * args.samples))["tpvf"]
            for t, task in enumerate(TASKS)
        }
        rows.append(row)
    sklearn = importlib.util.find_spec("sklearn") is not None
    print(
        f"# The strongest AR baseline: transformers {transformers.__version__}'s assisted generation and"
        f" prompt lookup beside dllm, verifier tiny-ar, greedy, batch 1: {n} held-out prompts"
        f" ({args.samples} per task), {args.threads} CPU thread(s), best of {args.repeats}\n"
    )
    print(
        "transformers adapts its confidence threshold (ROC) only when scikit-learn is installed: it is"
        f" {'installed' if sklearn else 'not installed, so its threshold stays 0.4'} here.\n"
    )
    print(
        "| system | answer tokens / verifier forward | verifier forwards | drafter forwards / verifier"
        " forward | seconds | vs plain greedy | identical to greedy |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['system']} | {r['tpvf']:.2f} | {r['verifier_forwards']} |"
            f" {r['drafter_forwards'] / r['verifier_forwards']:.2f} | {r['seconds']:.2f} |"
            f" {r['speedup']:.2f}× | {100 * r['identical']:.0f} % |"
        )
    print(
        "\nvs plain greedy: the faster of transformers' greedy generate and dllm's loop without a drafter"
        f" ({baseline:.2f} s) / the system's seconds (summed over the prompts).\n"
    )
    print("## Answer tokens per verifier forward, per task\n")
    print("| system | " + " | ".join(TASKS) + " |\n|---|" + "---:|" * len(TASKS))
    for r in rows:
        print(f"| {r['system']} | " + " | ".join(f"{r['per_task_tpvf'][t]:.2f}" for t in TASKS) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "prompts": n,
                    "repeats": args.repeats,
                    "threads": args.threads,
                    "transformers": transformers.__version__,
                    "sklearn": sklearn,
                    "baseline_seconds": baseline,
                    "rows": rows,
                },
                f,
                indent=2,
            )
    return 0


def _plot(curves: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for label, curve in curves.items():
        xs = [i + 1 for i, a in enumerate(curve) if a is not None]
        ax.plot(xs, [a for a in curve if a is not None], marker="o", markersize=3, label=label)
    ax.set_xlabel("draft position")
    ax.set_ylabel("P(accepted | reached)")
    ax.set_ylim(0, 1.02)
    ax.set_title("tiny-ar verifier, greedy: acceptance by draft position")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=8, help="held-out prompts per task")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[8], help="batch size(s) of the batched run(s)"
    )
    parser.add_argument(
        "--configs", nargs="+", default=None, help="labels (substrings) of the configs to run"
    )
    parser.add_argument("--json", default=None, help="write the rows to this file")
    parser.add_argument(
        "--suite",
        choices=["drafters", "deer", "batch", "baselines"],
        default="drafters",
        help="deer: the DEER ablation (greedy and T = 1) and its acceptance plot; batch: tokens/s of"
        " continuous speculative batching against batched plain AR at each --batch size; baselines:"
        " transformers' assisted generation and prompt lookup beside dllm's drafters",
    )
    parser.add_argument("--repeats", type=int, default=1, help="--suite baselines: best of this many runs")
    parser.add_argument("--plot", default="docs/deer_acceptance.png", help="--suite deer: the plot's file")
    args = parser.parse_args(argv)
    if args.samples < 1 or args.threads < 1 or min(args.batch) < 1 or args.repeats < 1:
        parser.error("--samples, --threads, --batch and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    import dllm

    verifier = dllm.load("tiny-ar")
    items = prompts_and_budgets(args.samples)
    if args.suite == "batch":
        return batch_suite(verifier, items, args)
    if args.suite == "baselines":
        return baselines_suite(verifier, items, args)
    plain_ar(verifier, items[:4])  # warm-up
    reference, generate_seconds, ar_seconds = plain_ar(verifier, items)
    if args.suite == "deer":
        return deer_suite(verifier, items, reference, args)
    configs = [c for c in CONFIGS if args.configs is None or any(s in c[0] for s in args.configs)]
    runs = []
    for label, name, params, length in configs:
        run_config(verifier, items[:2], name, params, length)  # warm-up (model loads, n-gram fit)
        runs.append((label, *run_config(verifier, items, name, params, length)))
        print(f"{label}: {runs[-1][2]:.2f} s", file=sys.stderr, flush=True)
    # Plain AR = the faster of transformers' generate and the loop without a drafter.
    loop_seconds = next((sec for label, _, sec in runs if label == LOOP_AR), float("inf"))
    baseline = min(generate_seconds, loop_seconds)
    if loop_seconds < generate_seconds:  # per-prompt AR times for the per-task table
        ar_seconds = [r.seconds for r in next(res for label, res, _ in runs if label == LOOP_AR)]
    rows = [
        {**summarise(label, results, seconds, reference, baseline), "results": results}
        for label, results, seconds in runs
    ]
    print(
        f"# Speculative decoding, verifier tiny-ar, greedy: {len(items)} held-out prompts "
        f"({args.samples} per task: {', '.join(TASKS)}), batch 1, {args.threads} CPU thread(s)\n"
    )
    print(table(rows, baseline, generate_seconds))
    print(
        f"\nSpeedup: over plain AR = the faster of transformers' generate ({generate_seconds:.2f} s) "
        f"and the loop without a drafter ({loop_seconds:.2f} s), summed over the prompts.\n"
        "*plain AR: one forward per generated token plus one for the EOS, so its TPVF is slightly below 1."
    )
    dllm_rows = [r for r in rows if r["config"] != LOOP_AR and not r["config"].startswith("ar:")]
    best = max(dllm_rows, key=lambda r: r["tpvf"]) if dllm_rows else None
    fastest = max(dllm_rows, key=lambda r: r["speedup"]) if dllm_rows else None
    for shown in [best] + ([fastest] if fastest is not best else []):
        if shown is None:
            continue
        print(f"\n## Per task: {shown['config']}\n")
        print("| task | TPVF | τ + bonus | speedup |\n|---|---:|---:|---:|")
        for t, name in enumerate(TASKS):
            part = slice(t * args.samples, (t + 1) * args.samples)
            row = summarise(
                name,
                shown["results"][part],
                sum(r.seconds for r in shown["results"][part]),
                reference[part],
                sum(ar_seconds[part]),
            )
            print(f"| {name} | {row['tpvf']:.2f} | {row['tau_bonus']:.2f} | {row['speedup']:.2f}× |")
    batch = args.batch[0]
    if best is not None and batch > 1:
        label, name, params, length = next(c for c in configs if c[0] == best["config"])
        results, seconds = run_config(verifier, items, name, params, length, batch=batch)
        batched = summarise(label, results, seconds, reference, baseline)
        print(f"\n## Batch {batch}: {label}\n")
        print("| batch | TPVF | identical to plain AR | seconds | tokens/s |\n|---|---:|---:|---:|---:|")
        tokens = sum(len(r) for r in reference)
        print(
            f"| 1 | {best['tpvf']:.2f} | {100 * best['identical']:.0f} % | {best['seconds']:.2f} | "
            f"{tokens / best['seconds']:.0f} |"
        )
        print(
            f"| {batch} | {batched['tpvf']:.2f} | {100 * batched['identical']:.0f} % | {seconds:.2f} | "
            f"{tokens / seconds:.0f} |"
        )
        print(
            f"\nBatch {batch} keeps {100 * batched['tpvf'] / best['tpvf']:.0f} % of batch 1's "
            "tokens per verifier forward."
        )
        rows.append({**batched, "config": f"{label} (batch {batch})"})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "generate_seconds": generate_seconds,
                    "loop_ar_seconds": loop_seconds,
                    "rows": [{k: v for k, v in r.items() if k != "results"} for r in rows],
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
