"""Benchmark of the seed samplers on the shipped tiny models, through the evaluation harness.

    python benchmarks/samplers.py [--spec benchmarks/samplers.yaml] [--out results/samplers]
                                  [--num-samples N] [--models tiny-llada ...] [--plot FILE.png]

Runs (or resumes: finished samples are kept) the sweep ``benchmarks/samplers.yaml`` — held-out
prompts, gen_length 128, block 32, every sampler at its defaults plus a sweep of its main knob,
and the 1-token LLaDA reference — then two small fixed-length sweeps (LLaDA one token per step and
Fast-dLLM threshold 0.9 at gen_length 32 and 64) that DAEDAL's variable length is compared with,
and ``benchmarks/samplers_oracle.yaml`` on the ideal-marginal oracle (exact marginals: the
accuracy each commit rule loses on shuffle / replace_random is its parallel-decoding error alone).
Prints one table per model: accuracy (unweighted mean over tasks, %), its change against the
reference, ``agree`` (share of samples whose answer is exactly the reference's answer: how
faithful a fast sampler is to the slow one, meaningful even for a weak model), steps, NFE, tokens
per forward (TPF) and tokens/s, all from the harness records
(``dllm.metrics`` definitions: TPF = answer tokens before the first EOS / NFE, per sample, averaged).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LENGTHS = (32, 64)  # fixed-length baselines for DAEDAL (the 128 ones are in the main sweep)


def length_specs(spec: dict) -> list[dict]:
    out = []
    for length in LENGTHS:
        variant = copy.deepcopy(spec)
        variant["name"] = f"{spec['name']}-len{length}"
        variant["output_dir"] = f"{spec.get('output_dir', 'results/' + spec['name'])}-len{length}"
        variant["generation"] = {**spec.get("generation", {}), "gen_length": length}
        variant["samplers"] = [
            {"name": "fast-dllm", "family": "fast-dllm threshold", "params": {"threshold": 0.9}}
        ]
        out.append(variant)
    return out


def run(spec: dict, out: str | None, threads: int) -> list[dict]:
    from dllm.eval.runner import load_records, run_sweep

    result = run_sweep(spec, out, threads=threads, progress=sys.stderr.isatty())
    return load_records(result.out_dir)


def _key(rec: dict) -> tuple:
    params = rec["sampler_params"]
    return (
        rec["model"],
        rec["family"],
        params if isinstance(params, str) else json.dumps(params, sort_keys=True),
        rec["k"],
    )


def table(records: list[dict], gen_length: int, reference: dict) -> list[dict]:
    """Rows (model, family, setting) of one sweep, averaged over the tasks every config ran, with the
    share of samples whose answer equals the 1-token gen-128 reference's (``agree``)."""
    from dllm.eval.aggregate import aggregate_runs, averages, task_sets_for

    rows = aggregate_runs(records)
    avg = [r for r in averages(rows, task_sets_for(rows)) if r["task_set"] == "all"]
    same: dict[tuple, list[bool]] = {}
    for rec in records:
        ref = reference.get((rec["model"], rec["sample_id"]))
        if ref is not None:
            same.setdefault(_key(rec), []).append(rec["prediction"].strip() == ref.strip())
    for r in avg:
        hits = same.get(_key(r), [])
        r["agree"] = 100 * sum(hits) / len(hits) if hits else float("nan")
        r["gen_length"] = gen_length
    return avg


def label(row: dict) -> str:
    params = (
        json.loads(row["sampler_params"]) if isinstance(row["sampler_params"], str) else row["sampler_params"]
    )
    if row["reference"]:
        return "llada, 1 token/step"
    if row.get("knob") and row["knob"] in params:
        return f"{row['family']}: {row['knob']}={params[row['knob']]}"
    shown = {k: v for k, v in params.items() if k not in ("max_length", "inner", "delimiters")}
    text = ", ".join(f"{k}={v}" for k, v in sorted(shown.items())) or "defaults"
    return f"{row['family']}: {text}"


def print_tables(rows: list[dict], file=sys.stdout) -> None:
    for model in sorted({r["model"] for r in rows}):
        group = [r for r in rows if r["model"] == model]
        ref = next((r for r in group if r["reference"] and r["gen_length"] == 128), None)
        print(
            f"\n### {model} (gen_length 128 unless noted, block 32; {group[0]['n_tasks']} held-out tasks)\n",
            file=file,
        )
        print("| sampler | gen | acc % | Δ acc | agree % | steps | NFE | TPF | tok/s |", file=file)
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|", file=file)
        order = lambda r: (not r["reference"], r["gen_length"] != 128, r["family"], label(r))  # noqa: E731
        for r in sorted(group, key=order):
            delta = r["quality"] - ref["quality"] if ref else float("nan")
            print(
                f"| {label(r)} | {r['gen_length']} | {r['quality']:.1f} | {delta:+.1f} "
                f"| {r['agree']:.0f} | {r['steps']:.1f} |"
                f" {r['nfe']:.1f} | {r['tokens_per_forward']:.2f} | {r['tokens_per_second']:.0f} |",
                file=file,
            )


def print_oracle_table(records: list[dict], file=sys.stdout) -> None:
    """Per-task accuracy on the ideal-marginal oracle, with the canvas tokens committed per step."""
    from dllm.eval.aggregate import aggregate_runs

    rows = aggregate_runs(records)
    tasks = sorted({r["task"] for r in rows})
    settings = {}
    for r in rows:
        settings.setdefault((r["family"], r["sampler_params"], r["k"]), {})[r["task"]] = r
    print(
        "\n### oracle (ideal marginals, one block of 16, accuracy % per task; "
        "par = canvas tokens per step)\n",
        file=file,
    )
    print("| sampler | " + " | ".join(tasks) + " | par |", file=file)
    print("|---|" + "---:|" * (len(tasks) + 1), file=file)
    for key in sorted(
        settings, key=lambda k: (not next(iter(settings[k].values()))["reference"], k[0], k[1])
    ):
        by_task = settings[key]
        r0 = next(iter(by_task.values()))
        cells = [f"{by_task[t]['quality']:.1f}" if t in by_task else "" for t in tasks]
        par = sum(r["parallelism"] for r in by_task.values()) / len(by_task)
        print(f"| {label(r0)} | " + " | ".join(cells) + f" | {par:.2f} |", file=file)


def plot(rows: list[dict], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models) + 3, 4.8), squeeze=False)
    families = sorted({r["family"] for r in rows})
    colours = plt.get_cmap("tab20").colors
    for ax, model in zip(axes[0], models):
        group = [r for r in rows if r["model"] == model and r["gen_length"] == 128]
        for family in sorted({r["family"] for r in group}):
            pts = sorted((r["tokens_per_forward"], r["quality"]) for r in group if r["family"] == family)
            index = families.index(family)  # same colour and marker for a family in every panel
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                "os^vDP"[index % 6] + "-",
                label=family,
                ms=5,
                color=colours[index % len(colours)],
            )
        ax.set_xscale("log")
        ax.set_xlabel("tokens per forward (log)")
        ax.set_ylabel("accuracy %")
        ax.set_title(f"{model}: gen 128, block 32")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    fig.subplots_adjust(right=0.8)
    fig.savefig(path, dpi=110)
    print(f"plot: {path}", file=sys.stderr)


def main(argv=None) -> None:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default=str(HERE / "samplers.yaml"))
    parser.add_argument("--out", help="output directory of the main sweep (default: the spec's)")
    parser.add_argument("--num-samples", type=int, help="override the spec's samples per task")
    parser.add_argument("--models", nargs="+", help="restrict to these model labels")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--plot", default=str(HERE / "samplers.png"), help="accuracy-vs-TPF plot ('' for none)"
    )
    parser.add_argument("--skip-lengths", action="store_true", help="no fixed-length (32, 64) baselines")
    parser.add_argument(
        "--oracle-spec",
        default=str(HERE / "samplers_oracle.yaml"),
        help="sweep on the ideal-marginal oracle ('' to skip)",
    )
    args = parser.parse_args(argv)
    spec = yaml.safe_load(Path(args.spec).read_text())
    if args.num_samples:
        spec["num_samples"] = args.num_samples
    if args.models:
        spec["models"] = [
            m
            for m in spec["models"]
            if (m if isinstance(m, str) else m.get("label", m["name"])) in args.models
        ]
    if args.out:
        spec["output_dir"] = args.out
    records = run(spec, None, args.threads)
    reference = {(r["model"], r["sample_id"]): r["prediction"] for r in records if r.get("reference")}
    rows = table(records, spec["generation"]["gen_length"], reference)
    if not args.skip_lengths:
        for variant in length_specs(spec):
            rows += table(run(variant, None, args.threads), variant["generation"]["gen_length"], reference)
    print_tables(rows)
    if args.oracle_spec:
        print_oracle_table(run(yaml.safe_load(Path(args.oracle_spec).read_text()), None, args.threads))
    if args.plot:
        plot(rows, Path(args.plot))


if __name__ == "__main__":
    main()
