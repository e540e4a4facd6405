"""``dllm speculate`` and ``dllm drafters``: output, JSON, round rendering and errors (exit code 2)."""

import json

import pytest

import dllm
from dllm.cli import main

PROMPT = "copy: Nora Diaz, Oscar Cook, Noah Clark\n"  # held out of the tiny models' training tasks
ARG = PROMPT.replace("\n", "\\n")  # as typed on the command line
TOKENS = "16"


def error_line(err: str) -> str:
    """The ``error: ...`` line (model loading may print progress bars to stderr before it)."""
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]
    return line


@pytest.fixture(scope="module")
def greedy_text():
    [result] = dllm.speculate("tiny-ar", PROMPT, max_new_tokens=int(TOKENS))
    return result.text


@pytest.mark.parametrize("drafter", [["--drafter", "onepass"], ["--drafter", "ar"], ["--drafter", "none"]])
def test_plain_output_is_the_greedy_text(capsys, greedy_text, drafter):
    assert main(["speculate", "tiny-ar", ARG, *drafter, "--max-new-tokens", TOKENS]) == 0
    out = capsys.readouterr().out
    assert greedy_text.strip() and f"output {greedy_text}" in out
    assert f"prompt {PROMPT!r}" in out
    for field in (
        "drafter=",
        "rounds=",
        "tau=",
        "tau+bonus=",
        "tokens/verifier-forward=",
        "acceptance=",
        "verifier-forwards=",
        "drafter-forwards=",
        "tok/s",
        "draft ",
        "verify ",
        "other ",
    ):
        assert field in out
    assert f"drafter={drafter[1]}" in out


def test_deer_with_tiny_deer_prints_the_greedy_answer_and_the_speedup(capsys, greedy_text):
    assert (
        main(
            [
                "speculate",
                "tiny-ar",
                ARG,
                "--drafter",
                "deer",
                "--drafter-model",
                "tiny-deer",
                "--max-new-tokens",
                TOKENS,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"output {greedy_text}" in out and "tau=" in out
    assert "over plain AR decoding" in out and "output identical to plain AR decoding" in out
    assert (
        main(
            [
                "speculate",
                "tiny-ar",
                ARG,
                "--drafter",
                "deer",
                "--no-baseline",
                "--max-new-tokens",
                TOKENS,
                "--json",
            ]
        )
        == 0
    )
    assert "baseline" not in json.loads(capsys.readouterr().out)[0]
    assert main(["speculate", "tiny-ar", ARG, "--drafter", "none", "--max-new-tokens", TOKENS]) == 0
    assert "plain AR decoding (" not in capsys.readouterr().out  # no drafter: nothing to compare


def test_json_one_prompt_and_a_batch(capsys, greedy_text):
    assert (
        main(
            [
                "speculate",
                "tiny-ar",
                ARG,
                "--drafter",
                "onepass",
                "--length",
                "fixed",
                "-l",
                "k=4",
                "--max-new-tokens",
                TOKENS,
                "--json",
            ]
        )
        == 0
    )
    [payload] = json.loads(capsys.readouterr().out)  # a list, one object per prompt, even for one prompt
    assert payload["prompt"] == PROMPT and payload["drafter"] == "onepass" and payload["length"] == "fixed"
    assert payload["text"] == greedy_text
    assert payload["tau"] > 0 and payload["tokens_per_verifier_forward"] > 1
    assert "trace" not in payload

    assert (
        main(
            [
                "speculate",
                "tiny-ar",
                ARG,
                "sort: pear, fig, apple\\n",
                "--drafter",
                "ar",
                "--max-new-tokens",
                TOKENS,
                "--json",
                "--show-rounds",
            ]
        )
        == 0
    )
    batch = json.loads(capsys.readouterr().out)
    assert isinstance(batch, list) and len(batch) == 2 and batch[0]["text"] == greedy_text
    assert all(row["drafter"] == "ar" and len(row["trace"]) == row["rounds"] for row in batch)


def test_max_batch_gives_every_prompt_its_run_alone(capsys):
    prompts = [ARG, "sort: pear, fig, apple\\n", "copy: Ava Cole, Max Hill\\n"]
    argv = ["speculate", "tiny-ar", *prompts, "--drafter", "deer", "--max-new-tokens", TOKENS, "--json"]
    assert main(argv) == 0
    together = json.loads(capsys.readouterr().out)
    assert main(argv + ["--max-batch", "1"]) == 0
    one_at_a_time = json.loads(capsys.readouterr().out)
    keys = ("ids", "rounds", "accepted", "verifier_forwards")
    assert [[r[k] for k in keys] for r in together] == [[r[k] for k in keys] for r in one_at_a_time]


def test_show_rounds(capsys):
    assert (
        main(
            [
                "speculate",
                "tiny-ar",
                ARG,
                "--drafter",
                "ar",
                "--drafter-model",
                "tiny-ar-draft",
                "--max-new-tokens",
                TOKENS,
                "--show-rounds",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "legend:" in out and "accepted" in out and "correction" in out and "+bonus" in out
    rounds = [line for line in out.splitlines() if line.lstrip().startswith(("1 k=", "2 k="))]
    assert rounds and "Nora" in out.split("legend:")[1]


def test_drafters_lists_plugins_and_length_controllers(capsys):
    assert main(["drafters"]) == 0
    out = capsys.readouterr().out
    for name in ("ar", "diffuspec", "dllm", "onepass", "fixed", "heuristic", "adl", "k_max", "tiny-dream"):
        assert name in out
    assert out.index("draft-length controllers") > out.index("onepass")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--drafter", "nope"], "unknown drafter 'nope'"),
        (["--drafter", "diffuspec", "--drafter-model", "tiny-ar"], "needs a diffusion LM"),
        (["--drafter", "onepass", "--length", "fixed", "-l", "k=0"], "fixed.k=0 is out of range"),
        (["--drafter", "diffuspec", "-l", "k_min=0"], "adl.k_min=0 is out of range"),
        (["--drafter", "onepass", "--length", "nope"], "unknown length controller 'nope'"),
        (["--drafter", "diffuspec", "-d", "beam=0"], "diffuspec.beam=0 is out of range"),
        (["--drafter", "diffuspec", "-d", 'beam="x"'], "bad drafter or length-controller parameter"),
        (["--drafter", "onepass", "-d", "colour=1"], "has no parameter(s) ['colour']"),
        (
            ["--drafter", "onepass", "--drafter-model", "tiny-dream", "-d", "model=tiny-llada"],
            "model is given twice",
        ),
        (["--drafter-model", "tiny-dream"], "--drafter-model given without a drafter"),
        (["--temperature", "-1"], "temperature=-1.0 is out of range"),
        (["--top-p", "0"], "top_p=0.0 is out of range"),
    ],
)
def test_errors_exit_2(capsys, argv, message):
    assert main(["speculate", "tiny-ar", ARG, "--max-new-tokens", TOKENS, *argv]) == 2
    assert message in error_line(capsys.readouterr().err)


def test_diffusion_verifier_is_an_error(capsys):
    assert main(["speculate", "tiny-dream", ARG, "--drafter", "onepass", "--max-new-tokens", TOKENS]) == 2
    err = error_line(capsys.readouterr().err)
    assert "must be an autoregressive (causal) LM" in err and "tiny-dream" in err


@pytest.mark.parametrize("drafter", ["deer", "diffuspec", "ar"])
def test_the_cli_drafts_with_the_drafters_own_length_controller(capsys, drafter):
    """No --length: the drafter's own controller with its settings (DEER's k=32), as ``dllm.speculate``
    picks it; the CLI used to build a default instance of its type (DEER drafted with k=8)."""
    argv = [
        "speculate",
        "tiny-ar",
        ARG,
        "--drafter",
        drafter,
        "--max-new-tokens",
        "24",
        "--json",
        "--no-baseline",
    ]
    assert main(argv) == 0
    [cli] = json.loads(capsys.readouterr().out)
    [api] = dllm.speculate("tiny-ar", PROMPT, drafter=drafter, max_new_tokens=24)
    assert (cli["ids"], cli["rounds"], cli["drafted"]) == (api.ids, api.rounds, api.drafted)
