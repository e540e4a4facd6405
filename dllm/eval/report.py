"""``dllm eval report DIR``: aggregate a sweep's records into CSVs, figures and a summary table."""

from __future__ import annotations

import math
from pathlib import Path

from dllm.eval.aggregate import QUALITY_LEVELS, build_report
from dllm.eval.files import output_file_remedy, read_yaml
from dllm.eval.runner import load_records


def _task_sets(out_dir: Path) -> dict:
    spec = out_dir / "spec.yaml"
    if not spec.exists():
        return {}
    data = read_yaml(spec, "the sweep's copy of its spec", output_file_remedy(spec, run=False)) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{spec} must be a sweep spec (a mapping); {output_file_remedy(spec, run=False)}")
    return dict(data.get("task_sets") or {})


def make_report(out_dir: str | Path, report_dir: str | Path | None = None, plots: bool = True) -> dict:
    """Write ``report/*.csv`` (+ PNGs with their CSVs and ``summary.md``); returns the tables."""
    out_dir = Path(out_dir)
    report = Path(report_dir) if report_dir else out_dir / "report"
    records = load_records(out_dir)
    tables = build_report(records, report, _task_sets(out_dir))
    tables["figures"] = []
    if plots:
        from dllm.eval.plots import make_all

        tables["figures"] = make_all(records, tables, report)
    (report / "summary.md").write_text(summary_markdown(tables) + "\n")
    return tables


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def summary_rows(tables: dict, task_set: str = "all") -> list[list[str]]:
    rows = []
    for r in tables["averages"]:
        if r["task_set"] != task_set:
            continue
        rows.append(
            [
                r["model"],
                r["family"],
                r["setting"],
                r["cache"],
                r["block"],
                _fmt(r["quality"], 1),
                _fmt(r["parallelism"]),
                _fmt(r["tokens_per_step"]),
                _fmt(r["tokens_per_forward"]),
                _fmt(r["steps"], 1),
                _fmt(r["tokens_per_second"], 0),
                _fmt(r["speedup"]),
                "*" if r.get("pareto") else "",
            ]
        )
    return rows


SUMMARY_HEADER = [
    "model",
    "family",
    "setting",
    "cache",
    "block",
    "quality %",
    "tok/step",
    "ans tok/step",
    "TPF",
    "steps",
    "tok/s",
    "speedup",
    "pareto",
]
SPECULATIVE_HEADER = [
    "verifier",
    "family",
    "setting",
    "quality %",
    "τ",
    "τ + bonus",
    "TPVF",
    "acceptance",
    "drafter fwd",
    "draft share",
    "tok/s",
    "speedup",
]


def speculative_rows(tables: dict, task_set: str = "all") -> list[list[str]]:
    """The speculative runs' averages with their stats (TPVF = tokens per verifier forward)."""
    return [
        [
            r["model"],
            r["family"],
            r["setting"],
            _fmt(r["quality"], 1),
            _fmt(r["tau"]),
            _fmt(r["tau_with_bonus"]),
            _fmt(r["tokens_per_verifier_forward"]),
            _fmt(r["acceptance_rate"]),
            _fmt(r["drafter_forwards"], 1),
            _fmt(r["draft_share"]),
            _fmt(r["tokens_per_second"], 0),
            _fmt(r["speedup"]),
        ]
        for r in tables["averages"]
        if r["task_set"] == task_set and r.get("mode") == "speculative"
    ]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def summary_markdown(tables: dict, task_set: str = "all") -> str:
    lines = [
        f"### Averages over the task set `{task_set}`",
        "",
        *_markdown_table(SUMMARY_HEADER, summary_rows(tables, task_set)),
    ]
    spec_rows = speculative_rows(tables, task_set)
    if spec_rows:
        lines += [
            "",
            "### Speculative decoding (steps = verifier forwards; τ = accepted draft tokens per round)",
            "",
            *_markdown_table(SPECULATIVE_HEADER, spec_rows),
        ]
    lines += [
        "",
        "### Max tokens per step at average quality ≥ q, AUC, oracle",
        "",
        "| model | family | cache | block | "
        + " | ".join(f"max@{q:g}%" for q in QUALITY_LEVELS)
        + " | AUC | oracle quality % | oracle tok/step |",
        "|" + "---|" * (5 + len(QUALITY_LEVELS) + 2),
    ]
    oracle = {
        (o["model"], o["family"], o["cache"], o["block"]): o
        for o in tables["oracle"]
        if o["scope"] == "task_set" and o["name"] == task_set
    }
    for r in tables["max_tps"]:
        if r["task_set"] != task_set:
            continue
        o = oracle.get((r["model"], r["family"], r["cache"], r["block"]))
        lines.append(
            "| "
            + " | ".join(
                [
                    r["model"],
                    r["family"],
                    r["cache"],
                    r["block"],
                    *(_fmt(r[f"max_tps@{q:g}"]) for q in QUALITY_LEVELS),
                    _fmt(r["auc"], 1),
                    _fmt(o["quality"], 1) if o else "-",
                    _fmt(o["parallelism"]) if o else "-",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def print_summary(tables: dict, task_set: str = "all") -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 160)
    table = Table(title=f"average over task set '{task_set}'")
    for col in SUMMARY_HEADER:
        table.add_column(
            col, justify="right" if col not in ("model", "family", "setting", "cache") else "left"
        )
    for row in summary_rows(tables, task_set):
        table.add_row(*row)
    console.print(table)
    spec_rows = speculative_rows(tables, task_set)
    if spec_rows:
        st = Table(
            title="speculative decoding (TPVF = tokens per verifier forward, τ = accepted tokens per round)"
        )
        for col in SPECULATIVE_HEADER:
            st.add_column(col, justify="left" if col in ("verifier", "family", "setting") else "right")
        for row in spec_rows:
            st.add_row(*row)
        console.print(st)
    mt = Table(title="Max tokens/step at average quality >= q (0 = never reached), AUC over log2 tokens/step")
    for col in ["model", "family", "cache", "block", *(f"max@{q:g}%" for q in QUALITY_LEVELS), "AUC"]:
        mt.add_column(col)
    for r in tables["max_tps"]:
        if r["task_set"] == task_set:
            mt.add_row(
                r["model"],
                r["family"],
                r["cache"],
                r["block"],
                *(_fmt(r[f"max_tps@{q:g}"]) for q in QUALITY_LEVELS),
                _fmt(r["auc"], 1),
            )
    console.print(mt)
