"""Speculative configurations in sweep specs: expansion, records, greedy identity, resume, report, errors."""

from __future__ import annotations

import math

import pytest

from dllm.eval import runner
from dllm.eval.aggregate import read_csv
from dllm.eval.spec import PLAIN_AR_FAMILY, expand, load_spec

PLAIN = {"verifier": "tiny-ar", "drafter": "none", "family": "AR (plain)"}
ONEPASS = {
    "verifier": "tiny-ar",
    "drafter": "onepass",
    "params": {"model": "tiny-dream"},
    "length": "fixed",
    "length_params": {"k": 4},
}
SPEC = {
    "name": "spec-t",
    "models": ["random:llada"],
    "tasks": ["copy", "words_reverse"],
    "num_samples": 3,
    "samplers": [{"name": "llada", "k": [4]}],
    "speculative": [PLAIN, ONEPASS],
    "batch_size": 2,
    "warmup": 0,
}
SPECULATIVE_STATS = {
    "tau",
    "tau_with_bonus",
    "tokens_per_verifier_forward",
    "acceptance_rate",
    "verifier_forwards",
    "drafter_forwards",
    "draft_seconds",
    "verify_seconds",
    "rounds",
    "drafted",
    "accepted",
}


pytestmark = pytest.mark.usefixtures("one_thread")


def test_expand_speculative_entries():
    runs, skipped = expand(load_spec(SPEC))
    spec_runs = [r for r in runs if r.speculative]
    assert len(runs) - len(spec_runs) == 2 * 2  # llada k=4 and the k=1 reference per task
    # plain AR and onepass per task; the added plain-AR reference is the spec's own entry (its family kept)
    assert len(spec_runs) == 2 * 2 and not skipped
    assert {(r.sampler, r.family, r.reference) for r in spec_runs} == {
        ("none", "AR (plain)", True),
        ("onepass", "onepass fixed", False),
    }
    for r in spec_runs:
        assert (
            r.model == "tiny-ar"
            and r.cache == "none"
            and r.length == (None if r.sampler == "none" else "fixed")
        )
        from dllm.eval import tasks

        assert r.generation == {
            "max_new_tokens": tasks.get(r.task).max_new_tokens,
            "temperature": 0.0,
            "seed": 0,
        }
        assert r.gen_length == r.block_length == r.generation["max_new_tokens"]
    again, _ = expand(load_spec({**SPEC, "batch_size": 5}))
    assert [r.run_id for r in again] == [r.run_id for r in runs]  # stable ids, batch size not part of them

    # speculative entries only; the spec's generation settings (gen_length, a temperature axis) apply
    only, _ = expand(
        load_spec(
            {
                "tasks": ["copy"],
                "speculative": [ONEPASS],
                "generation": {"gen_length": 24, "temperature": [0.0, 0.7], "block_length": [None, 8]},
            }
        )
    )
    assert all(r.speculative for r in only)
    assert sorted((r.family, r.generation["temperature"]) for r in only) == [
        ("onepass fixed", 0.0),
        ("onepass fixed", 0.7),
        (PLAIN_AR_FAMILY, 0.0),
        (PLAIN_AR_FAMILY, 0.7),
    ]
    assert {r.generation["max_new_tokens"] for r in only} == {24}
    without_reference, _ = expand(
        load_spec({"tasks": ["copy"], "speculative": [ONEPASS], "reference": False})
    )
    assert [r.sampler for r in without_reference] == ["onepass"]


def test_bad_speculative_entries_raise_naming_the_problem():
    def bad(entry, **spec):
        return lambda: load_spec({"tasks": ["copy"], "speculative": [entry], **spec})

    cases = [
        (
            {**ONEPASS, "drafter": "nope"},
            r"spec.speculative\[0\]: unknown drafter 'nope'; known: ar, deer, diffuspec",
        ),
        ({**ONEPASS, "lenght": "adl"}, r"spec.speculative\[0\]: unknown key\(s\) \['lenght'\]"),
        (
            {**ONEPASS, "params": {"modle": "tiny-dream"}},
            r"drafter 'onepass' has no parameter\(s\) \['modle'\]",
        ),
        ({**ONEPASS, "params": {"tau": 1.5}, "drafter": "diffuspec"}, r"diffuspec.tau=1.5 is out of range"),
        ({**ONEPASS, "length": "nope"}, r"unknown length controller 'nope'"),
        ({**ONEPASS, "length_params": {"k": 0}}, r"fixed.k=0 is out of range"),
        ({**ONEPASS, "length": None}, r"length_params given without a length controller"),
        ({**PLAIN, "length": "adl"}, r"need a drafter"),
        ({"drafter": "onepass"}, r"expected a mapping with a 'verifier'"),
        (
            {**PLAIN, "verifier": {"name": "tiny-ar", "dtyp": "float32"}},
            r"spec.speculative\[0\].verifier: unknown key",
        ),
    ]
    for entry, message in cases:
        with pytest.raises(ValueError, match=message):
            bad(entry)()
    with pytest.raises(ValueError, match="also a spec.models label"):
        load_spec({**SPEC, "models": ["tiny-ar"]})
    with pytest.raises(ValueError, match="names two different models"):
        load_spec(
            {
                "tasks": ["copy"],
                "speculative": [
                    PLAIN,
                    {**ONEPASS, "verifier": {"name": "tiny-ar-draft", "label": "tiny-ar"}},
                ],
            }
        )
    with pytest.raises(ValueError, match="'models' must list at least one entry"):
        load_spec({"tasks": ["copy"]})
    with pytest.raises(ValueError, match="'models' must list at least one entry"):
        load_spec({"tasks": ["copy"], "speculative": [PLAIN], "samplers": ["llada"]})


def test_a_diffusion_model_as_verifier_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="verifier must be an autoregressive"):
        runner.run_sweep(
            {
                "tasks": [{"name": "copy", "num_samples": 1}],
                "warmup": 0,
                "speculative": [{"verifier": "tiny-dream"}],
            },
            tmp_path / "x",
            progress=False,
        )


def test_speculative_sweep_records_resume_and_report(tmp_path):
    out = tmp_path / "sweep"
    first = runner.run_sweep(SPEC, out, progress=False)
    assert not first.failed and first.generated == len(first.runs) * 3 == 8 * 3
    records = runner.load_records(out)
    spec_recs = [r for r in records if r.get("mode") == "speculative"]
    diff_recs = [r for r in records if r["mode"] == "diffusion"]
    assert len(spec_recs) == len(diff_recs) == 4 * 3
    for rec in spec_recs:
        assert set(diff_recs[0]) <= set(rec) and SPECULATIVE_STATS <= set(
            rec
        )  # every common field, plus the stats
        assert rec["model"] == "tiny-ar" and rec["block_length"] == rec["gen_length"] == rec["canvas_len"]
        assert (
            rec["steps"]
            == rec["nfe"]
            == rec["verifier_forwards"]
            == rec["rounds"]
            == len(rec["unmask_counts"])
        )
        assert sum(rec["unmask_counts"]) == rec["decoded_positions"] <= rec["gen_length"]
        assert (
            rec["tokens_per_forward"]
            == rec["tokens_per_verifier_forward"]
            == pytest.approx(rec["gen_tokens"] / rec["verifier_forwards"])
        )
        assert rec["canvas_tokens_per_step"] == pytest.approx(rec["tau_with_bonus"])
        assert rec["latency_s"] == pytest.approx(rec["batch_seconds"] / rec["batch_size"])
        if rec["drafter"] is None:  # plain AR: one token per verifier forward, nothing drafted
            assert (
                rec["unmask_counts"] == [1] * rec["rounds"]
                and rec["tau"] == 0
                and rec["drafter_forwards"] == 0
            )
            assert rec["reference"] and rec["family"] == "AR (plain)" and rec["ar_kendall"] in (None, 1.0)
        else:
            assert (
                rec["drafter"] == "onepass" and rec["length"] == "fixed" and rec["length_params"] == {"k": 4}
            )
            assert rec["drafter_forwards"] >= 1 and rec["tau_with_bonus"] > 1

    # greedy speculative decoding is lossless: the onepass answers are the plain-AR answers, sample for sample
    plain = {(r["task"], r["sample_id"]): r["prediction"] for r in spec_recs if r["drafter"] is None}
    drafted = {(r["task"], r["sample_id"]): r["prediction"] for r in spec_recs if r["drafter"] == "onepass"}
    assert drafted == plain and len(plain) == 2 * 3

    second = runner.run_sweep(SPEC, out, progress=False)
    assert second.generated == 0 and second.reused == len(records)
    assert runner.load_records(out) == records

    from dllm.eval.report import make_report

    tables = make_report(out, plots=False)
    rows = [r for r in read_csv(out / "report" / "aggregate.csv") if r["mode"] == "speculative"]
    assert len(rows) == 4 and {r["family"] for r in rows} == {"AR (plain)", "onepass fixed"}
    for row in rows:
        for col in (
            "quality",
            "tau",
            "tau_with_bonus",
            "tokens_per_verifier_forward",
            "acceptance_rate",
            "verifier_forwards",
            "drafter_forwards",
            "draft_share",
            "speedup",
        ):
            assert row[col] != "" and math.isfinite(float(row[col]))
        assert float(row["nfe"]) == pytest.approx(float(row["verifier_forwards"]))
        if row["family"] == "AR (plain)":
            assert float(row["speedup"]) == 1.0 and float(row["tau"]) == 0.0
    averages = [r for r in tables["averages"] if r["mode"] == "speculative" and r["task_set"] == "all"]
    assert {r["family"] for r in averages} == {"AR (plain)", "onepass fixed"}
    assert {r["family"] for r in tables["max_tps"]} >= {"AR (plain)", "onepass fixed", "llada top-k"}
    summary = (out / "report" / "summary.md").read_text()
    assert "### Speculative decoding" in summary and "| tiny-ar | onepass fixed | k=4,length=fixed" in summary
