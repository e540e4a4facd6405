"""Data parallel on torch.distributed (gloo, 2 CPU processes): same records / answers as one process."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from dllm.eval import runner

SPEC = {
    "name": "dp",
    "models": ["random:llada", "random:dream"],
    "tasks": ["copy", "words_sort"],
    "num_samples": 5,
    "samplers": [{"name": "llada", "k": [1, 4]}, {"name": "fast-dllm", "grid": {"threshold": [0.5]}}],
    "generation": {"gen_length": 16},
    "batch_size": 2,
    "warmup": 0,
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _launch(args: list[str], cwd) -> subprocess.CompletedProcess:
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000), *args]
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600, env=ENV)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


@pytest.mark.slow
def test_two_process_sweep_matches_one_process(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    runner.run_sweep(SPEC, tmp_path / "one", progress=False, threads=1)
    _launch(
        ["-m", "dllm.eval", "run", str(spec), "--out", str(tmp_path / "two"), "--no-progress", "--no-report"],
        tmp_path,
    )
    one, two = runner.load_records(tmp_path / "one"), runner.load_records(tmp_path / "two")
    assert len(one) == len(two) == 2 * 2 * 3 * 5
    assert [runner.comparable(r) for r in one] == [runner.comparable(r) for r in two]
    assert {r["rank"] for r in two} == {0, 1} and {r["world_size"] for r in two} == {2}
    assert not glob.glob(str(tmp_path / "two" / "records" / "*.rank*.jsonl"))  # partial files merged away
    # resuming under two processes reuses everything
    again = _launch(
        ["-m", "dllm.eval", "run", str(spec), "--out", str(tmp_path / "two"), "--no-progress", "--no-report"],
        tmp_path,
    )
    assert "generated 0 samples, reused 60" in again.stdout


@pytest.mark.slow
def test_two_process_lm_eval_matches_one_process(tmp_path):
    pytest.importorskip("lm_eval")
    common = [
        "--model",
        "dllm",
        "--model_args",
        "model=random:llada,gen_length=16,block_length=16",
        "--tasks",
        "dllm_gsm8k",
        "--limit",
        "5",
        "--log_samples",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "dllm.eval", "lm-eval", *common, "--output_path", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        timeout=600,
        env=ENV,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    _launch(["-m", "dllm.eval", "lm-eval", *common, "--output_path", str(tmp_path / "two")], tmp_path)

    def answers(folder):
        [path] = glob.glob(str(folder / "**" / "samples_*.jsonl"), recursive=True)
        rows = [json.loads(line) for line in open(path)]
        return {r["doc_id"]: r["resps"][0][0] for r in rows}

    assert answers(tmp_path / "one") == answers(tmp_path / "two")
    assert len(answers(tmp_path / "two")) == 5


@pytest.mark.slow
def test_two_processes_on_a_locked_folder_exit_with_the_lock_error(tmp_path):
    """Rank 0 finds the folder locked: every rank prints the same one-line error and exits 2, none
    with a traceback and none waiting on a broadcast (torchrun's own report of the failed launch
    follows; each rank's output is read from its own log)."""
    import fcntl

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "models": ["random:llada"], "num_samples": 2}))
    out, logs = tmp_path / "out", tmp_path / "logs"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 1 on elsewhere")
        held.flush()
        done = subprocess.run(
            [
                "torchrun",
                "--nproc_per_node",
                "2",
                "--master_port",
                str(29500 + (os.getpid() + 500) % 1000),
                "--log-dir",
                str(logs),
                "--redirects",
                "3",
                "-m",
                "dllm.eval",
                "run",
                str(spec),
                "--out",
                str(out),
                "--no-progress",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,  # before the fix the ranks could wait on the plan's broadcast
            env=ENV,
        )
    assert done.returncode != 0
    message = (
        f"error: {out} is in use by another `dllm eval run` (pid 1 on elsewhere); wait for it to finish or"
        " pass another --out\n"
    )
    stderr = {path.parent.name: path.read_text() for path in logs.rglob("stderr.log")}
    assert stderr == {"0": message, "1": message}, done.stderr[-3000:]
    assert "exitcode  : 2" in done.stderr  # the launcher's report: a rank exited with the error's status
    assert not list(out.glob("records/*"))
