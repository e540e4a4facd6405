"""Load test of ``dllm serve``: streaming completions from concurrent clients, checked against the Python API.

    python benchmarks/serve_load.py [--requests 200] [--concurrency 32] [--quick] [--threads 1]

Two servers, one after the other, each started with ``tests/_server.py`` (127.0.0.1, a free port,
stopped by its pid):

- ``diffusion``: ``dllm serve tiny-llada --sampler fast-dllm --cache dual --gen-length G --max-batch 16``;
  every request asks for ``max_tokens`` G (``--gen-length``, default 32);
- ``speculative``: ``dllm serve tiny-ar --drafter deer --drafter-model tiny-deer --max-new-tokens M
  --max-batch 16``; every request asks for ``max_tokens`` M (``--max-tokens``, default 32).

``--requests`` streaming ``POST /v1/completions`` (``stream: true``, usage included) are sent by
``--concurrency`` asyncio clients (httpx, a semaphore; each request bounded by ``--timeout``), on
mixed-length prompts: held-out prompts of every task of ``dllm.eval.tasks``, about half of them
behind 1, 2 or 4 solved training examples of the same task (longer prompts); seeded, deterministic.
Per server: completed / failed / differing from the direct API (a request's text, the
concatenation of its chunks, must equal ``dllm.generate(model, prompt, sampler="fast-dllm",
cache="dual", gen_length=G)`` resp. ``dllm.speculate(verifier, prompt, drafter="deer",
max_new_tokens=M)``), p50 / p95 time to the first chunk with text and to the last chunk (from
the request's send), tokens/s served (summed ``usage.completion_tokens`` / the load run's wall
seconds, ``dllm.metrics.throughput``), and ``/metrics`` read right after the load run (running rows
must be 0; row and request counts of the run). Once the server is stopped, the same prompts run
sequentially through the Python API in this process (one prompt per call, ``max_batch=1``): they
give the reference texts and the sequential tokens/s (summed generated tokens / the loop's wall
seconds). The target is server / sequential > 1. Both sides get an untimed warm-up first; the
server and the in-process run never run at the same time. The exit code is 1 when a request
failed or differed, rows leaked, or the server logged a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOT_CHOICES = (0, 0, 0, 1, 2, 4)  # solved training examples before a prompt, drawn per prompt
MAX_SHOTS = max(SHOT_CHOICES)


def setups(gen_length: int, max_tokens: int, max_batch: int) -> dict:
    """name -> what the server is started with, what the in-process reference runs."""
    return {
        "diffusion": dict(
            label=f"tiny-llada, fast-dllm + dual cache, gen length {gen_length}",
            serve=[
                "tiny-llada",
                "--sampler",
                "fast-dllm",
                "--cache",
                "dual",
                "--gen-length",
                str(gen_length),
                "--max-batch",
                str(max_batch),
            ],
            max_tokens=gen_length,
        ),
        "speculative": dict(
            label=f"tiny-ar verifier, deer drafter (tiny-deer), max_tokens {max_tokens}",
            serve=[
                "tiny-ar",
                "--drafter",
                "deer",
                "--drafter-model",
                "tiny-deer",
                "--max-new-tokens",
                str(max_tokens),
                "--max-batch",
                str(max_batch),
            ],
            max_tokens=max_tokens,
        ),
    }


def mixed_prompts(n: int, seed: int) -> list[str]:
    """``n`` prompts over every task, round robin in a seeded order: held-out (eval) prompts, about
    one in two behind 1, 2 or 4 solved training examples of the same task ("prompt target\\n")."""
    from dllm.eval import tasks

    rng = random.Random(seed)
    names = list(tasks.names())
    rng.shuffle(names)
    per_task = -(-n // len(names))
    held_out = {name: tasks.get(name).examples("eval", per_task, seed=seed) for name in names}
    solved = {name: tasks.get(name).examples("train", 4 * MAX_SHOTS, seed=seed) for name in names}
    out = []
    for i in range(n):
        name = names[i % len(names)]
        example = held_out[name][i // len(names)]
        shots = rng.sample(solved[name], rng.choice(SHOT_CHOICES))
        out.append("".join(f"{s.prompt}{s.target}\n" for s in shots) + example.prompt)
    return out


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# ---- the load run ---------------------------------------------------------------------------


async def stream_one(client, url: str, body: dict, timeout: float) -> dict:
    """One streaming completion: its text (the chunks' concatenation), times from its send to the
    first chunk with text and to the last chunk, usage and dllm stats; ``error`` when it failed."""
    out = dict(text="", first=None, last=None, usage=None, stats=None, finish=None, error=None)
    start = out["sent"] = time.perf_counter()

    async def run():
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                detail = (await response.aread()).decode(errors="replace")[:300]
                out["error"] = f"HTTP {response.status_code}: {detail}"
                return
            done = False
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    done = True
                    break
                now = time.perf_counter() - start
                chunk = json.loads(data)
                if "error" in chunk:
                    out["error"] = f"error chunk: {chunk['error']}"
                    return
                out["last"] = now
                if chunk.get("usage"):
                    out["usage"] = chunk["usage"]
                for choice in chunk.get("choices", []):
                    if choice.get("text"):
                        out["text"] += choice["text"]
                        if out["first"] is None:
                            out["first"] = now
                    if choice.get("finish_reason") is not None:
                        out["finish"], out["stats"] = choice["finish_reason"], choice.get("dllm")
            if not done:
                out["error"] = "the stream ended without data: [DONE]"
            elif out["usage"] is None or out["stats"] is None:
                out["error"] = "no usage chunk or no final chunk with dllm stats"

    try:
        await asyncio.wait_for(run(), timeout)
    except asyncio.TimeoutError:
        out["error"] = f"no complete answer in {timeout} s"
    except Exception as exc:  # noqa: BLE001 — counted as failed, reported
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


async def load_run(base: str, prompts: list[str], max_tokens: int, concurrency: int, timeout: float):
    """Every prompt as a streaming completion, at most ``concurrency`` in flight; (answers, wall s)."""
    import httpx

    semaphore = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    client_timeout = httpx.Timeout(timeout, connect=10.0)
    url = base + "/v1/completions"

    async with httpx.AsyncClient(limits=limits, timeout=client_timeout) as client:

        async def one(prompt):
            body = dict(
                prompt=prompt,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with semaphore:
                return await stream_one(client, url, body, timeout)

        start = time.perf_counter()
        answers = await asyncio.gather(*(one(p) for p in prompts))
        wall = time.perf_counter() - start
        for answer in answers:  # send and last chunk, from the load run's start
            answer["sent"] -= start
            answer["ended"] = None if answer["last"] is None else answer["sent"] + answer["last"]
        return answers, wall


def scrape(server) -> dict:
    """``/metrics``: the gauges, and the row / request / token counters by label."""
    from prometheus_client.parser import text_string_to_metric_families

    status, data = server.get("/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics answered {status}")
    out = {"rows": {}, "requests": {}}
    for family in text_string_to_metric_families(data.decode()):
        for sample in family.samples:
            if sample.name in ("dllm_running_rows", "dllm_queue_depth", "dllm_running_batches"):
                out[sample.name] = sample.value
            elif sample.name == "dllm_generated_tokens_total":
                out["generated_tokens"] = sample.value
            elif sample.name == "dllm_rows_total":
                out["rows"][sample.labels["outcome"]] = sample.value
            elif sample.name == "dllm_http_requests_total":
                key = f"{sample.labels['route']} {sample.labels['status']}"
                out["requests"][key] = sample.value
    return out


def counted(after: dict, before: dict) -> dict:
    """Counter increments between two scrapes (labels that did not change left out)."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def serve_and_load(setup: dict, prompts: list[str], args) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    import _server

    extra = ["--threads", str(args.threads)] if args.threads else []
    started = time.perf_counter()
    server = _server.start(*setup["serve"], *extra, ready_timeout=args.ready_timeout)
    try:
        ready_s = time.perf_counter() - started
        warm, _ = asyncio.run(
            load_run(server.url, prompts[: args.warmup], setup["max_tokens"], args.warmup, args.timeout)
        )
        before = scrape(server)
        answers, wall = asyncio.run(
            load_run(server.url, prompts, setup["max_tokens"], args.concurrency, args.timeout)
        )
        after = scrape(server)  # right after the last answer: no row may still run
    finally:
        code = server.stop()
    log = server.output()
    return dict(
        answers=answers,
        wall=wall,
        ready_s=ready_s,
        warmup_failed=[a["error"] for a in warm if a["error"]],
        metrics_after=after,
        metrics_counted=dict(
            rows=counted(after["rows"], before["rows"]),
            requests=counted(after["requests"], before["requests"]),
            generated_tokens=after.get("generated_tokens", 0) - before.get("generated_tokens", 0),
        ),
        exit_code=code,
        log_path=str(server.log),
        log_problems=[line for line in log.splitlines() if "Traceback" in line or "ERROR" in line][:20],
    )


# ---- the Python API, sequentially -----------------------------------------------------------


def sequential(name: str, setup: dict, prompts: list[str], args) -> dict:
    """The prompts one at a time through the Python API (the reference texts); wall seconds."""
    import dllm

    if name == "diffusion":
        model = dllm.load("tiny-llada")

        def call(prompt):
            [result] = dllm.generate(
                model, prompt, sampler="fast-dllm", cache="dual", gen_length=setup["max_tokens"], max_batch=1
            )
            return result
    else:
        model = dllm.load("tiny-ar")
        drafter = dllm.drafters.get("deer")  # its defaults must be the server's --drafter-model
        if getattr(drafter, "model", None) != "tiny-deer":
            raise SystemExit(f"dllm.drafters.get('deer') drafts with {drafter!r}, the server with tiny-deer")

        def call(prompt):
            [result] = dllm.speculate(
                model, prompt, drafter=drafter, max_new_tokens=setup["max_tokens"], max_batch=1
            )
            return result

    lengths = [len(model.encode(p)) for p in prompts]
    for prompt in prompts[: args.warmup]:  # untimed, like the server's warm-up requests
        call(prompt)
    start = time.perf_counter()
    results = [call(p) for p in prompts]
    return dict(results=results, wall=time.perf_counter() - start, prompt_tokens=lengths)


# ---- figures --------------------------------------------------------------------------------


def summarise(name: str, setup: dict, prompts: list[str], served: dict, direct: dict) -> dict:
    from dllm.metrics import throughput

    answers, results = served["answers"], direct["results"]
    done = [i for i, a in enumerate(answers) if a["error"] is None]
    differing = [i for i in done if answers[i]["text"] != results[i].text]
    miscounted = [  # usage / dllm stats that disagree with the reference's generated tokens
        i
        for i in done
        if answers[i]["usage"]["completion_tokens"] != results[i].gen_tokens
        or answers[i]["stats"].get("gen_tokens") != results[i].gen_tokens
    ]
    served_tokens = sum(answers[i]["usage"]["completion_tokens"] for i in done)
    first = [answers[i]["first"] for i in done if answers[i]["first"] is not None]
    last = [answers[i]["last"] for i in done]
    server_tps = throughput(served_tokens, served["wall"])
    sequential_tokens = sum(r.gen_tokens for r in results)
    sequential_tps = throughput(sequential_tokens, direct["wall"])
    lengths = direct["prompt_tokens"]

    def rounded(x, digits=4):
        return None if x is None else round(x, digits)

    return dict(
        setup=name,
        label=setup["label"],
        serve_command="dllm serve " + " ".join(setup["serve"]),
        max_tokens=setup["max_tokens"],
        requests=len(answers),
        completed=len(done),
        failed=len(answers) - len(done),
        differing=len(differing),
        token_counts_differing=len(miscounted),
        empty_answers=sum(1 for i in done if answers[i]["first"] is None),
        prompt_tokens=dict(
            min=min(lengths),
            median=statistics.median(lengths),
            max=max(lengths),
            mean=statistics.mean(lengths),
        ),
        first_chunk_s=dict(p50=rounded(percentile(first, 0.5)), p95=rounded(percentile(first, 0.95))),
        last_chunk_s=dict(p50=rounded(percentile(last, 0.5)), p95=rounded(percentile(last, 0.95))),
        load_wall_s=round(served["wall"], 3),
        last_completed_at_s=rounded(max((answers[i]["ended"] for i in done), default=None), 3),
        served_tokens=served_tokens,
        served_tokens_per_s=round(server_tps, 1),
        sequential_wall_s=round(direct["wall"], 3),
        sequential_tokens=sequential_tokens,
        sequential_tokens_per_s=round(sequential_tps, 1),
        server_over_sequential=round(server_tps / sequential_tps, 3) if sequential_tps else None,
        metrics_running_rows=served["metrics_after"].get("dllm_running_rows"),
        metrics_queue_depth=served["metrics_after"].get("dllm_queue_depth"),
        metrics_counted=served["metrics_counted"],
        server_ready_s=round(served["ready_s"], 2),
        server_exit_code=served["exit_code"],
        server_log=served["log_path"],
        server_log_problems=served["log_problems"],
        warmup_failed=served["warmup_failed"],
        errors=[f"request {i}: {answers[i]['error']}" for i in range(len(answers)) if answers[i]["error"]][
            :10
        ],
        differences=[
            {"request": i, "prompt": prompts[i], "served": answers[i]["text"], "direct": results[i].text}
            for i in differing[:5]
        ],
        count_differences=[
            {
                "request": i,
                "usage": answers[i]["usage"]["completion_tokens"],
                "dllm_gen_tokens": answers[i]["stats"].get("gen_tokens"),
                "direct": results[i].gen_tokens,
            }
            for i in miscounted[:5]
        ],
    )


def problems(row: dict) -> list[str]:
    out = []
    if row["failed"] or row["completed"] != row["requests"]:
        out.append(f"{row['failed']} failed request(s)")
    if row["differing"]:
        out.append(f"{row['differing']} text(s) differ from the direct API")
    if row["token_counts_differing"]:
        out.append(f"{row['token_counts_differing']} token count(s) differ from the direct API")
    if row["metrics_running_rows"] != 0:
        out.append(f"dllm_running_rows = {row['metrics_running_rows']} after the run (leaked rows)")
    if row["metrics_counted"]["rows"].get("done", 0) != row["completed"]:
        out.append(f"dllm_rows_total{{outcome=done}} grew by {row['metrics_counted']['rows']} during the run")
    if row["server_log_problems"]:
        out.append(f"the server logged errors ({row['server_log']})")
    if row["warmup_failed"]:
        out.append(f"warm-up request(s) failed: {row['warmup_failed'][:2]}")
    if row["server_exit_code"] != 0:
        out.append(f"the server exited with {row['server_exit_code']} on SIGTERM")
    return out


def table(rows: list[dict]) -> str:
    lines = [
        "| server | completed / failed / differing | first chunk p50 / p95 (s) | last chunk p50 / p95 (s)"
        " | load wall (s) | served tok/s | sequential tok/s | server / sequential | running rows after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:

        def pair(d):
            return " / ".join("—" if d[k] is None else f"{d[k]:.3f}" for k in ("p50", "p95"))

        lines.append(
            f"| {r['label']} | {r['completed']} / {r['failed']} / {r['differing']}"
            f" | {pair(r['first_chunk_s'])} | {pair(r['last_chunk_s'])} | {r['load_wall_s']:.2f}"
            f" | {r['served_tokens_per_s']:.0f}"
            f" | {r['sequential_tokens_per_s']:.0f} | {r['server_over_sequential']:.2f}×"
            f" | {r['metrics_running_rows']:.0f} |"
        )
    return "\n".join(lines)


def machine(threads: int) -> dict:
    import torch

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return dict(
        cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        server_threads=threads or "torch's default",
        platform=platform.platform(),
        python=platform.python_version(),
        torch=torch.__version__,
        commit=commit,
        dirty_tree=dirty,
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    )


def markdown(rows: list[dict], info: dict, command: str, args) -> str:
    lengths = rows[0]["prompt_tokens"] if rows else {}
    lines = [
        f"# `dllm serve` under load: {args.requests} streaming completions,"
        f" {args.concurrency} concurrent clients",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {info['cpus']} CPU(s), torch threads {info['torch_threads']} in process, server"
        f" `--threads` {info['server_threads']}; {info['platform']}, Python {info['python']}, torch"
        f" {info['torch']}; commit {info['commit']}{' (uncommitted changes)' if info['dirty_tree'] else ''};"
        f" {info['date']}.",
        "",
        table(rows),
        "",
        "Servers: " + "; ".join(f"`{r['serve_command']}`" for r in rows) + ".",
        "",
        f"Prompts: {args.requests} held-out prompts of every task in `dllm.eval.tasks` (seed {args.seed}),"
        " about one in two behind 1, 2 or 4 solved training examples of its task; prompt tokens"
        f" (first server's tokenizer) min {lengths.get('min')}, median {lengths.get('median')}, max"
        f" {lengths.get('max')}.",
        "",
        "Differing: the streamed text (concatenated chunks) is not the in-process result of"
        ' `dllm.generate(model, prompt, sampler="fast-dllm", cache="dual", gen_length=G)` resp.'
        ' `dllm.speculate(verifier, prompt, drafter="deer", max_new_tokens=M)` (the drafter'
        ' `dllm.drafters.get("deer")`, checked to draft with tiny-deer, the server\'s `--drafter-model`).'
        " First / last chunk:"
        " seconds from a request's send to its first chunk with text / its last chunk. Served tok/s:"
        " summed `usage.completion_tokens` / the load run's wall seconds; sequential tok/s: the same"
        " prompts one at a time through the Python API (`max_batch=1`, in this process, after the"
        " server stopped), summed generated tokens / the loop's wall seconds (`dllm.metrics.throughput`)."
        " Running rows: `dllm_running_rows` on `/metrics` right after the last answer.",
        "",
    ]
    for r in rows:
        c = r["metrics_counted"]
        lines.append(
            f"- {r['label']}: `/metrics` counted during the run: rows {c['rows']}, requests {c['requests']},"
            f" generated tokens {c['generated_tokens']:.0f} (served tokens {r['served_tokens']});"
            f" last completed answer at {r['last_completed_at_s']} s of the {r['load_wall_s']} s run;"
            f" queue depth after {r['metrics_queue_depth']:.0f}; prompt tokens min"
            f" {r['prompt_tokens']['min']} / median {r['prompt_tokens']['median']} / max"
            f" {r['prompt_tokens']['max']}."
        )
        found = problems(r)
        lines.append(f"  Problems: {'; '.join(found)}." if found else "  Problems: none.")
    lines += [
        "",
        "The client, the server and the sequential run share the machine's CPUs (and, where this was"
        " measured, other jobs shared them too): absolute figures are noisy; the ratio is the figure to"
        " compare, and a quiet machine should be used for anything more.",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=None, help="requests (default 200; --quick: 20)")
    parser.add_argument("--concurrency", type=int, default=32, help="streaming clients in flight")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 20 requests, nothing written")
    parser.add_argument("--setups", nargs="+", choices=["diffusion", "speculative"], default=None)
    parser.add_argument(
        "--gen-length", type=int, default=32, help="diffusion: canvas length (multiple of 32)"
    )
    parser.add_argument("--max-tokens", type=int, default=32, help="speculative: max_tokens of a request")
    parser.add_argument("--max-batch", type=int, default=16, help="the servers' --max-batch")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server and of the in-process run (default 1; 0: torch's default)",
    )
    parser.add_argument("--seed", type=int, default=0, help="the prompts' draw")
    parser.add_argument("--warmup", type=int, default=4, help="untimed requests / calls before each run")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one request may take")
    parser.add_argument(
        "--ready-timeout", type=float, default=180.0, help="seconds the server may take to start"
    )
    parser.add_argument("--json", help="results file (default benchmarks/results/serve_load.json)")
    parser.add_argument("--md", help="markdown file (default benchmarks/serve_load.md)")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 20 if args.quick else 200
    if min(args.requests, args.concurrency, args.max_batch, args.gen_length, args.max_tokens) < 1:
        parser.error("--requests, --concurrency, --max-batch, --gen-length and --max-tokens must be >= 1")
    if args.gen_length % 32:
        parser.error(f"--gen-length {args.gen_length} must be a multiple of 32 (the tiny models' block)")
    if not args.quick:
        args.json = args.json or str(ROOT / "benchmarks" / "results" / "serve_load.json")
        args.md = args.md or str(ROOT / "benchmarks" / "serve_load.md")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python benchmarks/serve_load.py " + " ".join(argv if argv is not None else sys.argv[1:])
    prompts = mixed_prompts(args.requests, args.seed)
    chosen = setups(args.gen_length, args.max_tokens, args.max_batch)
    rows = []
    for name in args.setups or list(chosen):
        setup = chosen[name]
        print(f"{name}: dllm serve {' '.join(setup['serve'])}: {args.requests} requests ...", file=sys.stderr)
        served = serve_and_load(setup, prompts, args)  # the server is stopped before the next step
        direct = sequential(name, setup, prompts, args)
        rows.append(summarise(name, setup, prompts, served, direct))
        print(
            f"  {rows[-1]['completed']} completed, {rows[-1]['failed']} failed", file=sys.stderr, flush=True
        )
    info = machine(args.threads)
    text = markdown(rows, info, command.strip(), args)
    print(text)
    for r in rows:
        for line in r["errors"][:5]:
            print(f"{r['setup']}: {line}")
        for d in r["differences"]:
            print(
                f"{r['setup']}: request {d['request']} differs: served {d['served']!r}"
                f" vs direct {d['direct']!r}"
            )
        for line in r["server_log_problems"][:5]:
            print(f"{r['setup']}: server log: {line}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = dict(command=command.strip(), machine=info, args=vars(args), rows=rows)
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
    if args.md:
        Path(args.md).write_text(text)
    return 1 if any(problems(r) for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
