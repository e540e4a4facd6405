"""lm-eval adapter: registration, generate_until with stop strings and speed records, offline tasks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from dllm.eval import benchmarks  # noqa: E402
from dllm.eval.lm_eval_adapter import TASKS_DIR, DLLMEvalLM, cut_at_stop  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class _Request:
    def __init__(self, context, gen_kwargs, doc_id=0):
        self.args = (context, gen_kwargs)
        self.metadata = ("demo", doc_id, 1)


def test_model_is_registered_and_parses_model_args():
    from lm_eval.api.registry import get_model

    assert get_model("dllm") is DLLMEvalLM
    lm = DLLMEvalLM.create_from_arg_string(
        "model=random:llada,sampler=fast-dllm,threshold=0.5,gen_length=16,block_length=8",
        {"batch_size": 2, "device": "cuda"},
    )
    assert (
        lm.sampler_params == {"threshold": 0.5} and lm.config.gen_length == 16 and lm.config.block_length == 8
    )
    assert lm.batch_size == 2 and lm.device.type in ("cpu", "cuda")
    assert lm.rank == 0 and lm.world_size == 1 and lm.gather_object({"a": 1}) == [{"a": 1}]
    lm_k = DLLMEvalLM(model="random:dream", sampler="llada", k=4, gen_length=16, block_length=16)
    assert lm_k.config.steps == 4
    with pytest.raises(ValueError, match="not a parameter of sampler"):
        DLLMEvalLM(model="random:llada", sampler="fast-dllm", treshold=0.9)
    with pytest.raises(NotImplementedError, match="does not implement loglikelihood"):
        lm.loglikelihood([])


def test_generate_until_cuts_at_stop_strings_and_records_speed(tmp_path):
    assert cut_at_stop("12 apples\nQuestion: next", ["Question:", "\n"]) == ("12 apples", "\n")
    assert cut_at_stop("no stop here", "Question:") == ("no stop here", None)
    lm = DLLMEvalLM(
        model="random:llada",
        sampler="llada",
        k=2,
        gen_length=16,
        block_length=16,
        batch_size=2,
        stats_dir=str(tmp_path),
    )
    reqs = [
        _Request("copy: Emma Stone, Liam Park\n", {"until": ["\n"], "max_gen_toks": 99}, i) for i in range(2)
    ]
    reqs.append(_Request("reverse: Ava Cole, Max Hill\n", {"until": "Zebra"}, 2))
    outs = lm.generate_until(reqs)
    assert len(outs) == 3 and all(isinstance(o, str) for o in outs)
    assert all("\n" not in o for o in outs[:2])
    lines = [json.loads(line) for line in (tmp_path / "rank0.jsonl").read_text().splitlines()]
    assert len(lines) == 3
    for rec in lines:
        assert rec["steps"] == 8 and rec["nfe"] == 8 and rec["unmask_counts"] == [2] * 8
        assert rec["gen_tokens"] <= rec["gen_tokens_before_stop"] <= 16
        assert rec["max_gen_toks_ignored"] in (99, None) and rec["task"] == "demo"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["requests"] == 3 and summary["ranks"] == 1


def test_offline_rows_have_the_real_schema_and_code_checks_run():
    rows, source = benchmarks.load_rows("gsm8k", "test")
    assert source == "fixture" and {"question", "answer"} <= set(rows[0]) and "#### " in rows[0]["answer"]
    rows, _ = benchmarks.load_rows("humaneval", "test")
    assert set(benchmarks.SCHEMAS["humaneval"]) <= set(rows[0])
    sys.path.insert(0, str(TASKS_DIR))
    try:
        import utils  # the task folder's helpers
    finally:
        sys.path.remove(str(TASKS_DIR))
    refs = [r["test"] + f"\ncheck({r['entry_point']})" for r in rows]
    assert utils.pass_at_1(refs, [[r["prompt"] + r["canonical_solution"]] for r in rows]) == 1.0
    assert utils.pass_at_1(refs, [[r["prompt"] + "    return None\n"] for r in rows]) == 0.0
    assert not benchmarks.run_program("while True: pass\n", timeout=1)
    with pytest.raises(ValueError, match="'answer' must be str"):
        benchmarks.validate("gsm8k", [{"question": "q"}], "demo")


def test_simple_evaluate_on_the_offline_gsm8k_fixture():
    import inspect

    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    lm = DLLMEvalLM(model="random:llada", sampler="fast-dllm", gen_length=16, block_length=16)
    only_ours = (
        {"include_defaults": False} if "include_defaults" in inspect.signature(TaskManager).parameters else {}
    )
    results = simple_evaluate(
        model=lm,
        tasks=["dllm_gsm8k"],
        limit=2,
        task_manager=TaskManager(include_path=str(TASKS_DIR), **only_ours),
    )
    metrics = results["results"]["dllm_gsm8k"]
    assert "exact_match,strict-match" in metrics and "exact_match,flexible-extract" in metrics
    assert lm.summary["requests"] == 2


@pytest.mark.slow
def test_stock_lm_eval_cli_with_the_task_yaml(tmp_path):
    """``lm_eval --model dllm --tasks <fixture yaml>``: the YAML's helpers register the model."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lm_eval",
            "--model",
            "dllm",
            "--model_args",
            f"model=random:llada,gen_length=16,block_length=16,stats_dir={tmp_path}",
            "--tasks",
            str(Path(TASKS_DIR) / "dllm_gsm8k.yaml"),
            "--limit",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "dllm_gsm8k" in out.stdout and (tmp_path / "rank0.jsonl").exists()
