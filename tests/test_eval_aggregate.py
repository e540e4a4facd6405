"""Aggregation rules on hand-made tables: Max-TPS@q, AUC, Pareto, oracle, intervals, speedups."""

from __future__ import annotations

import math

import pytest

from dllm.eval import aggregate as agg


def test_max_tps_interpolates_continuous_knobs_like_the_leaderboard():
    # ParallelBench site, LLaDA-1.5 factor: (3.95, 80.47) and (4.58, 77.47) give 4.05 at q = 80
    points = [(2.1, 84.0), (3.95, 80.47), (4.58, 77.47), (5.2, 71.0)]
    assert agg.max_parallelism_at(points, 80, interpolate=True) == pytest.approx(4.05, abs=5e-3)
    assert agg.max_parallelism_at(points, 80, interpolate=False) == 3.95
    assert agg.max_parallelism_at(points, 70, interpolate=True) == 5.2  # last point still above q
    assert agg.max_parallelism_at(points, 90, interpolate=True) == 0.0  # never reached: no extrapolation
    # non-monotone curve: the largest qualifying x wins
    assert agg.max_parallelism_at(
        [(1, 90), (2, 60), (4, 85), (8, 50)], 80, interpolate=True
    ) == pytest.approx(4 + 5 / 35 * 4)


def test_auc_pareto_and_intervals():
    assert agg.auc_log2([(1, 100), (32, 100)], 32) == pytest.approx(100)
    assert agg.auc_log2([(1, 100), (4, 0)], 4) == pytest.approx(50)
    assert agg.auc_log2([(2, 80)], 4) == pytest.approx(40)  # flat to the left, 0 past the last point
    assert agg.pareto_front([(1, 90), (2, 80), (2, 70), (4, 80)]) == [True, False, False, True]
    lo, hi = agg.wilson_interval(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.49, 0.943)
    assert (
        agg.quality_interval([0.5, 1.0, 0.0, 1.0])[0]
        <= 0.625
        <= agg.quality_interval([0.5, 1.0, 0.0, 1.0])[1]
    )
    assert agg.percentile([1, 2, 3, 4], 50) == 2.5 and agg.percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)


def _rec(
    run_id,
    task,
    sid,
    score,
    steps,
    family="fast-dllm threshold",
    knob="threshold",
    params=None,
    k=None,
    reference=False,
    latency=0.1,
    gen=10,
):
    decoded = 20
    return {
        "run_id": run_id,
        "model": "m",
        "task": task,
        "task_family": "t",
        "sample_id": sid,
        "sample_index": 0,
        "sampler": "llada" if k else "fast-dllm",
        "family": family,
        "knob": knob,
        "k": k,
        "sampler_params": params or {},
        "cache": "none",
        "cache_params": {},
        "gen_length": 20,
        "block_length": 20,
        "reference": reference,
        "score": score,
        "steps": steps,
        "nfe": steps,
        "gen_tokens": gen,
        "tokens_per_forward": gen / steps,
        "tokens_per_step": gen / steps,
        "canvas_tokens_per_step": decoded / steps,
        "latency_s": latency,
        "tokens_per_second": gen / latency,
        "peak_mem_gb": 1.0,
        "unmask_counts": [1] * steps,
    }


def test_oracle_picks_best_score_then_fewest_steps_and_averages_tasks():
    records = []
    for task in ("a", "b"):
        # setting 0.9: slow and always right; setting 0.5: fast, right on sample 1 only
        records += [
            _rec(f"{task}9", task, "s1", 1.0, 20, params={"threshold": 0.9}),
            _rec(f"{task}9", task, "s2", 1.0, 20, params={"threshold": 0.9}),
            _rec(f"{task}5", task, "s1", 1.0, 5, params={"threshold": 0.5}),
            _rec(f"{task}5", task, "s2", 0.0, 5, params={"threshold": 0.5}),
        ]
    rows = agg.aggregate_runs(records)
    sets = agg.task_sets_for(rows)
    table = agg.oracle(records, sets)
    per_task = [r for r in table if r["scope"] == "task"]
    assert {r["name"] for r in per_task} == {"a", "b"}
    for r in per_task:
        assert r["quality"] == 100.0
        assert r["steps"] == pytest.approx((5 + 20) / 2)  # s1 from 0.5 (5 steps), s2 from 0.9
        assert r["parallelism"] == pytest.approx((20 / 5 + 20 / 20) / 2)
    [avg] = [r for r in table if r["scope"] == "task_set"]
    assert avg["name"] == "all" and avg["quality"] == 100.0
    avg_rows = agg.averages(rows, sets)
    assert sorted(r["quality"] for r in avg_rows) == [50.0, 100.0]
    [mt] = agg.max_tps_table(avg_rows)
    assert mt["interpolated"] and mt["max_tps@80"] == pytest.approx(1 + (100 - 80) / 50 * 3)


def test_speedup_uses_the_reference_of_the_same_model_and_task():
    records = [
        _rec("ref", "a", "s1", 1.0, 20, family="reference", knob="k", k=1, reference=True, latency=1.0),
        _rec("fast", "a", "s1", 1.0, 5, params={"threshold": 0.5}, latency=0.25),
    ]
    rows = {r["run_id"]: r for r in agg.aggregate_runs(records)}
    assert rows["fast"]["speedup"] == pytest.approx(4.0)
    assert rows["fast"]["latency_speedup"] == pytest.approx(4.0)
    assert rows["ref"]["speedup"] == pytest.approx(1.0)
    assert rows["fast"]["quality_ci_low"] < 100 and rows["fast"]["n_samples"] == 1
    assert math.isnan(agg.aggregate_runs([records[1]])[0]["speedup"])  # no reference: no speedup
