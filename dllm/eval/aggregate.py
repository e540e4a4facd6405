"""Aggregation of sweep records: per-config CSV, multi-task averages, oracle, Max-TPS@q, AUC, Pareto.

Quality is reported in percent. The parallelism axis ("tokens per step" in the plots, TPS in
ParallelBench) is ``canvas_tokens_per_step``: positions the sampler committed per denoising step,
EOS padding included (``metrics.tokens_per_step`` over ``decoded_positions``). The answer-only
``tokens_per_step`` (generated tokens before EOS per step) is reported beside it.

* ``aggregate.csv``: one row per (model, task, sampler, params, cache, block length): samples,
  quality mean and 95% interval (Wilson for 0/1 scores, seeded bootstrap otherwise), steps, NFE,
  tokens per forward, tokens per step, parallelism, tokens/s (sum of tokens / sum of latency),
  latency p50/p90, peak memory, speedup over the 1-token/step no-cache reference of the same
  model and task (same block length when there is one), mean Kendall tau of decoding order vs
  position ("AR-ness"), Pareto flag (per model and task).
* ``averages.csv``: per (model, family, setting, cache, block) the unweighted mean over the tasks of
  a task set (``all`` = every task of the model; spec ``task_sets`` add more), only where every task
  of the set has that setting.
* ``oracle.csv``: per (model, family, cache, block) and task set: for each sample the best score
  over the family's settings, the fewest steps among ties; averaged per task, then over tasks.
* ``max_tps.csv``: per (model, family, cache, block) and task set, the largest parallelism whose
  average quality is >= 80 / 75 / 70 %: linear interpolation between the two measured points that
  straddle q for continuous-knob families (threshold, factor, ...), measured points only for
  fixed-k families, no extrapolation (0 when no point reaches q); plus AUC of quality over
  log2(parallelism) on a common range [1, max parallelism of the model], normalised by its width
  (the curve is flat left of its first point and 0 right of its last).
* ``pareto.csv``: the non-dominated settings on (parallelism, quality) per model and task and on
  the averages.

Speculative runs (``mode`` = ``speculative``; model = the verifier) go through the same tables:
their steps are draft-verify rounds, NFE and tokens per forward count verifier forwards, and their
parallelism is tau with bonus (tokens committed per verifier forward, stop token included); the
speedup is over the verifier's plain-AR run. Their rows add the means of ``SPECULATIVE_COLUMNS``
and the share of the wall time spent drafting / verifying.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Sequence

from dllm import metrics

QUALITY_LEVELS = (80.0, 75.0, 70.0)
SPECULATIVE_COLUMNS = (
    "tau",
    "tau_with_bonus",
    "tokens_per_verifier_forward",
    "acceptance_rate",
    "verifier_forwards",
    "drafter_forwards",
)
Z95 = 1.959963984540054


# ------------------------------------------------------------------------------------- statistics
def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_interval(values: Sequence[float], resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    if not values:
        return (math.nan, math.nan)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(resamples))
    return (means[int(0.025 * resamples)], means[min(resamples - 1, int(0.975 * resamples))])


def quality_interval(scores: Sequence[float]) -> tuple[float, float]:
    """95% interval of the mean score (fraction): Wilson for 0/1 scores, bootstrap otherwise."""
    if all(s in (0.0, 1.0) for s in scores):
        return wilson_interval(sum(scores), len(scores))
    return bootstrap_interval(list(scores))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in [0, 100])."""
    if not values:
        return math.nan
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


# ------------------------------------------------------------------------------------- curves
def max_parallelism_at(points: Sequence[tuple[float, float]], q: float, interpolate: bool) -> float:
    """Largest x with quality >= q on a curve of (x, quality) points (ParallelBench leaderboard rule).

    Measured points with quality >= q count; with ``interpolate``, so does the linear crossing
    between consecutive points (sorted by x) that straddle q from above. No extrapolation: 0 if
    no point reaches q.
    """
    pts = sorted(points)
    best = 0.0
    for i, (x, y) in enumerate(pts):
        if y >= q:
            best = max(best, x)
        if interpolate and i + 1 < len(pts):
            x2, y2 = pts[i + 1]
            if y >= q > y2:
                best = max(best, x + (y - q) / (y - y2) * (x2 - x))
    return best


def auc_log2(points: Sequence[tuple[float, float]], x_max: float, x_min: float = 1.0) -> float:
    """Mean quality over log2(x) in [x_min, x_max]: trapezoids between points, flat to the left of
    the first point, 0 to the right of the last."""
    lo, hi = math.log2(x_min), math.log2(x_max)
    if hi <= lo or not points:
        return math.nan
    pts = sorted((math.log2(max(x, x_min)), y) for x, y in points)
    if pts[0][0] > lo:
        pts.insert(0, (lo, pts[0][1]))
    area = 0.0
    for (x1, y1), (x2, y2) in zip(pts, pts[1:]):
        a, b = max(x1, lo), min(x2, hi)
        if b <= a:
            continue
        ya = y1 + (y2 - y1) * (a - x1) / (x2 - x1) if x2 > x1 else y1
        yb = y1 + (y2 - y1) * (b - x1) / (x2 - x1) if x2 > x1 else y2
        area += (b - a) * (ya + yb) / 2
    return area / (hi - lo)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (x, y) point: True iff no other point has x' >= x and y' >= y with one strictly greater."""
    flags = []
    for i, (x, y) in enumerate(points):
        dominated = any(
            (x2 >= x and y2 >= y and (x2 > x or y2 > y)) for j, (x2, y2) in enumerate(points) if j != i
        )
        flags.append(not dominated)
    return flags


# ------------------------------------------------------------------------------------- grouping
def block_label(record: dict) -> str:
    return "full" if record["block_length"] == record["gen_length"] else str(record["block_length"])


def setting_label(record: dict) -> str:
    """The family's knob value as text (k=4, threshold=0.9, ...), or the full parameter set."""
    if record.get("knob") == "k":
        return f"k={record['k']}"
    params = dict(record["sampler_params"])
    if record.get("k") is not None:
        params["k"] = record["k"]
    if record.get("length"):  # a speculative run's draft-length controller
        params.update(length=record["length"], **_loads(record.get("length_params")))
    knob = record.get("knob")
    if knob and knob in params:
        return f"{knob}={params[knob]}"
    return ",".join(f"{k}={v}" for k, v in sorted(params.items())) or "default"


def knob_value(record: dict):
    knob = record.get("knob")
    if knob == "k":
        return record["k"]
    return record["sampler_params"].get(knob) if knob else None


def _loads(params) -> dict:
    """Parameters from a record (a dict) or an aggregate row (JSON text)."""
    return json.loads(params) if isinstance(params, str) else dict(params or {})


def length_key(rec: dict) -> str:
    """A speculative run's length controller and its parameters ('' for dLLM runs)."""
    return (
        json.dumps([rec["length"], _loads(rec.get("length_params"))], sort_keys=True)
        if rec.get("length")
        else ""
    )


def _config_key(rec: dict) -> tuple:
    return (
        rec["model"],
        rec["family"],
        json.dumps(rec["sampler_params"], sort_keys=True),
        rec.get("k"),
        rec["cache"],
        json.dumps(rec["cache_params"], sort_keys=True),
        block_label(rec),
        length_key(rec),
    )


def _family_key(rec: dict) -> tuple:
    return (
        rec["model"],
        rec["family"],
        rec["cache"],
        json.dumps(rec["cache_params"], sort_keys=True),
        block_label(rec),
    )


# ------------------------------------------------------------------------------------- tables
def aggregate_runs(records: list[dict]) -> list[dict]:
    """One row per run config (see the module docstring)."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_run[rec["run_id"]].append(rec)
    rows = []
    for run_id, recs in by_run.items():
        r0 = recs[0]
        scores = [float(r["score"]) for r in recs]
        lo, hi = quality_interval(scores)
        latencies = [r["latency_s"] for r in recs]
        gen_total = sum(r["gen_tokens"] for r in recs)
        rows.append(
            {
                "run_id": run_id,
                "model": r0["model"],
                "task": r0["task"],
                "task_family": r0.get("task_family", ""),
                "family": r0["family"],
                "sampler": r0["sampler"],
                "setting": setting_label(r0),
                "knob": r0.get("knob") or "",
                "knob_value": knob_value(r0),
                "k": r0.get("k"),
                "sampler_params": json.dumps(r0["sampler_params"], sort_keys=True),
                "cache": r0["cache"],
                "cache_params": json.dumps(r0["cache_params"], sort_keys=True),
                "gen_length": r0["gen_length"],
                "block_length": r0["block_length"],
                "block": block_label(r0),
                "reference": bool(r0.get("reference")),
                "n_samples": len(recs),
                "quality": 100 * mean(scores),
                "quality_ci_low": 100 * lo,
                "quality_ci_high": 100 * hi,
                "steps": mean(r["steps"] for r in recs),
                "nfe": mean(r["nfe"] for r in recs),
                "gen_tokens": mean(r["gen_tokens"] for r in recs),
                "tokens_per_forward": mean(r["tokens_per_forward"] for r in recs),
                "tokens_per_step": mean(r["tokens_per_step"] for r in recs),
                "parallelism": mean(r["canvas_tokens_per_step"] for r in recs),
                "tokens_per_second": metrics.throughput(gen_total, sum(latencies)),
                "tokens_per_second_mean": mean(r["tokens_per_second"] for r in recs),
                "latency_mean": mean(latencies),
                "latency_p50": percentile(latencies, 50),
                "latency_p90": percentile(latencies, 90),
                "peak_mem_gb": max(r.get("peak_mem_gb", math.nan) for r in recs),
                "unmask_max": max((max(r["unmask_counts"]) if r["unmask_counts"] else 0) for r in recs),
                "ar_kendall": mean(r["ar_kendall"] for r in recs if r.get("ar_kendall") is not None),
                "mode": r0.get("mode", "diffusion"),
                "length": r0.get("length") or "",
                "length_params": json.dumps(r0.get("length_params") or {}, sort_keys=True),
                **(_speculative_means(recs) if r0.get("mode") == "speculative" else {}),
            }
        )
    _add_speedups(rows)
    for (_model, _task), group in _group(rows, lambda r: (r["model"], r["task"])).items():
        for row, flag in zip(group, pareto_front([(r["parallelism"], r["quality"]) for r in group])):
            row["pareto"] = flag
    rows.sort(
        key=lambda r: (r["model"], r["task"], r["family"], r["cache"], r["block_length"], r["parallelism"])
    )
    return rows


def _speculative_means(recs: list[dict]) -> dict:
    wall = sum(r["batch_seconds"] for r in recs)  # batch-level times, so the shares weigh batches by size
    return {
        **{col: mean(r[col] for r in recs) for col in SPECULATIVE_COLUMNS},
        "draft_share": sum(r["draft_seconds"] for r in recs) / wall if wall else math.nan,
        "verify_share": sum(r["verify_seconds"] for r in recs) / wall if wall else math.nan,
    }


def _group(rows, key) -> dict:
    out: dict = defaultdict(list)
    for row in rows:
        out[key(row)].append(row)
    return out


def _add_speedups(rows: list[dict]) -> None:
    refs = [r for r in rows if r["reference"]]
    for row in rows:
        same = [r for r in refs if r["model"] == row["model"] and r["task"] == row["task"]]
        ref = next((r for r in same if r["block_length"] == row["block_length"]), same[0] if same else None)
        row["reference_run"] = ref["run_id"] if ref else ""
        ref_tps = ref["tokens_per_second"] if ref else 0.0
        row["speedup"] = row["tokens_per_second"] / ref_tps if ref_tps else math.nan
        row["latency_speedup"] = (
            ref["latency_mean"] / row["latency_mean"] if ref and row["latency_mean"] else math.nan
        )


def task_sets_for(rows: list[dict], extra: dict | None = None) -> dict[str, dict[str, list[str]]]:
    """model -> {set name -> tasks}: ``all`` (every task the model ran) plus the spec's task sets."""
    out = {}
    for model, group in _group(rows, lambda r: r["model"]).items():
        tasks = sorted({r["task"] for r in group})
        sets = {"all": tasks}
        for name, members in (extra or {}).items():
            if set(members) <= set(tasks):
                sets[name] = list(members)
        out[model] = sets
    return out


def averages(rows: list[dict], task_sets: dict) -> list[dict]:
    """Unweighted means over each task set, per (model, family, setting, cache, block)."""
    out = []

    def key(r):
        return (
            r["model"],
            r["family"],
            r["sampler_params"],
            r["k"],
            r["cache"],
            r["cache_params"],
            r["block"],
            length_key(r),
        )

    for (model, family, params, k, cache, cache_params, block, _), group in _group(rows, key).items():
        by_task = {r["task"]: r for r in group}
        for set_name, tasks in task_sets.get(model, {}).items():
            if not all(t in by_task for t in tasks):
                continue
            members = [by_task[t] for t in tasks]
            r0 = members[0]
            out.append(
                {
                    "model": model,
                    "task_set": set_name,
                    "n_tasks": len(tasks),
                    "family": family,
                    "setting": r0["setting"],
                    "knob": r0["knob"],
                    "knob_value": r0["knob_value"],
                    "k": k,
                    "sampler": r0["sampler"],
                    "sampler_params": params,
                    "cache": cache,
                    "cache_params": cache_params,
                    "block": block,
                    "reference": r0["reference"],
                    "mode": r0["mode"],
                    "length": r0["length"],
                    "length_params": r0["length_params"],
                    **{
                        col: mean(m[col] for m in members)
                        for col in (
                            "quality",
                            "parallelism",
                            "tokens_per_step",
                            "tokens_per_forward",
                            "steps",
                            "nfe",
                            "tokens_per_second",
                            "latency_mean",
                            "speedup",
                            *(SPECULATIVE_COLUMNS + ("draft_share",) if r0["mode"] == "speculative" else ()),
                        )
                    },
                }
            )
    for (_model, _set_name), group in _group(out, lambda r: (r["model"], r["task_set"])).items():
        for row, flag in zip(group, pareto_front([(r["parallelism"], r["quality"]) for r in group])):
            row["pareto"] = flag
    out.sort(key=lambda r: (r["model"], r["task_set"], r["family"], r["cache"], r["block"], r["parallelism"]))
    return out


def oracle(records: list[dict], task_sets: dict) -> list[dict]:
    """Per-sample oracle inside each (model, family, cache, block): best score, then fewest steps."""
    out = []
    for fkey, recs in _group(records, _family_key).items():
        model, family, cache, cache_params, block = fkey
        if len({_config_key(r) for r in recs}) < 2:
            continue  # a single setting: nothing to choose from
        per_task = {}
        for task, trecs in _group(recs, lambda r: r["task"]).items():
            chosen = []
            for _sid, srecs in _group(trecs, lambda r: r["sample_id"]).items():
                chosen.append(min(srecs, key=lambda r: (-float(r["score"]), r["steps"])))
            per_task[task] = {
                "quality": 100 * mean(float(r["score"]) for r in chosen),
                "parallelism": mean(r["canvas_tokens_per_step"] for r in chosen),
                "tokens_per_step": mean(r["tokens_per_step"] for r in chosen),
                "steps": mean(r["steps"] for r in chosen),
                "n_samples": len(chosen),
            }
        for task, vals in per_task.items():
            out.append(
                {
                    "model": model,
                    "family": family,
                    "cache": cache,
                    "cache_params": cache_params,
                    "block": block,
                    "scope": "task",
                    "name": task,
                    **vals,
                }
            )
        for set_name, tasks in task_sets.get(model, {}).items():
            if all(t in per_task for t in tasks):
                out.append(
                    {
                        "model": model,
                        "family": family,
                        "cache": cache,
                        "cache_params": cache_params,
                        "block": block,
                        "scope": "task_set",
                        "name": set_name,
                        **{
                            col: mean(per_task[t][col] for t in tasks)
                            for col in ("quality", "parallelism", "tokens_per_step", "steps")
                        },
                        "n_samples": sum(per_task[t]["n_samples"] for t in tasks),
                    }
                )
    return out


def max_tps_table(avg_rows: list[dict], levels: Sequence[float] = QUALITY_LEVELS) -> list[dict]:
    """Max-TPS@q and AUC per (model, task set, family, cache, block) on the average curves."""
    out = []
    x_max = {}
    for (model, set_name), group in _group(avg_rows, lambda r: (r["model"], r["task_set"])).items():
        x_max[(model, set_name)] = max(max(r["parallelism"] for r in group), 2.0)

    def key(r):
        return r["model"], r["task_set"], r["family"], r["cache"], r["cache_params"], r["block"]

    for (model, set_name, family, cache, cache_params, block), group in _group(avg_rows, key).items():
        points = [(r["parallelism"], r["quality"]) for r in group]
        continuous = group[0]["knob"] not in ("k", "")
        row = {
            "model": model,
            "task_set": set_name,
            "family": family,
            "cache": cache,
            "cache_params": cache_params,
            "block": block,
            "n_settings": len(group),
            "interpolated": continuous,
            "best_quality": max(y for _, y in points),
        }
        for q in levels:
            row[f"max_tps@{q:g}"] = max_parallelism_at(points, q, continuous)
        row["auc"] = auc_log2(points, x_max[(model, set_name)])
        row["auc_range"] = f"[1, {x_max[(model, set_name)]:.3g}]"
        out.append(row)
    return out


def pareto_table(rows: list[dict], avg_rows: list[dict]) -> list[dict]:
    columns = ("model", "family", "setting", "cache", "block", "parallelism", "quality", "tokens_per_second")
    return [
        {"scope": "task", "name": r["task"], **{c: r[c] for c in columns}} for r in rows if r.get("pareto")
    ] + [
        {"scope": "task_set", "name": r["task_set"], **{c: r[c] for c in columns}}
        for r in avg_rows
        if r.get("pareto")
    ]


# ------------------------------------------------------------------------------------- files
def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return path


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def build_report(records: list[dict], out_dir: str | Path, task_sets: dict | None = None) -> dict:
    """Write the report CSVs to ``out_dir``; returns the tables by name."""
    if not records:
        raise ValueError("no records to aggregate: run the sweep first (records/*.jsonl is empty)")
    out = Path(out_dir)
    rows = aggregate_runs(records)
    sets = task_sets_for(rows, task_sets)
    avg = averages(rows, sets)
    tables = {
        "aggregate": rows,
        "averages": avg,
        "oracle": oracle(records, sets),
        "max_tps": max_tps_table(avg),
        "pareto": pareto_table(rows, avg),
    }
    for name, table in tables.items():
        write_csv(out / f"{name}.csv", table)
    return tables
