"""Bad input gets a clear error that names the problem."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _models import random_model

import dllm
from dllm.cli import main as cli_main
from dllm.zoo import tokenizer_dir

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
TOKENIZER = tokenizer_dir()


@pytest.mark.parametrize(
    "name,params,match",
    [
        ("nope", {}, r"unknown sampler 'nope'; known: .*fast-dllm.*llada"),
        ("fast-dllm", {"threshold": 1.5}, r"fast-dllm.threshold=1.5 is out of range; allowed \(0.0, 1.0\]"),
        ("fast-dllm", {"threshold": 0.0}, r"fast-dllm.threshold=0.0 is out of range"),
        ("fast-dllm", {"factor": -1.0}, r"fast-dllm.factor=-1.0 is out of range"),
        ("fast-dllm", {"threshold": 0.8, "factor": 1.0}, r"exactly one of threshold or factor"),
        ("fast-dllm", {"threshold": 0.9, "factor": 1.0}, r"threshold=0.9 and factor=1.0"),
        ("llada", {"remasking": "greedy"}, r"llada.remasking='greedy' is not one of"),
        ("llada", {"threshold": 0.9}, r"sampler 'llada' has no parameter\(s\) \['threshold'\]"),
    ],
)
def test_sampler_errors(name, params, match):
    with pytest.raises(ValueError, match=match):
        dllm.samplers.get(name, **params)


def test_unknown_cache():
    with pytest.raises(ValueError, match=r"unknown cache 'warp'; known: .*none"):
        dllm.caches.get("warp")


@pytest.mark.parametrize(
    "settings,match",
    [
        ({"gen_length": 0}, r"GenerationConfig.gen_length=0 is out of range"),
        ({"gen_length": 64, "block_length": 24}, r"gen_length=64 is not a multiple of block_length=24"),
        ({"gen_length": 64, "block_length": 128}, r"block_length=128 is out of range; allowed \[1, 64\]"),
        (
            {"gen_length": 64, "block_length": 16, "steps": 6},
            r"steps=6 is not a multiple of the number of blocks",
        ),
        ({"temperature": -0.1}, r"temperature=-0.1 is out of range"),
        ({"cfg_scale": -1.0}, r"cfg_scale=-1.0 is out of range"),
    ],
)
def test_generation_config_errors(settings, match):
    with pytest.raises(ValueError, match=match):
        dllm.GenerationConfig(**settings)


def test_prompt_longer_than_the_context():
    model = random_model("llada")  # context 256
    with pytest.raises(
        ValueError, match=r"prompt of 250 tokens \+ gen_length 32 exceeds the context limit of 256"
    ):
        dllm.generate(model, [[5] * 250], gen_length=32, block_length=32)
    with pytest.raises(ValueError, match=r"exceeds the context limit of 40"):
        dllm.generate(model, [[5] * 10], gen_length=32, block_length=32, max_length=40)


def test_bad_prompts():
    model = random_model("llada")
    with pytest.raises(ValueError, match="empty prompt"):
        dllm.generate(model, [[]], gen_length=8, block_length=8)
    with pytest.raises(ValueError, match=r"token ids \[999\] are outside the vocabulary of size 64"):
        dllm.generate(model, [[1, 999]], gen_length=8, block_length=8)
    with pytest.raises(ValueError, match="loaded without a tokenizer"):
        dllm.generate(model, "text prompt", gen_length=8, block_length=8)


def test_missing_model_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model 'no-such-model' not found"):
        dllm.load("no-such-model")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        dllm.load(tmp_path)
    shutil.copy(FIXTURES / "dream" / "config.json", tmp_path / "config.json")
    with pytest.raises(FileNotFoundError, match="no weights in"):
        dllm.load(tmp_path, tokenizer=False)


def test_missing_shard(tmp_path):
    for f in (FIXTURES / "llada").iterdir():
        if not f.name.startswith("model-00002"):
            shutil.copy(f, tmp_path / f.name)
    with pytest.raises(FileNotFoundError, match="shard model-00002-of-00002.safetensors listed in"):
        dllm.load(tmp_path, tokenizer=False)


def test_unsupported_architecture(tmp_path):
    config = json.loads((FIXTURES / "llada" / "config.json").read_text())
    config.update(model_type="mamba", architectures=["MambaForCausalLM"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"unsupported architecture: model_type='mamba'"):
        dllm.load(tmp_path, tokenizer=False)


def test_tokenizer_without_mask_token(tmp_path):
    for f in (FIXTURES / "dream").iterdir():
        shutil.copy(f, tmp_path / f.name)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["mask_token_id"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    tok = json.loads((TOKENIZER / "tokenizer_config.json").read_text())
    for name in ("tokenizer.json", "special_tokens_map.json"):
        shutil.copy(TOKENIZER / name, tmp_path / name)
    special = json.loads((tmp_path / "special_tokens_map.json").read_text())
    special.pop("mask_token")
    (tmp_path / "special_tokens_map.json").write_text(json.dumps(special))
    tok.pop("mask_token", None)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tok))
    with pytest.raises(ValueError, match="defines a mask token"):
        dllm.load(tmp_path)


def test_weights_that_do_not_match_the_config(tmp_path):
    for f in (FIXTURES / "dream").iterdir():
        shutil.copy(f, tmp_path / f.name)
    config = json.loads((tmp_path / "config.json").read_text())
    config["intermediate_size"] = 128
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        ValueError,
        match=r"tensor model.layers.0.mlp.down_proj.weight has shape \(64, 160\),"
        r" config.json implies \(64, 128\)",
    ):
        dllm.load(tmp_path, tokenizer=False)


def test_cli_reports_errors_without_traceback(capsys):
    assert cli_main(["generate", "no-such-model", "hi"]) == 2
    assert "error: model 'no-such-model' not found" in capsys.readouterr().err
    assert cli_main(["generate", "no-such-model", "hi", "--sampler", "fast-dllm", "--threshold", "2"]) == 2
    assert "threshold=2.0 is out of range" in capsys.readouterr().err


def test_import_does_not_pull_optional_dependencies():
    code = (
        "import sys, dllm;"
        " print([m for m in ('gradio', 'triton', 'lm_eval', 'matplotlib') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
