"""Hostile inputs for ``dllm generate`` / ``dllm speculate``, run in one process for speed.

``python tests/_cli_battery.py OUT.json`` builds the broken checkpoint folders in a temporary
directory, calls ``dllm.cli.main`` once per case with stdout / stderr captured, and writes one record
per case: exit code, stdout, stderr (an exception escaping ``main`` is written there as the
traceback a user would see). tests/test_cli_hardening.py runs it in a subprocess and checks the records;
the same script run against an older checkout gives the "before" column of issue 19's table.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
import tempfile
import traceback
from pathlib import Path

from _models import edit_config

M = "tiny-llada"
FAST = ["--gen-length", "8", "--block-length", "8"]

# (id, argv, message the error must contain); {tmp} is the folder of broken checkpoints
CASES = [
    ("bad-sampler", ["generate", M, "copy: Ava\\n", "--sampler", "nope"], "unknown sampler 'nope'"),
    (
        "zero-max-batch-speculate",
        ["speculate", "tiny-ar", "copy: Ava\\n", "--max-batch", "0"],
        "--max-batch=0 must be at least 1",
    ),
    (
        "more-steps-than-tokens",  # issue 26: ran 16 steps without a word
        ["generate", M, "copy: Ava\\n", "--steps", "64", "--gen-length", "16", "--block-length", "16"],
        "steps=64 is more than gen_length=16",
    ),
    (
        "length-changing-drafter-sampler",  # issue 26: "proposed 7 tokens for k=1" mid-run
        ["speculate", "tiny-ar", "copy: Ava\\n", "--drafter", "dllm", "--drafter-model", "tiny-dream"]
        + ["-d", "sampler=daedal"],
        "sampler 'daedal' changes the canvas length",
    ),
    (
        "zero-max-batch",
        ["generate", M, "copy: Ava\\n", "--max-batch", "0"],
        "--max-batch=0 must be at least 1",
    ),
    (
        "nan-threshold",
        ["generate", M, "copy: Ava\\n", "--sampler", "fast-dllm", "--threshold", "nan"],
        "threshold",
    ),
    ("inf-temperature", ["generate", M, "copy: Ava\\n", "--temperature", "inf"], "temperature"),
    ("nan-cfg-scale", ["generate", M, "copy: Ava\\n", "--cfg-scale", "nan"], "cfg_scale"),
    (
        "threshold-not-a-number",
        ["generate", M, "copy: Ava\\n", "--sampler", "fast-dllm", "-p", "threshold=abc"],
        "threshold",
    ),
    (
        "unknown-sampler-param",
        ["generate", M, "copy: Ava\\n", "-p", "radius=2"],
        "has no parameter(s) ['radius']",
    ),
    ("sampler-arg-without-equals", ["generate", M, "copy: Ava\\n", "-p", "threshold"], "expects KEY=VALUE"),
    ("bad-cache", ["generate", M, "copy: Ava\\n", "--cache", "warp"], "unknown cache 'warp'"),
    ("gen-length-zero", ["generate", M, "copy: Ava\\n", "--gen-length", "0"], "gen_length=0"),
    (
        "block-not-dividing",
        ["generate", M, "copy: Ava\\n", "--gen-length", "64", "--block-length", "24"],
        "not a multiple of block_length=24",
    ),
    ("negative-steps", ["generate", M, "copy: Ava\\n", "--steps", "-1"], "steps=-1"),
    ("huge-seed", ["generate", M, "copy: Ava\\n", "--seed", str(2**64)], "seed"),
    ("bad-dtype", ["generate", M, "copy: Ava\\n", "--dtype", "float8"], "dtype 'float8' is not supported"),
    ("bad-device", ["generate", M, "copy: Ava\\n", "--device", "nonsense"], "device 'nonsense'"),
    ("negative-threads", ["generate", M, "copy: Ava\\n", "--threads", "-1"], "--threads=-1"),
    ("chat-without-template", ["generate", M, "copy: Ava\\n", "--chat", *FAST], "no chat template"),
    ("empty-prompt", ["generate", M, "", *FAST], "empty prompt: the prompt is empty"),
    ("whitespace-prompt", ["generate", M, "   ", *FAST], "the prompt is only whitespace"),
    ("empty-prompt-in-batch", ["generate", M, "copy: Ava\\n", "", *FAST], "prompt 1 (of 2) is empty"),
    ("non-utf8-prompt", ["generate", M, "copy: \udcff\udcfe", *FAST], "undecodable byte 0xff"),
    ("mask-token-text", ["generate", M, "copy: Ava <|mask|> Cole\\n", *FAST], "mask token '<|mask|>'"),
    (
        "eos-token-text-in-batch",
        ["generate", M, "copy: Ava\\n", "copy: <|endoftext|>\\n", *FAST],
        "prompt 1 (of 2) contains the text of the special token '<|endoftext|>'",
    ),
    (
        "prompt-too-long",
        ["generate", M, "copy: " + "Ava Cole, " * 400, *FAST],
        "exceeds the context limit of 1024",
    ),
    (
        "missing-checkpoint-dir",
        ["generate", "/nonexistent/dllm-checkpoint", "copy: Ava\\n"],
        "model '/nonexistent/dllm-checkpoint' not found",
    ),
    ("checkpoint-is-a-file", ["generate", "{tmp}/config-only/config.json", "copy: Ava\\n"], "is a file"),
    ("no-weights", ["generate", "{tmp}/config-only", "copy: Ava\\n", *FAST], "no weights in"),
    (
        "truncated-safetensors",
        ["generate", "{tmp}/truncated", "copy: Ava\\n", *FAST],
        "model.safetensors: cannot read the safetensors weights, the file is truncated or corrupted",
    ),
    (
        "invalid-config-json",
        ["generate", "{tmp}/bad-json", "copy: Ava\\n", *FAST],
        "config.json is not valid JSON",
    ),
    (
        "config-missing-d_model",
        ["generate", "{tmp}/no-d_model", "copy: Ava\\n", *FAST],
        "required field 'd_model' is missing",
    ),
    (
        "config-zero-heads",
        ["generate", "{tmp}/zero-heads", "copy: Ava\\n", *FAST],
        "field n_heads=0 must be positive",
    ),
    ("nan-weights", ["generate", "{tmp}/nan", "copy: Ava\\n", *FAST], "non-finite value(s)"),
    (
        "gpt2-config-over-llada-weights",
        ["generate", "{tmp}/gpt2", "copy: Ava\\n", *FAST],
        "autoregressive model (model_type='gpt2')",
    ),
    (
        "autoregressive-model",
        ["generate", "tiny-ar", "copy: Ava\\n", *FAST],
        "'tiny-ar' is an autoregressive model",
    ),
    ("json-with-a-value", ["generate", M, "copy: Ava\\n", "--json=yes"], "ignored explicit argument 'yes'"),
    ("no-prompt", ["generate", M], "the following arguments are required: prompt"),
    ("speculate-empty-prompt", ["speculate", "tiny-ar", "", "--max-new-tokens", "4"], "empty prompt"),
    (
        "speculate-negative-threads",
        ["speculate", "tiny-ar", "copy: Ava\\n", "--threads", "-2"],
        "--threads=-2",
    ),
    (
        "speculate-mask-token-text",
        ["speculate", "tiny-ar", "copy: <|mask|>\\n", "--max-new-tokens", "4"],
        "contains the text of the special token '<|mask|>'",
    ),
    ("speculate-bad-drafter", ["speculate", "tiny-ar", "copy: Ava\\n", "--drafter", "nope"], "nope"),
    (
        "speculate-gpt2-over-llada",
        ["speculate", "{tmp}/gpt2", "copy: Ava\\n", "--max-new-tokens", "4"],
        "do not match the architecture config.json declares (model_type='gpt2')",
    ),
]


def make_folders(tmp: Path) -> None:
    """The broken checkpoint folders the cases name: copies of the shipped tiny-llada, each broken one way."""
    from safetensors.torch import load_file, save_file

    from dllm.zoo import shipped_models

    source = Path(shipped_models()[M])

    def copy(name: str) -> Path:
        return Path(shutil.copytree(source, tmp / name))

    (tmp / "config-only").mkdir()
    shutil.copy(source / "config.json", tmp / "config-only" / "config.json")
    weights = copy("truncated") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    (copy("bad-json") / "config.json").write_text('{"d_model": 128,')
    edit_config(copy("no-d_model"), d_model=None)
    edit_config(copy("zero-heads"), n_heads=0)
    nan = copy("nan") / "model.safetensors"
    state = load_file(str(nan))
    save_file({k: v.fill_(float("nan")) for k, v in state.items()}, str(nan))
    edit_config(copy("gpt2"), model_type="gpt2", architectures=["GPT2LMHeadModel"])


def run(argv: list[str]) -> dict:
    from dllm.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse, or SystemExit("message"): Python prints the message, exits 1
            if isinstance(exc.code, int):
                code = exc.code
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:  # what a user would see: Python prints the traceback and exits 1
            traceback.print_exc(file=sys.stderr)
            code = 1
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def main(out_path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        make_folders(Path(tmp))
        records = {}
        for name, argv, _ in CASES:
            records[name] = run([a.replace("{tmp}", tmp) for a in argv])
            records[name]["stderr"] = records[name]["stderr"].replace(tmp, "{tmp}")
    Path(out_path).write_text(json.dumps(records, indent=1, ensure_ascii=True))


if __name__ == "__main__":
    main(sys.argv[1])
