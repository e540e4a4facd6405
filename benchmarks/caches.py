"""Speed, accuracy and memory of every cache policy at long generation lengths.

    python benchmarks/caches.py                              # all caches, gen 256 and 512, block 32
    python benchmarks/caches.py --gen 256 --samples 2 --caches none dual elastic
    python benchmarks/caches.py --models /path/to/llada /path/to/dream   # any loadable dLLM folders
    python benchmarks/caches.py --caches dkv-decode:refresh_interval=32 dkv-greedy:refresh_interval=8,window=8
    python benchmarks/caches.py --models tiny-llada --gen 512 --samples 64 --first 64 --json b.json  # a shard
    python benchmarks/caches.py --merge a.json b.json  # one table pooled over shards (--first 0 / 64 ...)

For each model x gen length x sampler (``llada`` one token per step, ``fast-dllm`` threshold 0.9,
``learn2pd`` + EoTP at its defaults)
x cache, the same held-out prompts (``dllm.tasks``, eval split) are decoded one at a time
(batch 1, as in the papers), each configuration in a fresh subprocess so that its peak RSS is its
own. Columns: wall and CPU seconds (summed over prompts; the CPU is shared, so CPU time is the
steadier number), speedup over no cache with the same sampler (wall / CPU), answer tokens/s and
canvas positions/s, NFE per prompt, accuracy (task scorer, %), fraction of canvas tokens and of
answers (text before EOS) identical to the no-cache run, ``gained / lost`` (prompts scored right by
this cache and wrong without one / the reverse) and the paired accuracy change in points with a 95 %
interval, peak RSS of the process, the cache's own buffers (K/V store, Elastic's per-layer inputs and
queries) in MiB, and for Elastic the share of (row, layer) pairs recomputed over every column.

Models: the shipped ``tiny-llada`` / ``tiny-dream`` when present, else random-weight models of a
tiny-model size (answers are noise then, and their chaotic attention drifts at every step). The shipped
models' context is 1024 positions and their second training stage saw 256- and 512-position canvases.
Torch runs with one intra-op thread (``--threads``): on a shared 2-core CPU, more spin-waits.

On a GPU (``--device cuda``; attention then runs the Triton kernel, bf16 by default) add the peak GPU
memory column; ``random:llada-8b`` / ``random:dream-7b`` are random-weight models of LLaDA-8B's and
Dream-7B's shapes built directly on the device, for speed only (their answers are noise):

    python benchmarks/caches.py --device cuda --models random:llada-8b --gen 256 --samples 2 --samplers llada
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from dllm.models.config import REFERENCE_LAYOUTS

SAMPLERS = {
    "llada": ("llada", {}),
    "fast-dllm": ("fast-dllm", {"threshold": 0.9}),
    "learn2pd": ("learn2pd", {}),
}
TASKS = ("copy", "reverse", "insert_index", "replace_index", "letters_sort", "words_sort", "sudoku", "cumsum")


# Random-weight models of the real checkpoints' shapes, for timing on a GPU (their answers are noise):
FULL_SIZE = REFERENCE_LAYOUTS  # LLaDA-8B and Dream-7B shapes (dllm.models.config)


def _full_size_model(name: str, device, dtype):
    import torch

    from dllm.models.config import ModelConfig
    from dllm.models.loading import DiffusionModel
    from dllm.models.transformer import Transformer

    cfg = ModelConfig(**FULL_SIZE[name], torch_dtype=str(dtype).replace("torch.", ""))
    torch.manual_seed(0)
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # built in its final dtype, on its device: no fp32 copy of 8B weights
    try:
        with torch.device(device):
            net = Transformer(cfg).eval()
    finally:
        torch.set_default_dtype(default)
    return DiffusionModel(
        net=net,
        config=cfg,
        tokenizer=None,
        mask_id=cfg.mask_token_id,
        eos_ids=cfg.eos_token_ids,
        pad_id=cfg.pad_token_id,
        bos_id=None,
        name=f"random-{name}",
    )


def _random_model(arch: str, device="cpu", dtype=None):
    if arch in FULL_SIZE:
        import torch

        return _full_size_model(arch, device, dtype or torch.bfloat16)
    sys.path.insert(0, "tests")
    from _models import random_model

    model = random_model(
        arch,
        vocab=936,
        d_model=256,
        n_layers=4,
        n_heads=8,
        n_kv_heads=8 if arch == "llada" else 4,
        head_dim=32,
        mlp_hidden=704,
        max_seq_len=1024,
    )
    model.net.to(device, dtype)
    return model


def load(name: str, device: str = "cpu", dtype: str | None = None):
    import torch

    import dllm

    if name.startswith("random:"):
        return _random_model(name.split(":", 1)[1], device, getattr(torch, dtype) if dtype else None)
    return dllm.load(name, device=device, dtype=dtype)


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def prompts(model, count: int, seed: int = 0, random_prompt_tokens: int = 40, first: int = 0):
    """Held-out prompts ``first .. first + count - 1`` (cycling over TASKS): a longer run extends a
    shorter one, and ``first`` shards one run over several processes."""
    from dllm.eval import tasks

    out = []
    for i in range(first, first + count):
        task = tasks.get(TASKS[i % len(TASKS)])
        example = task.examples("eval", i // len(TASKS) + 1, seed)[-1]
        ids = (
            model.encode(example.prompt)
            if model.tokenizer is not None
            else list(range(5, 5 + random_prompt_tokens))
        )
        out.append((task, example, ids))
    return out


def cache_bytes(state) -> int:
    """Bytes of the cache's own buffers: the loop's K/V store and the policy's per-request tensors."""
    import torch

    from dllm.caches.base import IncrementalState

    total, own = 0, state.cache_state
    common = {
        f.name for f in dataclasses.fields(IncrementalState)
    }  # the incremental bookkeeping: not counted
    for name in [] if own is None else [f.name for f in dataclasses.fields(own) if f.name not in common]:
        value = getattr(own, name)
        for t in value if isinstance(value, list) else [value]:
            total += t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0
    return total


def worker(args) -> dict:
    import torch

    import dllm

    torch.set_num_threads(args.threads)
    model = load(args.model, args.device, args.dtype)
    name, params = SAMPLERS[args.sampler]
    cache = dllm.caches.get(args.cache, **json.loads(args.cache_params))
    rows, wall, cpu, states = [], 0.0, 0.0, {}
    examples = prompts(model, args.samples, random_prompt_tokens=args.random_prompt_tokens, first=args.first)
    dllm.generate(
        model,
        [examples[0][2]],
        sampler=dllm.samplers.get(name, **params),
        cache=cache,  # warm-up
        gen_length=args.block,
        block_length=args.block,
    )
    for task, example, ids in examples:
        torch.manual_seed(0)
        synchronize(args.device)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        [result] = dllm.generate(
            model,
            [ids],
            sampler=dllm.samplers.get(name, **params),
            cache=cache,
            gen_length=args.gen,
            block_length=args.block,
            callback=lambda e: states.update(state=e.state),
        )
        synchronize(args.device)
        wall += time.perf_counter() - start_wall
        cpu += time.process_time() - start_cpu
        score = float(task.score(result.text, example)) if model.tokenizer is not None else float("nan")
        rows.append(
            {
                "canvas": result.canvas,
                "ids": result.ids,
                "nfe": result.nfe,
                "gen_tokens": result.gen_tokens,
                "score": score,
            }
        )
    state = states["state"]
    kv = 0
    if cache.needs_kv:
        cfg = model.config
        kv = 2 * cfg.n_layers * cfg.n_kv_heads * state.width * cfg.head_dim * model.dtype.itemsize
    extra = {}
    if getattr(
        state.cache_state, "row_layers", 0
    ):  # Elastic: share of (row, layer) pairs recomputed over every column
        extra["full_layer_fraction"] = state.cache_state.full_row_layers / state.cache_state.row_layers
    if args.device.startswith("cuda"):
        extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return {
        "rows": rows,
        "wall": wall,
        "cpu": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cache_mb": (kv + cache_bytes(state)) / 2**20,
        **extra,
    }


def split_cache_spec(spec: str) -> tuple[str, str]:
    """``"dkv-decode:refresh_interval=32,..."`` -> (``"dkv-decode"``, its parameters as JSON)."""
    from dllm.cli import parse_key_values

    name, _, params = spec.partition(":")
    return name, json.dumps(parse_key_values(params.split(",") if params else [], f"--caches {spec}"))


def check_cache_spec(spec: str) -> str:
    """The spec itself, once the registry accepts its name and parameters (its errors name the problem)."""
    import dllm

    name, params = split_cache_spec(spec)
    dllm.caches.get(name, **json.loads(params))
    return spec


def run_config(args, model, gen, sampler, cache_spec) -> dict:
    cache, cache_params = split_cache_spec(cache_spec)
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--model",
        model,
        "--gen",
        str(gen),
        "--block",
        str(args.block),
        "--sampler",
        sampler,
        "--cache",
        cache,
        "--cache-params",
        cache_params,
        "--samples",
        str(args.samples),
        "--first",
        str(args.first),
        "--threads",
        str(args.threads),
        "--device",
        args.device,
        "--random-prompt-tokens",
        str(args.random_prompt_tokens),
    ] + (["--dtype", args.dtype] if args.dtype else [])
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--models",
        nargs="*",
        default=None,
        help="model names/folders (default: shipped tiny models or random)",
    )
    parser.add_argument("--gen", nargs="*", type=int, default=[256, 512])
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--samplers", nargs="*", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument(
        "--caches",
        nargs="*",
        default=None,
        help="default: every registered cache; NAME:KEY=VALUE,... sets a cache's parameters",
    )
    parser.add_argument("--samples", type=int, default=4, help="held-out prompts per configuration")
    parser.add_argument(
        "--first",
        type=int,
        default=0,
        help="index of the first held-out prompt (shard a run: --first 0 / --first 64 ... then --merge)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="print one table pooled over the --json files of shards of the same configurations",
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--random-prompt-tokens",
        type=int,
        default=40,
        help="prompt length of random:* models (e.g. 1024 for a few-shot prompt as in the papers)",
    )
    parser.add_argument(
        "--device", default="cpu", help="torch device (e.g. cuda: the attention backend is then Triton)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        choices=["float32", "bfloat16", "float16"],
        help="model dtype (default: float32 on CPU; on CUDA the checkpoint's, bfloat16 for random:*-8b/7b)",
    )
    parser.add_argument("--json", default=None, help="also write all results to this file")
    # internal: one configuration in this process
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sampler", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache-params", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        args.gen = args.gen[0]
        print(json.dumps(worker(args)))
        return
    if args.merge:
        print_merged(args.merge)
        return
    if args.first < 0:
        parser.error(f"--first must be at least 0, got {args.first}")

    import dllm
    from dllm.models.loading import resolve_device
    from dllm.zoo import shipped_models

    try:
        resolve_device(args.device)
    except ValueError as exc:
        parser.error(f"--device: {exc}")
    if args.random_prompt_tokens < 1:
        parser.error(f"--random-prompt-tokens must be at least 1, got {args.random_prompt_tokens}")
    shipped = shipped_models()
    models = args.models or [
        n if n in shipped else f"random:{n.split('-')[1]}" for n in ("tiny-llada", "tiny-dream")
    ]
    order = ["none", "prefix", "dual", "dkv-decode", "dkv-greedy", "elastic"]
    try:
        names = {check_cache_spec(c): split_cache_spec(c)[0] for c in args.caches or dllm.caches.names()}
    except ValueError as exc:
        parser.error(f"--caches: {exc}")
    rank = lambda c: (order.index(names[c]) if names[c] in order else len(order), c)  # noqa: E731
    caches = ["none"] + sorted((c for c in names if c != "none"), key=rank)
    results = []
    print_header(args.device.startswith("cuda"))
    for model in models:
        for gen in args.gen:
            for sampler in args.samplers:
                base, base_entry = None, None
                for cache in caches:
                    res = run_config(args, model, gen, sampler, cache)
                    base = base or res
                    entry = {
                        "model": model,
                        "gen": gen,
                        "sampler": sampler,
                        "cache": cache,
                        "first": args.first,
                        **{k: v for k, v in res.items() if k != "rows"},
                        **compare(res["rows"], base["rows"]),
                    }
                    base_entry = base_entry or entry
                    print(table_row(entry, base_entry), flush=True)
                    results.append(entry)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)


def compare(rows: list[dict], base: list[dict]) -> dict:
    """Counts over the prompts of one configuration against the no-cache run on the same prompts."""
    return {
        "prompts": len(rows),
        "correct": sum(r["score"] for r in rows),
        "gained": sum(r["score"] > b["score"] for r, b in zip(rows, base)),
        "lost": sum(r["score"] < b["score"] for r, b in zip(rows, base)),
        "same_answer_count": sum(r["ids"] == b["ids"] for r, b in zip(rows, base)),
        "same_token_count": sum(x == y for r, b in zip(rows, base) for x, y in zip(r["canvas"], b["canvas"])),
        "canvas_tokens": sum(len(r["canvas"]) for r in rows),
        "gen_tokens": sum(r["gen_tokens"] for r in rows),
        "nfe_total": sum(r["nfe"] for r in rows),
    }


def print_header(gpu: bool) -> None:
    header = (
        "| model | gen | sampler | cache | wall s | CPU s | speedup wall | speedup CPU "
        "| ans tok/s | canvas pos/s | NFE | acc % | gained / lost | Δ acc (95 % CI) "
        "| same tokens | same answers | peak RSS MiB | cache MiB | full layers |"
        + (" peak GPU MiB |" if gpu else "")
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))


def accuracy_change(gained: int, lost: int, n: int) -> tuple[float, float]:
    """Paired accuracy change against no cache on the same prompts, in points, and the half-width of
    its normal-approximation 95 % interval (each prompt contributes +1, -1 or 0)."""
    delta = (gained - lost) / n
    spread = math.sqrt(max((gained + lost) / n - delta**2, 0.0) / n)
    return 100 * delta, 100 * 1.96 * spread


def table_row(entry: dict, base: dict) -> str:
    """One table line; ``gained / lost``: prompts this cache gets right / wrong that no cache gets
    wrong / right."""
    n = entry["prompts"]
    delta, half_width = accuracy_change(entry["gained"], entry["lost"], n)
    full = f"{100 * entry['full_layer_fraction']:.0f}%" if "full_layer_fraction" in entry else ""
    return (
        f"| {Path(entry['model']).name} | {entry['gen']} | {entry['sampler']} | {entry['cache']} "
        f"| {entry['wall']:.1f} | {entry['cpu']:.1f} "
        f"| {base['wall'] / entry['wall']:.2f}x | {base['cpu'] / entry['cpu']:.2f}x "
        f"| {entry['gen_tokens'] / entry['wall']:.1f} | {entry['canvas_tokens'] / entry['wall']:.1f} "
        f"| {entry['nfe_total'] / n:.1f} | {100 * entry['correct'] / n:.1f} "
        f"| +{entry['gained']} / -{entry['lost']} "
        f"| {delta:+.1f} ± {half_width:.1f} "
        f"| {entry['same_token_count'] / entry['canvas_tokens']:.3f} | {entry['same_answer_count'] / n:.2f} "
        f"| {entry['peak_rss_mb']:.0f} | {entry['cache_mb']:.1f} | {full} |"
        + (f" {entry['peak_gpu_mb']:.0f} |" if "peak_gpu_mb" in entry else "")
    )


SUMMED = (
    "wall",
    "cpu",
    "prompts",
    "correct",
    "gained",
    "lost",
    "same_answer_count",
    "same_token_count",
    "canvas_tokens",
    "gen_tokens",
    "nfe_total",
)


def merge(paths: list[str]) -> list[dict]:
    """Pool shards (``--json`` files of runs with different ``--first``) configuration by configuration."""
    pooled: dict[tuple, dict] = {}
    seen: dict[tuple, set] = {}
    for path in paths:
        with open(path) as fh:
            entries = json.load(fh)
        for entry in entries:
            if "prompts" not in entry:
                raise SystemExit(f"{path}: written by an older version of this script (no per-prompt counts)")
            key = (entry["model"], entry["gen"], entry["sampler"], entry["cache"])
            if entry["first"] in seen.setdefault(key, set()):
                raise SystemExit(
                    f"{path}: prompts from {entry['first']} of {key} appear twice among the files"
                )
            seen[key].add(entry["first"])
            if key not in pooled:
                pooled[key] = dict(entry)
                continue
            into = pooled[key]
            for name in SUMMED:
                into[name] += entry[name]
            for name in ("peak_rss_mb", "cache_mb", "peak_gpu_mb"):
                if name in entry:
                    into[name] = max(into[name], entry[name])
            if "full_layer_fraction" in entry:  # weighted by prompts (rows of a shard have similar lengths)
                into["full_layer_fraction"] = (
                    into["full_layer_fraction"] * (into["prompts"] - entry["prompts"])
                    + entry["full_layer_fraction"] * entry["prompts"]
                ) / into["prompts"]
    return list(pooled.values())


def print_merged(paths: list[str]) -> None:
    entries = merge(paths)
    print_header(any("peak_gpu_mb" in e for e in entries))
    for entry in entries:
        base = next(
            (
                e
                for e in entries
                if e["cache"] == "none"
                and e["model"] == entry["model"]
                and e["gen"] == entry["gen"]
                and e["sampler"] == entry["sampler"]
            ),
            None,
        )
        if base is None:
            raise SystemExit(
                f"no no-cache run for {entry['model']} gen {entry['gen']} {entry['sampler']} to compare with"
            )
        if base["prompts"] != entry["prompts"]:
            raise SystemExit(
                f"{entry['cache']} pooled {entry['prompts']} prompts but no cache {base['prompts']}"
            )
        print(table_row(entry, base))


if __name__ == "__main__":
    main()
