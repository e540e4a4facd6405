"""Command line: ``dllm generate``, ``dllm speculate``, ``dllm samplers``, ``dllm caches``, ``dllm drafters``,
``dllm models``, ``dllm demo``, ``dllm serve`` (``dllm.server.cli``), ``dllm eval`` (``dllm.eval.cli``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing


def _literal(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_key_values(pairs: list[str] | None, flag: str) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise SystemExit(f"error: {flag} expects KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.replace("-", "_")] = _literal(value)
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dllm", description="Fast decoding for diffusion language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="generate text with a dLLM")
    gen.add_argument("model", help="shipped model name (tiny-llada, tiny-dream), local folder or hub id")
    gen.add_argument("prompt", nargs="+", help="one or more prompts (a batch); use \\n for newlines")
    gen.add_argument("--sampler", default="llada", help="sampler name (see `dllm samplers`)")
    gen.add_argument("--cache", default="none", help="cache policy name (see `dllm caches`)")
    gen.add_argument(
        "-p", "--sampler-arg", action="append", metavar="KEY=VALUE", help="any other sampler parameter"
    )
    gen.add_argument("-c", "--cache-arg", action="append", metavar="KEY=VALUE", help="cache parameter")
    gen.add_argument("--gen-length", type=int, default=64)
    gen.add_argument("--block-length", type=int, default=32)
    gen.add_argument(
        "--sub-block-length",
        type=int,
        help="block-diffusion models (Fast-dLLM v2): decode each block in sub-blocks of this size",
    )
    gen.add_argument("--steps", type=int, help="denoising steps (default: gen length, one token per step)")
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--cfg-scale", type=float, default=0.0)
    gen.add_argument("--logits-eos-inf", action="store_true")
    gen.add_argument("--confidence-eos-eot-inf", action="store_true")
    gen.add_argument("--stop-at-eos", action="store_true")
    gen.add_argument("--dtype", help="float32 / bfloat16 / float16 (default: float32 on CPU)")
    gen.add_argument("--device", default="cpu")
    gen.add_argument("--chat", action="store_true", help="wrap prompts in the tokenizer's chat template")
    gen.add_argument(
        "--allow-special",
        action="store_true",
        help="let prompt text contain special-token text (e.g. the mask token's), read as those tokens;"
        " refused by default",
    )
    gen.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest and steadiest for the tiny models; 0 = torch's default)",
    )
    gen.add_argument(
        "--max-batch",
        type=int,
        help="rows decoded at once; more prompts than that run with continuous batching (default: all)",
    )
    gen.add_argument("--compile", action="store_true", help="torch.compile the model step (slow first call)")
    gen.add_argument(
        "--show-steps",
        action="store_true",
        help="render the unmasking order (with --json: add each row's per-step trace)",
    )
    gen.add_argument(
        "--json",
        action="store_true",
        help="machine-readable output: a JSON list, one object per prompt (the trace with --show-steps)",
    )
    taken = {action.dest for action in gen._actions}
    shortcuts = gen.add_argument_group(
        "sampler parameters",
        "read from the sampler configs; the chosen sampler"
        " must have the parameter (-p KEY=VALUE takes any, too)",
    )
    flags = sampler_flags()
    added = [name for name in flags if name not in taken]  # the others stay reachable through -p
    for name in added:
        kind, owners = flags[name]
        shortcuts.add_argument(
            f"--{name.replace('_', '-')}",
            dest=name,
            type=kind,
            metavar=kind.__name__.upper(),
            help=f"sampler parameter of {', '.join(owners)} (see `dllm samplers`)",
        )
    gen.set_defaults(sampler_flags=tuple(added))

    spec = sub.add_parser("speculate", help="speculative decoding: a drafter proposes, an AR verifier checks")
    spec.add_argument("verifier", help="causal LM verifier (tiny-ar, a local folder or hub id)")
    spec.add_argument("prompt", nargs="+", help="one or more prompts (a batch); use \\n for newlines")
    spec.add_argument(
        "--drafter", default="none", help="drafter name (see `dllm drafters`); none = plain AR decoding"
    )
    spec.add_argument(
        "--drafter-model", help="the drafter's model parameter (tiny-dream, tiny-ar-draft, ...)"
    )
    spec.add_argument(
        "-d", "--drafter-arg", action="append", metavar="KEY=VALUE", help="any drafter parameter"
    )
    spec.add_argument(
        "--length", help="draft-length controller (see `dllm drafters`; default: the drafter's)"
    )
    spec.add_argument(
        "-l", "--length-arg", action="append", metavar="KEY=VALUE", help="length-controller parameter"
    )
    spec.add_argument("--max-new-tokens", type=int, default=64)
    spec.add_argument(
        "--max-batch",
        type=int,
        help="rows decoded at once; more prompts than that run with continuous batching (default: all)",
    )
    spec.add_argument("--temperature", type=float, default=0.0)
    spec.add_argument("--top-k", type=int)
    spec.add_argument("--top-p", type=float)
    spec.add_argument("--seed", type=int, default=0)
    spec.add_argument("--device", default="cpu")
    spec.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: fastest and steadiest for the tiny models; 0 = torch's default)",
    )
    spec.add_argument("--chat", action="store_true", help="wrap prompts in the tokenizer's chat template")
    spec.add_argument(
        "--allow-special",
        action="store_true",
        help="let prompt text contain special-token text, read as those tokens; refused by default",
    )
    spec.add_argument("--show-rounds", action="store_true", help="render each round's draft and verdict")
    spec.add_argument("--json", action="store_true", help="machine-readable output")
    spec.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip plain AR decoding of the same prompts (run by default with a drafter, for the"
        " speedup and the identical-output check)",
    )

    sub.add_parser("samplers", help="list sampler plugins and their parameters")
    sub.add_parser("caches", help="list cache policies and their parameters")
    sub.add_parser("drafters", help="list drafter plugins and draft-length controllers")
    sub.add_parser("models", help="list the shipped models")

    demo = sub.add_parser(
        "demo", help="the Gradio demo: decoding configurations side by side (needs the demo extra)"
    )
    demo.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    demo.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 for every interface)")
    demo.add_argument(
        "--share",
        type=_boolean,
        default=False,
        metavar="true|false",
        help="also open a public Gradio share link (default false)",
    )
    demo.add_argument(
        "--concurrency", type=int, default=4, help="generations running at once, all users together"
    )
    demo.add_argument("--max-queue", type=int, default=64, help="requests allowed to wait in the queue")
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per process (default 1: fastest for the tiny models; 0 = torch's default)",
    )

    from dllm.eval.cli import add_parser as add_eval_parser
    from dllm.server.cli import add_parser as add_serve_parser

    add_eval_parser(sub)
    add_serve_parser(sub)
    return parser


def sampler_flags() -> dict[str, tuple]:
    """The ``dllm generate`` shortcut flags, read from the sampler configs: every field of a registered
    sampler whose type is a number, a string or a flag -> (argparse type, samplers that have it).
    A name with different types in different samplers takes any JSON value."""
    from dllm import samplers

    flags: dict[str, tuple] = {}
    for sampler in samplers.names():
        cls = samplers.cls(sampler)
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            kind = _PLAIN.get(_without_none(hints.get(field.name)))
            if field.init and kind is not None:
                known, owners = flags.get(field.name, (kind, []))
                flags[field.name] = (known if known is kind else _literal, owners + [sampler])
    return flags


def _without_none(hint):
    """``X`` for ``X | None`` (and for ``X``); other unions as they are."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0] if len(args) == 1 else hint
    return hint


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


_boolean.__name__ = "bool"
_literal.__name__ = "value"
_PLAIN = {float: float, int: int, str: str, bool: _boolean}


def _demo(args) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print(
            "error: the demo needs Gradio, which is not installed; install the demo extra:"
            ' pip install -e ".[demo]"'
            '  (or pip install "dllm[demo]")',
            file=sys.stderr,
        )
        return 2
    if args.concurrency < 1 or args.max_queue < 1 or args.threads < 0:
        raise ValueError("--concurrency and --max-queue must be at least 1, --threads at least 0")
    _check_port(args.host, args.port)  # before the models load, not after
    from dllm.demo import launch

    try:
        launch(
            port=args.port,
            host=args.host,
            share=args.share,
            concurrency=args.concurrency,
            max_queue=args.max_queue,
            threads=args.threads or None,
        )
    except OSError as exc:  # taken while the models loaded: Gradio's "Cannot find empty port"
        if "port" not in str(exc).lower():
            raise
        raise ValueError(
            f"--port {args.port}: the demo cannot serve on {args.host}:{args.port} ({exc}); the port is"
            " in use, choose another --port"
        ) from None
    return 0


def _check_port(host: str, port: int) -> None:
    """ValueError naming the port when the demo could not serve on ``host:port``: out of range, or in use
    (bound the way Gradio checks it: with SO_REUSEADDR, on the host and on 127.0.0.1)."""
    import errno
    import socket

    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port} is not a port number (1 to 65535)")
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ValueError(f"--host {host!r} is not an address of this machine ({exc.strerror})") from None
    local = socket.getaddrinfo("127.0.0.1", port, type=socket.SOCK_STREAM)  # Gradio's own check binds there
    for family, kind, proto, _, address in addresses + local:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ValueError(
                        f"--port {port}: port {port} is already in use on {address[0]} (another program"
                        " serves there); stop it or choose another --port"
                    ) from None
                raise ValueError(f"--port {port}: cannot serve on {host}:{port} ({exc.strerror})") from None


def _list_plugins(registry, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("name", "parameters (defaults)", "summary"):
        table.add_column(column)
    for row in registry.describe():
        params = ", ".join(f"{k}={v!r}" for k, v in row["params"].items()) or "-"
        table.add_row(row["name"], params, row["summary"])
    Console().print(table)


def _render_steps(console, model, result) -> None:
    """Colour each generated token by the step that committed it; list the steps. The EOS padding after
    the answer's first EOS is collapsed into one line (it buries the answer otherwise)."""
    from rich.table import Table
    from rich.text import Text

    step_of = {}
    for record in result.trace:
        for pos, tok in zip(record.positions, record.tokens):
            step_of[pos] = (record.step, tok)
    steps = [s for s, _ in step_of.values()] or [0]
    first, span = min(steps), max(steps) - min(steps) + 1
    palette = ["bright_red", "red", "dark_orange", "yellow", "green", "cyan", "blue", "magenta"]
    shown = min(len(result.canvas), result.gen_tokens + 1)  # the answer and the EOS that ends it
    tail = result.canvas[shown:]
    eos = set(getattr(model, "eos_ids", []) or [])
    padding = (
        f"{len(tail)} EOS padding positions"
        if all(t in eos for t in tail)
        else f"{len(tail)} positions after the first EOS ({sum(t in eos for t in tail)} of them EOS)"
    )
    text = Text()
    for pos, tok in enumerate(result.canvas[:shown]):
        colour = palette[(step_of[pos][0] - first) * len(palette) // span] if pos in step_of else "dim"
        text.append(model.decode([tok]).replace("\n", "⏎"), style=colour)
        text.append("·", style="dim")
    if tail:
        text.append(f" … {padding}", style="dim")
    console.print(text, soft_wrap=True)
    table = Table(title="unmasking order (position: token, confidence)")
    table.add_column("step", justify="right")
    table.add_column("NFE", justify="right")
    table.add_column("committed")
    run = []  # consecutive steps that committed only EOS padding

    def flush():
        if run:
            (s0, n0), (s1, n1) = run[0][:2], run[-1][:2]
            count = sum(r[2] for r in run)
            table.add_row(
                f"{s0}–{s1}" if s1 != s0 else str(s0),
                f"{n0}–{n1}" if n1 != n0 else str(n0),
                f"… {count} EOS padding position{'s' if count != 1 else ''}",
                style="dim",
            )
            run.clear()

    for record in result.trace:
        cells = [
            f"{p}:{model.decode([t])!r} {c:.2f}"
            for p, t, c in zip(record.positions, record.tokens, record.confidences)
            if p < shown
        ]
        hidden = sum(p >= shown for p in record.positions)
        if not cells:
            if hidden:
                run.append((record.step, record.nfe, hidden))
            continue
        flush()
        table.add_row(
            str(record.step),
            str(record.nfe),
            ", ".join(cells) + (f" (+{hidden} EOS padding)" if hidden else ""),
        )
    flush()
    console.print(table)


def _refuse_autoregressive(name: str) -> None:
    """``dllm generate`` needs a diffusion LM: refuse a causal-LM folder from its config, before loading
    it."""
    from dllm.models.loading import _CAUSAL_LM_TYPES, read_json, resolve_path

    config = resolve_path(name) / "config.json"
    if config.exists():
        try:
            model_type = str(read_json(config).get("model_type", "")).lower()
        except ValueError:
            return  # dllm.load names the problem
        if model_type in _CAUSAL_LM_TYPES:
            raise ValueError(
                f"{name!r} is an autoregressive model (model_type={model_type!r}); `dllm generate` needs"
                " a diffusion LM (use `dllm speculate` to decode with it)"
            )


def _set_threads(threads: int) -> None:
    if threads < 0:
        raise ValueError(f"--threads={threads} must be at least 0 (0 = torch's default)")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _prompts(args) -> list[str]:
    """The prompt arguments with \\n made newlines; empty and undecodable (non-UTF-8) ones refused."""
    from dllm.prompts import check_text

    prompts = [p.replace("\\n", "\n") for p in args.prompt]
    for row, prompt in enumerate(prompts):
        check_text(prompt, "the prompt" if len(prompts) == 1 else f"prompt {row} (of {len(prompts)})")
    return prompts


def _generate(args) -> int:
    import dllm
    from dllm.metrics import TOKENS_PER_SECOND_LABEL, batch_seconds, throughput

    # every argument is checked before the model is loaded
    params = {k: getattr(args, k) for k in args.sampler_flags if getattr(args, k) is not None}
    params.update(parse_key_values(args.sampler_arg, "--sampler-arg"))
    sampler = dllm.samplers.get(args.sampler, **params)
    cache = dllm.caches.get(args.cache, **parse_key_values(args.cache_arg, "--cache-arg"))
    config = dllm.GenerationConfig(
        gen_length=args.gen_length,
        block_length=args.block_length,
        steps=args.steps,
        temperature=args.temperature,
        seed=args.seed,
        cfg_scale=args.cfg_scale,
        logits_eos_inf=args.logits_eos_inf,
        confidence_eos_eot_inf=args.confidence_eos_eot_inf,
        stop_at_eos=args.stop_at_eos,
        trace=args.show_steps,
        sub_block_length=args.sub_block_length,
    )
    _check_max_batch(args)
    prompts = _prompts(args)
    _set_threads(args.threads)
    _refuse_autoregressive(args.model)
    model = dllm.load(args.model, dtype=args.dtype, device=args.device)
    if not isinstance(model, dllm.DiffusionModel):
        raise ValueError(f"{args.model!r} is an autoregressive model; `dllm generate` needs a diffusion LM")
    ids = dllm.encode_prompts(model, prompts, chat=args.chat, allow_special=args.allow_special)
    # untimed warm-up: one forward over the first prompt's canvas (same shape as the timed call's), so the
    # timed call does not pay the first forward's one-time costs
    bd = model.config.block_size  # a block-diffusion model decodes its own blocks: one step each
    dllm.generate(
        model,
        [ids[0]],
        sampler="llada",
        cache="none",
        gen_length=config.gen_length,
        block_length=bd or config.gen_length,
        steps=config.gen_length // bd if bd else 1,
    )
    results = dllm.generate(
        model,
        ids,
        sampler=sampler,
        cache=cache,
        config=config,
        max_batch=args.max_batch,
        compile=args.compile,
    )
    if args.json:
        payload = [{"prompt": p, **r.to_dict(with_trace=args.show_steps)} for p, r in zip(prompts, results)]
        print(json.dumps(payload, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for prompt, result in zip(prompts, results):
        console.print(f"[bold]prompt[/bold] {escape(repr(prompt))}", soft_wrap=True, highlight=False)
        console.print(f"[bold]output[/bold] {escape(result.text)}", soft_wrap=True, highlight=False)
        stats = result.stats()
        console.print(
            f"[dim]sampler={sampler.name} cache={cache.name} steps={stats['steps']} NFE={stats['nfe']}"
            f" tokens={stats['gen_tokens']} tokens/forward={stats['tokens_per_forward']:.2f}"
            f" seconds={result.seconds:.3f} {TOKENS_PER_SECOND_LABEL}={result.tokens_per_second:.1f}[/dim]",
            soft_wrap=True,
            highlight=False,
        )
        if args.show_steps:
            _render_steps(console, model, result)
    if len(results) > 1:
        tokens = sum(r.gen_tokens for r in results)
        seconds = batch_seconds(results)
        console.print(
            f"[dim]batch of {len(results)}: tokens={tokens} seconds={seconds:.3f}"
            f" {TOKENS_PER_SECOND_LABEL}={throughput(tokens, seconds):.1f}[/dim]",
            soft_wrap=True,
            highlight=False,
        )
    return 0


def drafter_params(args) -> dict:
    """The drafter's parameters from ``--drafter-arg`` and ``--drafter-model`` (``dllm speculate``,
    ``dllm serve``)."""
    params = parse_key_values(args.drafter_arg, "--drafter-arg")
    if args.drafter_model is not None:
        if "model" in params:
            raise ValueError(
                "the drafter's model is given twice: --drafter-model and --drafter-arg model=..."
            )
        params["model"] = args.drafter_model
    return params


def _build_drafter(args):
    """The drafter and length controller the flags name (None, None for plain AR decoding)."""
    import dllm.drafters

    params = drafter_params(args)
    length_params = parse_key_values(args.length_arg, "--length-arg")
    if args.drafter.lower() == "none":
        given = [
            flag
            for flag, value in (
                ("--drafter-model", args.drafter_model),
                ("--drafter-arg", args.drafter_arg),
                ("--length", args.length),
                ("--length-arg", args.length_arg),
            )
            if value
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} given without a drafter; pick one with --drafter (see `dllm drafters`)"
            )
        return None, None
    return dllm.drafters.build(args.drafter, params, args.length, length_params)


def _token_text(model, tok: int) -> str:
    return model.decode([tok]).replace("\n", "⏎")


def _render_rounds(console, verifier, result) -> None:
    """One line per round: accepted drafts, the rejected rest, the correction or bonus token."""
    from rich.text import Text

    legend = Text()
    legend.append("legend: ", style="dim")
    for label, style in (
        ("accepted", "green"),
        ("rejected", "red strike"),
        ("rest of draft", "red dim strike"),
        ("→correction", "bold yellow"),
        ("+bonus", "bold cyan"),
        ("verifier token", "cyan"),
        ("■ answer ended", "dim"),
    ):
        legend.append(label, style=style)
        legend.append("  ")
    console.print(legend, soft_wrap=True)
    for number, record in enumerate(result.trace, 1):
        n, draft = record.accepted, record.draft
        head = f"{number:>3} k={record.k:<2} {n}/{len(draft)} " if record.k or draft else f"{number:>3} "
        line = Text()
        line.append(head, style="dim")
        for i, tok in enumerate(draft):
            style = "green" if i < n else ("red strike" if i == n else "red dim strike")
            line.append(_token_text(verifier, tok), style=style)
            line.append("·", style="dim")
        if record.token is None:
            line.append("■", style="dim")  # the round ended the answer (stop token or token budget)
        elif n < len(draft):
            line.append("→" + _token_text(verifier, record.token), style="bold yellow")
        elif draft:
            line.append("+" + _token_text(verifier, record.token), style="bold cyan")
        else:  # no draft this round: the verifier's own token
            line.append(_token_text(verifier, record.token), style="cyan")
        console.print(line, soft_wrap=True)


def _check_max_batch(args) -> None:
    if args.max_batch is not None and args.max_batch < 1:
        raise ValueError(f"--max-batch={args.max_batch} must be at least 1")


def _speculate(args) -> int:
    import dllm
    from dllm.drafters import SpeculativeConfig
    from dllm.drafters.loop import as_verifier

    _check_max_batch(args)
    drafter, controller = _build_drafter(args)
    config = SpeculativeConfig(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        trace=args.show_rounds,
    )
    prompts = _prompts(args)
    _set_threads(args.threads)
    verifier = as_verifier(dllm.load(args.verifier, device=args.device))
    baseline = None
    if drafter is not None and not args.no_baseline:
        # plain AR decoding of the same prompts, same config: the speedup's denominator; a two-token
        # speculative call first loads and binds the drafter, so neither timing includes loading
        baseline = dllm.speculate(
            verifier,
            prompts,
            drafter=None,
            config=config,
            chat=args.chat,
            allow_special=args.allow_special,
            max_batch=args.max_batch,
        )
        dllm.speculate(
            verifier,
            prompts[:1],
            drafter=drafter,
            length=controller,
            chat=args.chat,
            allow_special=args.allow_special,
            config=dataclasses.replace(config, max_new_tokens=2, trace=False),
        )
    results = dllm.speculate(
        verifier,
        prompts,
        drafter=drafter,
        length=controller,
        config=config,
        chat=args.chat,
        allow_special=args.allow_special,
        max_batch=args.max_batch,
    )
    name = drafter.name if drafter is not None else "none"
    length_name = controller.name if controller is not None else None
    comparisons = (
        [None] * len(results)
        if baseline is None
        else [
            {
                "plain_ar_seconds": b.seconds,
                "speedup": b.seconds / max(r.seconds, 1e-9),
                "identical": b.ids == r.ids,
            }
            for b, r in zip(baseline, results)
        ]
    )
    if args.json:
        payload = [
            {
                "prompt": p,
                "drafter": name,
                "length": length_name,
                **r.to_dict(with_trace=args.show_rounds),
                **({"baseline": c} if c else {}),
            }
            for p, r, c in zip(prompts, results, comparisons)
        ]
        print(json.dumps(payload, indent=2))
        return 0
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for prompt, result, comparison in zip(prompts, results, comparisons):
        console.print(f"[bold]prompt[/bold] {escape(repr(prompt))}", soft_wrap=True)
        console.print(f"[bold]output[/bold] {escape(result.text)}", soft_wrap=True)
        console.print(
            f"[dim]drafter={name}{f' length={length_name}' if length_name else ''} rounds={result.rounds}"
            f" tau={result.tau:.2f} tau+bonus={result.tau_with_bonus:.2f}"
            f" tokens/verifier-forward={result.tokens_per_verifier_forward:.2f}"
            f" acceptance={result.acceptance_rate:.2f} verifier-forwards={result.verifier_forwards}"
            f" drafter-forwards={result.drafter_forwards} tokens={result.gen_tokens}"
            f" {result.tokens_per_second:.1f} tok/s seconds={result.seconds:.2f}"
            f" (draft {result.draft_seconds:.2f} / verify {result.verify_seconds:.2f}"
            f" / other {result.other_seconds:.2f})[/dim]",
            soft_wrap=True,
            highlight=False,
        )
        if comparison:
            same = (
                "identical to plain AR decoding"
                if comparison["identical"]
                else "differs from plain AR decoding"
                + (" (sampling: equal in distribution, not token by token)" if args.temperature > 0 else "")
            )
            console.print(
                f"[dim]speedup {comparison['speedup']:.2f}x over plain AR decoding"
                f" ({comparison['plain_ar_seconds']:.2f} s, same call); output {same}[/dim]",
                soft_wrap=True,
                highlight=False,
            )
        if args.show_rounds:
            _render_rounds(console, verifier, result)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["eval", "lm-eval"]:  # lm-eval's own CLI parses the rest
        from dllm.eval.lm_eval_adapter import cli_main

        return cli_main(argv[2:])
    args = _parser().parse_args(argv)
    try:
        if args.command == "generate":
            return _generate(args)
        if args.command == "speculate":
            return _speculate(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "serve":
            from dllm.server.cli import run as serve

            return serve(args)
        if args.command == "eval":
            from dllm.eval.cli import run as run_eval

            return run_eval(args)
        if args.command == "samplers":
            import dllm.samplers

            _list_plugins(dllm.samplers, "samplers")
        elif args.command == "caches":
            import dllm.caches

            _list_plugins(dllm.caches, "caches")
        elif args.command == "drafters":
            import dllm.drafters

            _list_plugins(dllm.drafters, "drafters")
            _list_plugins(dllm.drafters.length, "draft-length controllers")
        elif args.command == "models":
            from dllm.shipped import shipped_models

            for name, path in shipped_models().items():
                print(f"{name}\t{path}")
        return 0
    except (ValueError, TypeError, OSError) as exc:  # OSError: a file or folder that cannot be read
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
