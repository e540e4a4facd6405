"""The evaluation harness's file errors name the file (issue 26): a spec path that does not exist, an
output folder's damaged configs.json or spec.yaml, an output path that is a file, a benchmark data
file with a bad line. Through the command line (a subprocess, as a user runs it) and the functions."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from dllm.eval import benchmarks, runner
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
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _dllm(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dllm.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    return line


def test_a_spec_path_that_does_not_exist_is_named(tmp_path):
    missing = tmp_path / "sweeps" / "small"  # no .yaml suffix: it was read as YAML text before
    line = _one_error_line(_dllm("eval", "run", str(missing), "--out", str(tmp_path / "o"), cwd=tmp_path))
    assert line == f"error: sweep spec {missing} not found"
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), r"sweep spec {p} is a folder, not a file"),
        (lambda p: p.write_bytes(b"name: \xff\n"), r"sweep spec {p} is not UTF-8 text"),
        (lambda p: p.write_text("- copy\n"), r"sweep spec {p} must be a mapping .*; found a YAML list"),
        (lambda p: p.write_text(""), r"sweep spec {p} must be a mapping .*; found nothing \(it is empty\)"),
        (lambda p: None, r"sweep spec {p} not found"),
    ],
    ids=["folder", "not-utf8", "a-list", "empty", "missing"],
)
def test_spec_file_errors_name_the_file(tmp_path, capsys, make, message):
    path = tmp_path / "spec.json"
    make(path)
    with pytest.raises((ValueError, FileNotFoundError), match=message.format(p=path)):
        load_spec(path)
    with pytest.raises((ValueError, FileNotFoundError), match=message.format(p=path)):
        load_spec(str(path))  # a one-line string is a path, not YAML text
    assert eval_main(["run", str(path), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"error: sweep spec {path}")


def test_spec_text_still_parses():
    assert load_spec(yaml.safe_dump(SPEC)).name == "t"  # several lines: YAML text
    assert load_spec(yaml.safe_dump(SPEC, default_flow_style=True).strip()).name == "t"  # one {...} line


def test_a_truncated_configs_json_is_named_with_what_to_do(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "out"
    args = ("eval", "run", str(spec), "--out", str(out), "--no-progress", "--no-report")
    first = _dllm(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = out / "configs.json"
    text = manifest.read_text()
    manifest.write_text(text[: len(text) // 2])
    line = _one_error_line(_dllm(*args, cwd=tmp_path))
    assert line.startswith(f"error: {manifest} is not valid JSON: ")
    assert line.endswith(
        "; delete configs.json (the next `dllm eval run` on this folder writes it again; records/ is kept)"
        " or pass another --out folder"
    )
    manifest.unlink()  # what the message says to do
    again = _dllm(*args, cwd=tmp_path)
    assert again.returncode == 0 and "generated 0 samples" in again.stdout
    assert manifest.read_text() == text


def test_a_configs_json_that_is_not_an_object_is_named(tmp_path):
    runner.run_sweep(SPEC, tmp_path / "out", progress=False)
    (tmp_path / "out" / "configs.json").write_text("[]")
    with pytest.raises(ValueError, match=r"configs\.json must hold a JSON object, found a JSON list; delete"):
        runner.run_sweep(SPEC, tmp_path / "out", progress=False)


def test_an_output_path_that_is_a_file_is_named(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    (tmp_path / "taken").write_text("")
    assert eval_main(["run", str(spec), "--out", str(tmp_path / "taken")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: output folder {tmp_path / 'taken'} is a file, not a folder; pass another --out\n"
    )
    assert eval_main(["run", str(spec), "--out", str(tmp_path / "taken" / "sub")]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith(f"error: cannot create the output folder {tmp_path / 'taken' / 'sub'} (")
        and "--out" in err
    )


def test_report_names_a_damaged_spec_copy(tmp_path, capsys):
    runner.run_sweep(SPEC, tmp_path / "out", progress=False)
    copy = tmp_path / "out" / "spec.yaml"
    copy.write_text("name: [\n")
    assert eval_main(["report", str(tmp_path / "out"), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the sweep's copy of its spec {copy} is not valid YAML (line 2, column 1)")
    assert "delete spec.yaml" in err and "--out" not in err


@pytest.mark.parametrize(
    "lines, message",
    [
        ('{"question": "q", "answer": "#### 1"}\n{"question": \n', r"data\.jsonl:2: not a JSON line"),
        ("[1, 2]\n", r"data\.jsonl:1: a row must be a JSON object, found a JSON list"),
    ],
)
def test_a_benchmark_data_file_names_the_file_and_line(tmp_path, lines, message):
    path = tmp_path / "data.jsonl"
    path.write_text(lines)
    with pytest.raises(ValueError, match=message):
        benchmarks.load_rows("gsm8k", "test", data_files=str(path))
    with pytest.raises(FileNotFoundError, match=r"benchmark data file \S+missing\.jsonl not found"):
        benchmarks.load_rows("gsm8k", "test", data_files=str(tmp_path / "missing.jsonl"))


def test_rank_zero_errors_travel_to_the_other_ranks():
    from dllm.eval.distributed import Distributed, _portable

    class Odd(Exception):
        def __init__(self, a, b):
            super().__init__(f"{a}/{b}")

    assert str(_portable(ValueError("x.json is not valid JSON"))) == "x.json is not valid JSON"
    assert type(_portable(runner.SweepLocked("locked"))) is runner.SweepLocked
    odd = _portable(Odd(1, 2))  # does not unpickle: its text goes instead
    assert type(odd) is RuntimeError and str(odd) == "Odd: 1/2"
    assert Distributed().run_on_main(lambda: 7) == 7
    with pytest.raises(ValueError, match="boom"):
        Distributed().run_on_main(lambda: (_ for _ in ()).throw(ValueError("boom")))
