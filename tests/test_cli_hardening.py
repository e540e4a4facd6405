"""The CLI under hostile input (issue 19): every case exits non-zero with a message naming the problem, no
traceback, no progress bar before the refusal; and the output a user relies on (JSON shape, trace, the stats
line when piped, the EOS tail of --show-steps)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from _cli_battery import CASES

from dllm.cli import main as cli_main

HERE = Path(__file__).parent
ARG = "reverse: Emma Stone, Liam Park, Noah Reed\\n"


@pytest.fixture(scope="module")
def battery(tmp_path_factory):
    """Every case of tests/_cli_battery.py, run in one fresh Python process (a few seconds in all)."""
    out = tmp_path_factory.mktemp("battery") / "records.json"
    done = subprocess.run(
        [sys.executable, str(HERE / "_cli_battery.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=HERE.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("name,message", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_input_is_a_clear_refusal(battery, name, message):
    record = battery[name]
    assert record["code"] != 0, record
    assert "Traceback" not in record["stderr"], record["stderr"]
    assert message in record["stderr"], record["stderr"]
    assert "Loading weights" not in record["stderr"] and "it/s]" not in record["stderr"], record["stderr"]


def _dllm(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "dllm", *args],
        capture_output=True,
        timeout=300,
        cwd=HERE.parent,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
    )


def test_non_utf8_argv_is_named_not_a_traceback():
    done = _dllm(
        "generate",
        "tiny-llada",
        b"copy: Ava \xff\xfe Cole",
        "--gen-length",
        "8",
        "--block-length",
        "8",
        env={"LC_ALL": "C.UTF-8", "PYTHONUTF8": "1"},
    )
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "Traceback" not in err
    assert "the prompt is not valid text: undecodable byte 0xff" in err and "at character 10" in err


def test_piped_stats_line_is_one_line_with_its_label():
    done = _dllm(
        "generate",
        "tiny-llada",
        ARG,
        "--sampler",
        "fast-dllm",
        "--threshold",
        "0.9",
        "--gen-length",
        "48",
        "--block-length",
        "48",
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    [stats] = [line for line in out.splitlines() if line.startswith("sampler=")]
    assert "NFE=1" in stats and " seconds=" in stats and "decode-tok/s(warm)=" in stats, out
    assert stats.split("decode-tok/s(warm)=")[1].replace(".", "").isdigit()
    assert len(out.splitlines()) == 3, out  # prompt, output, stats: nothing wrapped
    assert "Loading weights" not in done.stderr.decode()


def test_json_is_always_a_list_and_carries_the_trace_with_show_steps(capsys):
    common = ["--gen-length", "16", "--block-length", "8"]
    assert cli_main(["generate", "tiny-llada", ARG, *common, "--json"]) == 0
    [one] = json.loads(capsys.readouterr().out)
    assert one["prompt"] == ARG.replace("\\n", "\n") and "trace" not in one
    assert (
        cli_main(["generate", "tiny-llada", ARG, "copy: Ava Cole\\n", *common, "--json", "--show-steps"]) == 0
    )
    rows = json.loads(capsys.readouterr().out)
    assert isinstance(rows, list) and len(rows) == 2
    for row in rows:
        assert len(row["trace"]) == row["steps"] == 16
        assert sorted(p for step in row["trace"] for p in step["positions"]) == list(range(16))


def test_show_steps_collapses_the_eos_padding(capsys):
    assert (
        cli_main(
            [
                "generate",
                "tiny-llada",
                "copy: Ava Cole\\n",
                "--gen-length",
                "48",
                "--block-length",
                "16",
                "--show-steps",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "unmasking order" in out
    [canvas] = [line for line in out.splitlines() if "·" in line]
    assert canvas.count("<|endoftext|>") == 1 and "EOS padding positions" in canvas
    padded = int(canvas.split("… ")[1].split()[0])
    listed = [line for line in out.splitlines() if "<|endoftext|>'" in line]
    assert len(listed) == 1, out  # the EOS that ends the answer; the padding is counted, not listed
    collapsed = sum(
        int(line.split("… ")[1].split()[0])
        for line in out.splitlines()
        if "EOS padding position" in line and "│" in line
    )
    inline = sum(int(p.split(" EOS padding)")[0]) for line in out.splitlines() for p in line.split("(+")[1:])
    assert collapsed + inline == padded > 20


def test_special_token_text_with_the_opt_in_runs(capsys):
    assert (
        cli_main(
            [
                "generate",
                "tiny-llada",
                "copy: Ava <|mask|> Cole\\n",
                "--allow-special",
                "--gen-length",
                "8",
                "--block-length",
                "8",
                "--json",
            ]
        )
        == 0
    )
    [row] = json.loads(capsys.readouterr().out)
    assert row["nfe"] == 8
