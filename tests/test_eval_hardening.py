"""The evaluation harness under bad input, interruption and concurrency: clear errors, no tracebacks,
records validated on read, one writer per output folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dllm.eval import runner
from dllm.eval.cli import main as eval_main
from dllm.eval.spec import load_spec

SPEC = {
    "name": "t",
    "models": ["random:llada"],
    "tasks": ["copy"],
    "num_samples": 2,
    "samplers": [{"name": "llada", "k": [4]}],
    "generation": {"gen_length": 16},
    "batch_size": 2,
    "warmup": 0,
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_samples": "abc"}, r"spec.num_samples='abc' is not an integer"),
        ({"num_samples": 2.5}, r"spec.num_samples=2.5 is not an integer"),
        ({"num_samples": True}, r"spec.num_samples=True is not an integer"),
        ({"batch_size": "x"}, r"spec.batch_size='x' is not an integer"),
        ({"batch_size": 0}, r"spec.batch_size=0 is out of range"),
        ({"warmup": -1}, r"spec.warmup=-1 is out of range"),
        (
            {"tasks": [{"name": "copy", "num_samples": None}]},
            r"spec.tasks\[copy\].num_samples=None is not an integer",
        ),
        ({"tasks": [{"name": "copy", "seed": "s"}]}, r"spec.tasks\[copy\].seed='s' is not an integer"),
        (
            {"samplers": [{"name": "llada", "k": ["two"]}]},
            r"spec.samplers\[llada\].k='two' is not an integer",
        ),
        ({"samplers": [{"name": "llada", "k": [0]}]}, r"spec.samplers\[llada\].k=0 is out of range"),
    ],
)
def test_spec_numbers_are_checked_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        load_spec({**SPEC, **change})


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("tasks: [copy\n  bad: : yaml\n")
    with pytest.raises(ValueError, match=r"bad.yaml is not valid YAML \(line 2, column \d+\)"):
        load_spec(path)
    with pytest.raises(FileNotFoundError, match="missing.yaml not found"):
        load_spec(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": -1}, r"batch_size=-1 is out of range"),
        ({"batch_size": 2.0}, r"batch_size=2.0 is out of range"),
        ({"max_configs": -2}, r"max_configs=-2 is out of range"),
        ({"threads": 0}, r"threads=0 is out of range"),
    ],
)
def test_run_sweep_checks_its_numbers(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        runner.run_sweep(SPEC, tmp_path / "out", progress=False, **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "SPEC", "--batch-size", "-1"], "argument --batch-size: expected an integer >= 1, got -1"),
        (["run", "SPEC", "--max-configs", "0"], "argument --max-configs: expected an integer >= 1, got 0"),
        (["run", "SPEC", "--threads", "two"], "argument --threads: expected an integer, got 'two'"),
        (["theory", "--n", "1"], "argument --n: expected an integer >= 2, got 1"),
    ],
)
def test_cli_numeric_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_errors_for_missing_paths_and_bad_yaml(tmp_path, capsys):
    assert eval_main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml not found" in capsys.readouterr().err
    (tmp_path / "bad.yaml").write_text("a: [1\n")
    assert eval_main(["run", str(tmp_path / "bad.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert eval_main(["report", str(tmp_path / "none")]) == 2
    assert "none does not exist" in capsys.readouterr().err


def test_theory_has_a_title_and_a_legend(capsys):
    assert eval_main(["theory", "--n", "4"]) == 0
    out = capsys.readouterr().out
    assert "ideal-marginal model" in out and "total correlation" in out and "0.3750" in out


def _sweep(tmp_path) -> Path:
    out = tmp_path / "sweep"
    runner.run_sweep(SPEC, out, progress=False)
    return out


def test_records_are_validated_on_read_with_the_line_number(tmp_path):
    out = _sweep(tmp_path)
    path = next((out / "records").glob("*.jsonl"))
    good = path.read_text()
    n, total = len(good.splitlines()), len(runner.load_records(out))
    path.write_text(good + '{"run_id": "x", "sample')  # a torn last line (interrupted write) is ignored
    assert len(runner.load_records(out)) == total
    for bad in ("{}", "[1, 2]", '"text"', "{not json"):
        path.write_text(good + bad + "\n" + good.splitlines()[0] + "\n")
        with pytest.raises(ValueError, match=rf"{path.name}:{n + 1}: not a "):
            runner.load_records(out)
    path.write_text(good + "{}\n")
    with pytest.raises(ValueError, match=rf"{path.name}:{n + 1}: not a dllm eval record \(missing run_id"):
        runner.run_sweep(SPEC, out, progress=False)  # resume reads the records too


def test_one_writer_per_output_folder(tmp_path, capsys):
    out = tmp_path / "sweep"
    with runner.folder_lock(out):
        with pytest.raises(
            runner.SweepLocked, match=rf"{out} is in use by another `dllm eval run` \(pid {os.getpid()}"
        ):
            runner.run_sweep(SPEC, out, progress=False)
        spec = tmp_path / "spec.json"
        spec.write_text(json.dumps(SPEC))  # JSON is YAML
        assert eval_main(["run", str(spec), "--out", str(out), "--no-progress"]) == 2
        assert "is in use by another" in capsys.readouterr().err
    assert not list((out / "records").glob("*.jsonl")) if (out / "records").exists() else True
    result = runner.run_sweep(SPEC, out, progress=False)  # released: the next run goes ahead
    assert result.generated == len(runner.load_records(out)) > 0


@pytest.mark.slow
def test_ctrl_c_prints_how_to_resume_and_keeps_the_records(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                **SPEC,
                "tasks": ["copy", "reverse"],
                "num_samples": 8,
                "batch_size": 1,
                "samplers": [{"name": "llada", "k": [1, 2, 4]}],
                "generation": {"gen_length": 32},
            }
        )
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dllm",
            "eval",
            "run",
            str(spec),
            "--out",
            str(out),
            "--no-progress",
            "--threads",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell's background job ignores SIGINT and its children inherit that: restore it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not any(p.stat().st_size for p in out.glob("records/*.jsonl")):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: every finished batch is kept" in err
    kept = runner.load_records(out)
    assert kept
    result = runner.run_sweep(spec, out, progress=False)
    assert result.reused == len(kept) and len(runner.load_records(out)) == result.reused + result.generated
