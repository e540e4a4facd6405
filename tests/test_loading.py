"""Saving and loading native checkpoint folders, and the CLI on a real folder with a tokenizer."""

import json

import pytest
import torch
from _models import random_model
from safetensors import safe_open
from transformers import AutoTokenizer

import dllm
from dllm.cli import main as cli_main
from dllm.models import save_pretrained
from dllm.zoo import tokenizer_dir

TOKENIZER_DIR = tokenizer_dir()


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))


@pytest.fixture(params=["llada", "dream"])
def folder(request, tmp_path, tokenizer):
    special = dict(
        mask_token_id=tokenizer.mask_token_id,
        eos_token_ids=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    model = random_model(request.param, vocab=len(tokenizer), **special)
    save_pretrained(model.net, tmp_path, tokenizer=tokenizer)
    return tmp_path, model


def test_round_trip_keeps_logits_and_token_facts(folder, tokenizer):
    path, original = folder
    loaded = dllm.load(path)
    ids = torch.tensor([loaded.encode("copy: Emma Stone, Liam Park\n")])
    with torch.no_grad():
        assert torch.equal(loaded.net(ids), original.net(ids))
    assert loaded.mask_id == tokenizer.mask_token_id
    assert tokenizer.eos_token_id in loaded.eos_ids
    assert loaded.bos_id == tokenizer.bos_token_id and loaded.encode("x")[0] == loaded.bos_id


def test_saved_folder_uses_native_names(folder):
    path, original = folder
    config = json.loads((path / "config.json").read_text())
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    if original.config.arch == "llada":
        assert {"d_model", "n_layers", "n_heads", "mlp_hidden_size", "rope_theta", "mask_token_id"} <= set(
            config
        )
        assert (
            "model.transformer.blocks.0.q_proj.weight" in names and "model.transformer.ff_out.weight" in names
        )
    else:
        assert {"hidden_size", "num_hidden_layers", "num_key_value_heads", "mask_token_id"} <= set(config)
        assert "model.layers.0.self_attn.q_proj.bias" in names and "lm_head.weight" in names


def test_text_generation_and_batch_of_strings(folder):
    path, _ = folder
    model = dllm.load(path)
    results = dllm.generate(
        model,
        ["copy: Emma Stone\n", "reverse: Ava Cole, Max Hill\n"],
        sampler="fast-dllm",
        gen_length=16,
        block_length=8,
    )
    assert len(results) == 2 and all(isinstance(r.text, str) and len(r.canvas) == 16 for r in results)


def test_cli_generate_json_and_steps(folder, capsys):
    path, _ = folder
    assert (
        cli_main(
            [
                "generate",
                str(path),
                "copy: Emma Stone\\n",
                "--sampler",
                "fast-dllm",
                "--threshold",
                "0.5",
                "--gen-length",
                "16",
                "--block-length",
                "8",
                "--json",
            ]
        )
        == 0
    )
    [payload] = json.loads(capsys.readouterr().out)  # a list, one object per prompt, even for one prompt
    assert payload["prompt"] == "copy: Emma Stone\n" and payload["nfe"] >= 2
    assert payload["tokens_per_forward"] == pytest.approx(payload["gen_tokens"] / payload["nfe"], abs=1e-3)
    assert (
        cli_main(
            [
                "generate",
                str(path),
                "copy: Emma Stone\\n",
                "--sampler",
                "llada",
                "--gen-length",
                "8",
                "--block-length",
                "8",
                "--show-steps",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "unmasking order" in out and "NFE=8" in out


def test_chat_needs_a_chat_template(folder):
    path, _ = folder
    model = dllm.load(path)
    with pytest.raises(ValueError, match="has no chat template"):
        dllm.generate(model, "copy: Emma Stone\n", chat=True, gen_length=8, block_length=8)
    model.tokenizer.chat_template = "{% for m in messages %}<|startoftext|>{{ m['content'] }}{% endfor %}"
    assert model.encode("hi", chat=True) == model.encode("hi")


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_random_checkpoint_builder_makes_a_loadable_folder(arch, tmp_path):
    from dllm.zoo.random_checkpoint import build

    model = dllm.load(build(arch, tmp_path / arch, seed=1))
    assert model.config.arch == arch and model.mask_id == model.tokenizer.mask_token_id
    [result] = dllm.generate(model, "copy: Emma Stone\n", gen_length=8, block_length=8)
    assert len(result.canvas) == 8


def test_causal_lm_folder_keeps_its_declared_tokenizer_class(tmp_path):
    """transformers 5 would build a Qwen2Tokenizer for a qwen2 folder; the folder says
    PreTrainedTokenizerFast."""
    import shutil

    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dllm.zoo.train import TOKENIZER_DIR, load_tokenizer

    cfg = Qwen2Config(
        vocab_size=936,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        eos_token_id=2,
        bos_token_id=1,
        pad_token_id=0,
    )
    Qwen2ForCausalLM(cfg).save_pretrained(str(tmp_path))
    for src in TOKENIZER_DIR.iterdir():
        shutil.copyfile(src, tmp_path / src.name)
    model = dllm.load(tmp_path)
    text = "sudoku: 0 3 0 2, 2 1 3 4\nmath: 123+45\n"
    assert model.tokenizer.encode(text, add_special_tokens=False) == load_tokenizer().encode(text)


def test_bad_devices_are_named_before_any_tensor_moves(folder):
    from dllm.models.loading import resolve_device

    folder, _ = folder
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'gpu0' is not a torch device"):
        dllm.load(folder, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda': torch sees no CUDA GPU here"):
            dllm.load(folder, device="cuda")
    else:
        with pytest.raises(ValueError, match="CUDA device"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_cli_sampler_flags_come_from_the_configs(folder, capsys):
    import dataclasses

    from dllm.cli import _parser, sampler_flags

    flags = sampler_flags()
    assert {"threshold", "factor", "remasking", "radius", "relaxed_threshold", "end_of_text"} <= set(flags)
    assert flags["threshold"][0] is float and "fast-dllm" in flags["threshold"][1]
    for (
        name
    ) in dllm.samplers.names():  # every plain field of every sampler has its flag (model: the positional)
        for field in dataclasses.fields(dllm.samplers.cls(name)):
            assert field.name in flags or field.name in ("model", "inner", "inner_params", "delimiters"), (
                field.name
            )
    args = _parser().parse_args(
        ["generate", "m", "p", "--radius", "2", "--early-stop", "true", "--remasking", "random"]
    )
    assert (args.radius, args.early_stop, args.remasking, args.threshold) == (2, True, "random", None)
    path, _ = folder
    assert (
        cli_main(
            [
                "generate",
                str(path),
                "copy: Emma Stone\\n",
                "--sampler",
                "localleap",
                "--radius",
                "2",
                "--threshold",
                "0.8",
                "--gen-length",
                "8",
                "--block-length",
                "8",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["nfe"] >= 1
    assert (
        cli_main(
            ["generate", str(path), "hi", "--sampler", "fast-dllm", "--threshold", "0.9", "--factor", "1"]
        )
        == 2
    )
    assert "exactly one of threshold or factor" in capsys.readouterr().err
    assert cli_main(["generate", str(path), "hi", "--sampler", "llada", "--radius", "2"]) == 2
    assert "has no parameter(s) ['radius']" in capsys.readouterr().err
