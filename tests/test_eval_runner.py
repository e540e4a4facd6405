"""Sweep spec expansion, the resumable JSONL runner, and the report (CSVs + figures) on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dllm.eval import runner
from dllm.eval.aggregate import read_csv
from dllm.eval.spec import expand, load_spec, stable_id

SPEC = {
    "name": "t",
    "models": ["random:llada"],
    "tasks": ["copy", "words_reverse"],
    "num_samples": 3,
    "samplers": [{"name": "llada", "k": [1, 4]}, {"name": "fast-dllm", "grid": {"threshold": [0.5, 0.9]}}],
    "caches": ["none"],
    "generation": {"gen_length": 16},
    "batch_size": 2,
    "warmup": 0,
}
RECORD_FIELDS = {
    "run_id",
    "task",
    "sample_id",
    "model",
    "sampler",
    "sampler_params",
    "family",
    "cache",
    "cache_params",
    "block_length",
    "prediction",
    "score",
    "steps",
    "nfe",
    "gen_tokens",
    "tokens_per_forward",
    "tokens_per_step",
    "canvas_tokens_per_step",
    "latency_s",
    "tokens_per_second",
    "unmask_counts",
    "decoded_positions",
    "canvas_len",
    "peak_mem_gb",
    "prompt_tokens",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_expand_skips_unsupported_combinations_with_reasons():
    spec = load_spec(
        {
            **SPEC,
            "generation": {"gen_length": 16, "block_length": [None, 8, 5]},
            "samplers": [
                {"name": "llada", "k": [1, 16]},
                {"name": "fast-dllm", "grid": {"threshold": [0.9, 1.5]}},
            ],
            "exclude": [{"sampler": "fast-dllm", "block_length": 8, "reason": "demo rule"}],
        }
    )
    runs, skipped = expand(spec)
    reasons = [s.reason for s in skipped]
    assert any("not a multiple of block_length" in r for r in reasons)  # block 5
    assert any("exceeds block_length=8" in r for r in reasons)  # k=16 > block 8
    assert any("threshold=1.5 is out of range" in r for r in reasons)
    assert "demo rule" in reasons
    assert all(r.block_length in (16, 8) for r in runs)
    # every (task, block) has the 1-token/step no-cache reference; the spec's own llada k=1 is that run
    refs = [r for r in runs if r.reference]
    assert len(refs) == 2 * 2 and all(r.family == "llada top-k" and r.k == 1 for r in refs)
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    again, _ = expand(load_spec({**spec.raw, "batch_size": 7}))
    assert [r.run_id for r in again] == ids  # batch size is not part of the identity
    assert stable_id({"b": 1, "a": [1, 2]}) == stable_id({"a": [1, 2], "b": 1})


def test_bad_specs_raise_naming_the_problem():
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        load_spec({**SPEC, "samplers": ["nope"]})
    with pytest.raises(ValueError, match="has no parameter"):
        load_spec({**SPEC, "samplers": [{"name": "fast-dllm", "grid": {"treshold": [0.9]}}]})
    with pytest.raises(ValueError, match="unknown task"):
        load_spec({**SPEC, "tasks": ["nope"]})
    with pytest.raises(ValueError, match="unknown key"):
        load_spec({**SPEC, "sampler": []})


def test_sweep_records_resume_and_report(tmp_path):
    out = tmp_path / "sweep"
    first = runner.run_sweep(SPEC, out, progress=False)
    n_configs = len(first.runs)
    assert n_configs == 2 * 4  # 2 tasks x (k=1 (also the reference), k=4, threshold 0.5, 0.9)
    assert first.generated == n_configs * 3 and first.reused == 0
    records = runner.load_records(out)
    assert len(records) == n_configs * 3
    rec = records[0]
    assert RECORD_FIELDS <= set(rec)
    for rec in records:
        assert sum(rec["unmask_counts"]) == rec["decoded_positions"] <= rec["canvas_len"] == 16
        assert rec["steps"] == len(rec["unmask_counts"]) and rec["nfe"] >= rec["steps"]
        assert rec["tokens_per_forward"] == pytest.approx(rec["gen_tokens"] / rec["nfe"])
        assert rec["latency_s"] == pytest.approx(rec["batch_seconds"] / rec["batch_size"])
        if rec["k"] == 4:
            assert rec["unmask_counts"] == [4, 4, 4, 4]
        assert rec["ar_kendall"] is None or -1.0 <= rec["ar_kendall"] <= 1.0

    second = runner.run_sweep(SPEC, out, progress=False)
    assert second.generated == 0 and second.reused == n_configs * 3
    assert runner.load_records(out) == records

    # interrupted mid-config: the last record lost and a torn line left behind
    path = out / "records" / f"{records[0]['run_id']}.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]) + lines[-1][:25])
    third = runner.run_sweep(SPEC, out, progress=False)
    assert third.generated == 1
    redone = runner.load_records(out)
    assert [runner.comparable(r) for r in redone] == [runner.comparable(r) for r in records]

    # an interrupted two-process run left per-rank files behind: a resume folds them in, recomputes the rest
    run_id = records[-1]["run_id"]
    mine = [r for r in records if r["run_id"] == run_id]
    (out / "records" / f"{run_id}.jsonl").unlink()
    (out / "records" / f"{run_id}.rank1.jsonl").write_text(json.dumps(mine[1]) + "\n")
    fourth = runner.run_sweep(SPEC, out, progress=False)
    assert fourth.generated == len(mine) - 1
    assert not list((out / "records").glob("*.rank*.jsonl"))
    assert [runner.comparable(r) for r in runner.load_records(out)] == [runner.comparable(r) for r in records]

    from dllm.eval.report import make_report

    tables = make_report(out)
    report = out / "report"
    agg_rows = read_csv(report / "aggregate.csv")
    assert len(agg_rows) == n_configs
    for col in (
        "quality",
        "quality_ci_low",
        "quality_ci_high",
        "steps",
        "nfe",
        "tokens_per_forward",
        "parallelism",
        "tokens_per_second",
        "latency_p50",
        "latency_p90",
        "peak_mem_gb",
        "speedup",
        "pareto",
    ):
        assert col in agg_rows[0]
    for name in ("averages", "oracle", "max_tps", "pareto"):
        assert (report / f"{name}.csv").exists()
    assert {p.name for p in tables["figures"]} >= {
        "quality_vs_parallelism_random_llada.png",
        "tradeoff_all.png",
        "throughput_vs_quality.png",
        "unmask_histogram.png",
    }
    for png in tables["figures"]:
        assert png.stat().st_size > 5000 and png.with_suffix(".csv").exists()
    assert "| model |" in (report / "summary.md").read_text()


def test_ar_kendall_measures_left_to_right_order():
    from dllm.metrics import StepRecord

    def trace(order):
        return [
            StepRecord(
                step=i + 1, nfe=i + 1, positions=list(p), tokens=[0] * len(p), confidences=[1.0] * len(p)
            )
            for i, p in enumerate(order)
        ]

    assert runner.ar_kendall(trace([[0], [1], [2], [3]])) == pytest.approx(1.0)
    assert runner.ar_kendall(trace([[3], [2], [1], [0]])) == pytest.approx(-1.0)
    assert runner.ar_kendall(trace([[0, 1], [2, 3]])) == pytest.approx(4 / (6 * 4) ** 0.5)
    assert runner.ar_kendall(trace([[0, 1, 2, 3]])) is None


def test_runner_skips_caches_the_model_cannot_serve(tmp_path):
    from dllm.eval.oracle import IdealMarginalModel

    class NeedsKV:
        name, needs_kv = "kv-demo", True

    assert "needs K/V buffers" in runner.unsupported_reason(
        IdealMarginalModel(items=["A", "B"]), object(), NeedsKV()
    )
    assert runner.unsupported_reason(IdealMarginalModel(items=["A", "B"]), object(), object()) is None


def test_oracle_model_in_a_sweep_and_the_cli(tmp_path, capsys):
    from dllm.cli import main

    spec = {
        "name": "o",
        "models": ["oracle"],
        "tasks": ["shuffle", "copy"],
        "num_samples": 4,
        "samplers": [{"name": "fast-dllm", "grid": {"threshold": [0.3, 0.9]}}],
        "generation": {"gen_length": 16},
        "batch_size": 4,
        "warmup": 0,
    }
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump(spec))
    assert main(["eval", "run", str(path), "--out", str(tmp_path / "o"), "--no-progress", "--no-report"]) == 0
    assert "generated 24 samples" in capsys.readouterr().out
    records = runner.load_records(tmp_path / "o")
    copy = [r for r in records if r["task"] == "copy"]
    assert all(r["score"] == 1.0 for r in copy)  # the oracle is exact on deterministic tasks
    assert main(["eval", "report", str(tmp_path / "o"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "fast-dllm threshold" in out and "Max tokens/step" in out
    manifest = json.loads((tmp_path / "o" / "configs.json").read_text())
    assert set(manifest) == {r["run_id"] for r in records}
    assert Path(tmp_path / "o" / "skipped.jsonl").exists()
