"""``dllm eval ...`` (also ``python -m dllm.eval ...``, which ``accelerate launch -m`` / ``torchrun -m``
can run).

dllm eval run SPEC.yaml [--out DIR] [--batch-size N] [--max-configs N] [--no-report]
dllm eval report DIR [--no-plots]
dllm eval lm-eval --model dllm --model_args model=tiny-llada,sampler=fast-dllm --tasks dllm_gsm8k --limit 4
dllm eval theory [--n 4 6 8 10]
"""

from __future__ import annotations

import argparse
import logging
import sys


def add_parser(sub) -> None:
    """Add the ``eval`` command group to a ``dllm`` subparsers object."""
    ev = sub.add_parser("eval", help="evaluation harness: sweeps, reports, lm-eval, theory")
    add_subcommands(ev)


def _at_least(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_subcommands(parser: argparse.ArgumentParser) -> None:
    esub = parser.add_subparsers(dest="eval_command", required=True)
    run = esub.add_parser("run", help="run or resume a sweep spec (YAML)")
    run.add_argument("spec", help="sweep spec YAML (see docs/evaluate.md)")
    run.add_argument("--out", help="output directory (default: the spec's output_dir, else results/<name>)")
    run.add_argument("--batch-size", type=_at_least(1), help="override the spec's batch_size")
    run.add_argument("--max-configs", type=_at_least(1), help="stop after this many configs (smoke runs)")
    run.add_argument(
        "--threads", type=_at_least(1), help="torch CPU threads per process (default: half the cores / ranks)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-report", action="store_true", help="do not aggregate and plot at the end")
    run.add_argument("-v", "--verbose", action="store_true", help="log skipped combinations and each config")
    rep = esub.add_parser("report", help="aggregate a sweep directory into CSVs, plots and a summary")
    rep.add_argument("dir", help="the sweep's output directory")
    rep.add_argument("--no-plots", action="store_true")
    rep.add_argument("--task-set", default="all", help="task set for the printed summary")
    lm = esub.add_parser(
        "lm-eval", help="run lm-evaluation-harness with the dllm model registered", add_help=False
    )
    lm.add_argument("lm_eval_args", nargs=argparse.REMAINDER, help="arguments for lm_eval")
    th = esub.add_parser("theory", help="print the closed-form table (total correlation, accuracies)")
    th.add_argument("--n", type=_at_least(2), nargs="+", default=[4, 6, 8, 10])


def run(args) -> int:
    if args.eval_command == "run":
        return _run(args)
    if args.eval_command == "report":
        return _report(args.dir, not args.no_plots, args.task_set)
    if args.eval_command == "lm-eval":
        from dllm.eval.lm_eval_adapter import cli_main

        return cli_main(args.lm_eval_args)
    if args.eval_command == "theory":
        return _theory(args.n)
    raise ValueError(f"unknown eval command {args.eval_command!r}")


def _run(args) -> int:
    import os
    from pathlib import Path

    from dllm.eval.distributed import Distributed
    from dllm.eval.runner import cpu_threads, run_sweep

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    threads = args.threads
    if threads is None and not os.environ.get("OMP_NUM_THREADS"):
        threads = cpu_threads(int(os.environ.get("WORLD_SIZE", "1")))
    from dllm.eval.runner import SweepLocked

    try:
        result = run_sweep(
            Path(args.spec),  # a file, never YAML text
            args.out,
            batch_size=args.batch_size,
            progress=not args.no_progress,
            max_configs=args.max_configs,
            threads=threads,
        )
    except (SweepLocked, ValueError, FileNotFoundError) as exc:
        # under torchrun every rank gets here with the same error (rank 0's, see run_on_main): each
        # prints it, waits at most a few seconds for the others and leaves the process group
        sys.stderr.write(f"error: {exc}\n")  # one write: the ranks' lines do not interleave
        sys.stderr.flush()
        Distributed.leave()
        return 2
    except KeyboardInterrupt:
        where = f" in {args.out}" if args.out else ""
        print(
            f"\ninterrupted: every finished batch is kept{where}; run the same command again to resume"
            f" (done samples are not recomputed)",
            file=sys.stderr,
        )
        return 130
    dist = Distributed.from_env()
    dist.close()
    if not dist.is_main:
        return 0
    print(
        f"{len(result.runs)} configs ({len(result.skipped)} combinations skipped before running,"
        f" {len(result.failed)} unsupported at run time; reasons in skipped.jsonl);"
        f" generated {result.generated} samples, reused {result.reused} already done -> {result.out_dir}"
    )
    for item in result.failed:
        combo = item.combo
        print(
            f"unsupported: {combo['model']} {combo['task']} {combo['sampler']} {combo['sampler_params']}"
            f" cache {combo['cache']} {combo['cache_params']}: {item.reason}",
            file=sys.stderr,
        )
    if not args.no_report:
        return _report(result.out_dir, True, "all")
    return 0


def _report(out_dir, plots: bool, task_set: str) -> int:
    from pathlib import Path

    from dllm.eval.report import make_report, print_summary

    if not Path(out_dir).is_dir():
        raise FileNotFoundError(
            f"sweep directory {out_dir} does not exist (dllm eval run SPEC --out DIR makes one)"
        )

    tables = make_report(out_dir, plots=plots)
    print_summary(tables, task_set)
    report = f"{out_dir}/report"
    print(f"CSV tables in {report}/ ({', '.join(n for n in tables if n != 'figures')})")
    for path in tables["figures"]:
        print(f"figure {path} (+ {path.with_suffix('.csv').name})")
    return 0


def _theory(ns: list[int]) -> int:
    from rich.console import Console
    from rich.table import Table

    from dllm.eval import theory

    table = Table(
        title="Parallel decoding under an ideal-marginal model (ParallelBench §2.8), list length n",
        caption="C: total correlation of the answer in bits (0 for copy / reverse / sort / *_index). "
        "L_n/2: KL floor in bits of shuffle at 2 slots per step. acc k: probability that greedy "
        "top-k decoding (k slots per step) gets shuffle exactly right. 1-step sampled: "
        "replace_random decoded in one step at temperature 1.",
        caption_justify="left",
    )
    for header in (
        "n",
        "shuffle C",
        "shuffle L_n/2",
        "shuffle acc k=2",
        "k=3",
        "k=4",
        "k=n",
        "replace_random C",
        "1-step sampled acc",
    ):
        table.add_column(header, justify="right")
    for n in ns:
        accs = [theory.shuffle_topk_accuracy(theory.topk_schedule(n, k)) for k in (2, 3, 4, n)]
        table.add_row(
            str(n),
            f"{theory.total_correlation('shuffle', n):.3f}",
            f"{theory.shuffle_two_per_step_floor(n):.3f}",
            *(f"{a:.4f}" for a in accs),
            f"{theory.total_correlation('replace_random', n):.3f}",
            f"{theory.replace_random_sampled_one_step_accuracy(n):.4f}",
        )
    Console(width=max(130, Console().width)).print(table)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["lm-eval"]:  # lm-eval's own CLI parses the rest
        from dllm.eval.lm_eval_adapter import cli_main

        return cli_main(argv[1:])
    parser = argparse.ArgumentParser(prog="dllm eval", description="dllm evaluation harness")
    add_subcommands(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
