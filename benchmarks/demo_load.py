"""Load test of the demo: N concurrent requests through ``gradio_client``, checked against the direct API.

Starts ``dllm demo`` on a free localhost port (or uses ``--url``), sends ``--requests`` generations at
once (a mix of models, samplers, caches and task prompts) to its ``/generate`` endpoint — the queue
runs at most ``--concurrency`` of them at a time — and reports completed / failed / p50 / p95 / max
latency (submit to result, queueing included). Every served result must equal ``dllm.generate`` with
the same settings (text, ids, steps, NFE); the exit code is 1 otherwise.

    pip install -e ".[demo]"
    python benchmarks/demo_load.py [--requests 20] [--concurrency 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CONFIGS = [  # model, sampler, sampler params, cache, cache params, gen length, block length
    ("tiny-llada", "fast-dllm", {}, "none", {}, 64, 32),
    ("tiny-llada", "llada", {}, "none", {}, 32, 32),
    ("tiny-llada", "localleap", {}, "prefix", {}, 64, 32),
    ("tiny-dream", "fast-dllm", {"threshold": 0.8}, "dual", {}, 64, 32),
    ("tiny-dream", "llada", {}, "none", {}, 32, 16),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(concurrency: int):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tempfile.NamedTemporaryFile("w", prefix="dllm-demo-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dllm", "demo", "--port", str(port), "--concurrency", str(concurrency)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"dllm demo exited with {proc.returncode}; log: {log.name}")
        try:
            urllib.request.urlopen(url, timeout=5)
            return proc, url, log.name
        except OSError as err:
            if time.time() > deadline:
                proc.terminate()
                raise SystemExit(f"dllm demo did not answer within 180 s; log: {log.name}") from err
            time.sleep(0.5)


def requests(n: int) -> list[dict]:
    """``n`` requests cycling through the configurations, each configuration with the next task prompt."""
    from dllm.demo import examples

    prompts = [e.prompt for e in examples.default_examples()]
    out = []
    for i in range(n):
        model, sampler, sp, cache, cp, gen, block = CONFIGS[i % len(CONFIGS)]
        out.append(
            dict(
                prompt=prompts[(i // len(CONFIGS) + i) % len(prompts)],
                model=model,
                sampler=sampler,
                sampler_params=sp,
                cache=cache,
                cache_params=cp,
                gen_length=gen,
                block_length=block,
            )
        )
    return out


def direct(request: dict) -> dict:
    import dllm
    from dllm.demo import models

    model = models.get(request["model"])
    [result] = dllm.generate(
        model,
        request["prompt"],
        sampler=dllm.samplers.get(request["sampler"], **request["sampler_params"]),
        cache=dllm.caches.get(request["cache"], **request["cache_params"]),
        gen_length=request["gen_length"],
        block_length=request["block_length"],
    )
    return result.to_dict()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="the server's queue concurrency (started here)"
    )
    parser.add_argument("--url", help="use a running demo instead of starting one")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    import torch
    from gradio_client import Client

    torch.set_num_threads(1)  # like the server (`dllm demo --threads 1`)
    proc = None
    if args.url:
        url, log = args.url, None
    else:
        proc, url, log = start_server(args.concurrency)
    try:
        batch = requests(args.requests)
        expected = [direct(r) for r in batch]
        client = Client(url, verbose=False)
        done_at: dict = {}
        submitted = time.perf_counter()
        jobs = []
        for i, r in enumerate(batch):
            job = client.submit(
                r["prompt"],
                r["model"],
                r["sampler"],
                r["sampler_params"],
                r["cache"],
                r["cache_params"],
                r["gen_length"],
                r["block_length"],
                api_name="/generate",
            )
            job.add_done_callback(lambda _, i=i: done_at.setdefault(i, time.perf_counter()))
            jobs.append(job)
        served, errors = [], []
        for i, job in enumerate(jobs):
            try:
                served.append(job.result(timeout=600))
            except Exception as exc:  # noqa: BLE001 — counted as failed
                served.append(None)
                errors.append(f"request {i}: {type(exc).__name__}: {exc}")
        wall = time.perf_counter() - submitted
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
    latencies = [done_at[i] - submitted for i, s in enumerate(served) if s is not None and i in done_at]
    keys = ("text", "ids", "steps", "nfe", "gen_tokens")
    mismatches = [
        i
        for i, (s, e) in enumerate(zip(served, expected))
        if s is not None and any(s[k] != e[k] for k in keys)
    ]
    figures = {
        "requests": len(batch),
        "completed": sum(s is not None for s in served),
        "failed": len(errors),
        "mismatched": len(mismatches),
        "server_concurrency": args.concurrency if not args.url else None,
        "p50_s": round(percentile(latencies, 0.5), 3),
        "p95_s": round(percentile(latencies, 0.95), 3),
        "max_s": round(max(latencies, default=float("nan")), 3),
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2) if wall > 0 else None,
        "served_tokens_per_s": round(sum(s["gen_tokens"] for s in served if s) / wall, 1)
        if wall > 0
        else None,
    }
    print(
        f"demo load: {figures['requests']} concurrent requests to {url}generate "
        f"(server concurrency {figures['server_concurrency']})"
    )
    print(
        f"  completed {figures['completed']} / failed {figures['failed']} / "
        f"results differing from the direct API {figures['mismatched']}"
    )
    print(
        f"  latency p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s, "
        f"max {figures['max_s']:.2f} s; "
        f"wall {figures['wall_s']:.2f} s, {figures['requests_per_s']} requests/s, "
        f"{figures['served_tokens_per_s']} tokens/s served"
    )
    for line in errors[:5]:
        print("  " + line)
    for i in mismatches[:5]:
        print(f"  request {i} differs: served {served[i]['text']!r} vs direct {expected[i]['text']!r}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    if log and (errors or mismatches):
        print(f"  server log: {log}")
    return 0 if not errors and not mismatches and figures["completed"] == len(batch) else 1


if __name__ == "__main__":
    sys.exit(main())
