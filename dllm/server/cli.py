"""``dllm serve MODEL ...``: the flags, checked before the model loads, and the run."""

from __future__ import annotations

import argparse
import os


def add_parser(sub) -> None:
    serve = sub.add_parser(
        "serve",
        help="an OpenAI-compatible server (completions, chat, streaming) with continuous batching",
        description="Serve MODEL over OpenAI's API: a diffusion model with a sampler and a cache, or an"
        " autoregressive verifier with speculative decoding (--drafter). Requests may override the"
        " settings per request (README, 'dllm serve').",
    )
    serve.add_argument("model", help="shipped model name, local folder or hub id")
    serve.add_argument("--name", help="the model's name in the API (default: MODEL)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get("DLLM_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /v1 (default: $DLLM_API_KEY; none: open)",
    )
    serve.add_argument("--max-batch", type=int, default=8, help="rows of one running batch (default 8)")
    serve.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="requests allowed to wait for a row; beyond: 429 (default 64)",
    )
    serve.add_argument(
        "--max-engines",
        type=int,
        default=4,
        help="running batches of distinct per-request settings kept (default 4)",
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=1 << 20, help="largest request body (default 1 MiB)"
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=30.0,
        help="on SIGTERM, seconds running requests may take to finish before they are cancelled",
    )
    serve.add_argument("--chat-template", help="a Jinja chat template (file) for a tokenizer that has none")
    serve.add_argument("--device", default="cpu")
    serve.add_argument("--dtype", help="float32 / bfloat16 / float16")
    serve.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default 0: torch's default)"
    )
    serve.add_argument(
        "--ray-replicas",
        type=int,
        help="serve with Ray Serve: N replicas, each its own engine (needs the ray extra; docs/serve_ray.md)",
    )
    serve.add_argument("--ray-num-cpus", type=float, help="CPUs Ray reserves per replica (default 1)")
    serve.add_argument("--ray-num-gpus", type=float, help="GPUs Ray reserves per replica (default 0)")
    diffusion = serve.add_argument_group("diffusion models (the defaults of every request)")
    diffusion.add_argument("--sampler", help="sampler name (default llada; see `dllm samplers`)")
    diffusion.add_argument(
        "-p", "--sampler-arg", action="append", metavar="KEY=VALUE", help="sampler parameter"
    )
    diffusion.add_argument("--cache", help="cache policy (default none; see `dllm caches`)")
    diffusion.add_argument("-c", "--cache-arg", action="append", metavar="KEY=VALUE", help="cache parameter")
    diffusion.add_argument("--gen-length", type=int, help="canvas length when a request gives no max_tokens")
    diffusion.add_argument("--block-length", type=int)
    diffusion.add_argument("--steps", type=int)
    diffusion.add_argument("--sub-block-length", type=int)
    diffusion.add_argument("--cfg-scale", type=float)
    for flag in ("--logits-eos-inf", "--confidence-eos-eot-inf", "--stop-at-eos"):
        diffusion.add_argument(flag, action="store_true", default=None)
    spec = serve.add_argument_group("autoregressive verifiers: speculative decoding")
    spec.add_argument("--drafter", help="drafter name (see `dllm drafters`; default: plain AR decoding)")
    spec.add_argument("--drafter-model", help="the drafter's model parameter")
    spec.add_argument("-d", "--drafter-arg", action="append", metavar="KEY=VALUE", help="drafter parameter")
    spec.add_argument("--length", help="draft-length controller (default: the drafter's)")
    spec.add_argument("-l", "--length-arg", action="append", metavar="KEY=VALUE", help="controller parameter")
    spec.add_argument("--max-new-tokens", type=int, help="tokens when a request gives no max_tokens")
    spec.add_argument("--top-k", type=int)
    spec.add_argument("--top-p", type=float)
    both = serve.add_argument_group("both")
    both.add_argument("--temperature", type=float)
    both.add_argument("--seed", type=int)


SPECULATIVE_FLAGS = ("max_new_tokens", "top_k", "top_p")


def options_from(args: argparse.Namespace):
    """The ``ServeOptions`` of the parsed flags (checked: a ValueError names the flag)."""
    from dllm.cli import drafter_params, parse_key_values

    from .service import GENERATION_FIELDS, ServeOptions

    drafter_args = drafter_params(args)
    options = ServeOptions(
        model=args.model,
        name=args.name,
        device=args.device,
        dtype=args.dtype,
        sampler=args.sampler,
        sampler_args=parse_key_values(args.sampler_arg, "--sampler-arg"),
        cache=args.cache,
        cache_args=parse_key_values(args.cache_arg, "--cache-arg"),
        generation={
            f: getattr(args, f) for f in ("gen_length", *GENERATION_FIELDS) if getattr(args, f) is not None
        },
        drafter=None if args.drafter is None or args.drafter.lower() == "none" else args.drafter,
        drafter_args=drafter_args,
        length=args.length,
        length_args=parse_key_values(args.length_arg, "--length-arg"),
        speculative={f: getattr(args, f) for f in SPECULATIVE_FLAGS if getattr(args, f) is not None},
        temperature=args.temperature,
        seed=args.seed,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_engines=args.max_engines,
        chat_template=args.chat_template,
        api_key=args.api_key or None,
        max_body_bytes=args.max_body_bytes,
        threads=args.threads or None,
    )
    options.check()
    return options


def run(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"dllm serve needs FastAPI, uvicorn and prometheus-client ({exc.name} is missing): "
            'pip install -e ".[serve]"  (or pip install "dllm[serve]")'
        ) from None
    from dllm.cli import _check_port

    options = options_from(args)
    if args.shutdown_timeout < 0:
        raise ValueError(f"--shutdown-timeout {args.shutdown_timeout} must be at least 0")
    if args.ray_replicas is not None:
        from .ray_serve import run as run_ray

        return run_ray(
            options,
            replicas=args.ray_replicas,
            host=args.host,
            port=args.port,
            num_cpus=args.ray_num_cpus,
            num_gpus=args.ray_num_gpus,
        )
    if args.ray_num_cpus is not None or args.ray_num_gpus is not None:
        raise ValueError("--ray-num-cpus and --ray-num-gpus need --ray-replicas")
    _check_port(args.host, args.port)
    from . import serve

    return serve(options, host=args.host, port=args.port, shutdown_timeout=args.shutdown_timeout)
