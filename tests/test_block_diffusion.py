"""Block-diffusion models (Fast-dLLM v2 layout): parity with the reference modeling code, loading errors,
the training layout, the block-cache policy and the shipped tiny-fdllm2 (fixtures: fixtures/parity/README.md)."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dllm
from dllm.models.transformer import KVStore, Transformer

FIXTURE = Path(__file__).parent / "fixtures" / "parity" / "fast_dllm_v2"
TOL = 1e-4


@pytest.fixture(scope="module")
def ref():
    return dllm.load(FIXTURE, tokenizer=False), load_file(str(FIXTURE / "expected.safetensors"))


def _unshifted(model, ids, **kwargs):
    """The reference's raw output rows (row j projected), for every column but the last."""
    length = ids.shape[1]
    targets = (torch.arange(length) + 1).clamp(max=length - 1).expand(ids.shape[0], -1)
    with torch.no_grad():
        return model.net(ids, logits_for=targets, **kwargs)[:, : length - 1]


# ---------------------------------------------------------------------------------------- model layer
def test_fixture_config_is_read_as_block_diffusion(ref):
    model, _ = ref
    cfg = model.config
    assert (cfg.arch, cfg.block_size, model.mask_id, model.shift, cfg.n_kv_heads, cfg.qkv_bias) == (
        "fast_dllm_v2", 8, 250, 1, 2, True)


def test_multi_block_prefill_matches_reference(ref):
    """20 tokens = blocks of 8, 8 and 4: block-causal attention over absolute positions."""
    model, expected = ref
    ids = expected["prefill_input_ids"]
    err = (_unshifted(model, ids) - expected["prefill_logits"][:, :-1]).abs().max().item()
    assert err < TOL, f"prefill max abs logit error {err:.2e}"


def test_block_cache_path_matches_reference(ref):
    """Prefix cache (16 prompt tokens), one block forward over it, then a sub-block overwrite in place."""
    model, expected = ref
    prompt, block, sub = expected["cache_prompt_ids"], expected["cache_block_ids"], expected["cache_subblock_ids"]
    kv = KVStore.empty(model.config, 2, 24, torch.float32, "cpu")
    targets = (torch.arange(16, 24) + 1).clamp(max=23).expand(2, -1)
    with torch.no_grad():
        block_logits = model.net(torch.cat([prompt, block], 1), kv=kv, logits_for=targets)
    assert (block_logits[:, :7] - expected["block_logits"][:, :7]).abs().max().item() < TOL
    # K is stored after RoPE, position-indexed: the prefix rows are the reference's DynamicCache
    assert (kv.k[0][:, :, :16] - expected["prefix_k_layer0"]).abs().max().item() < TOL
    assert (kv.v[1][:, :, :16] - expected["prefix_v_layer1"]).abs().max().item() < TOL
    assert (kv.k[1][:, :, 16:] - expected["block_k_layer1"]).abs().max().item() < TOL
    query = torch.arange(20, 24).expand(2, -1)
    with torch.no_grad():
        sub_logits = model.net(torch.cat([prompt, sub], 1), kv=kv, query=query,
                               logits_for=torch.tensor([21, 22, 23]).expand(2, -1))
    assert (sub_logits - expected["subblock_logits"][:, :3]).abs().max().item() < TOL
    assert (kv.k[1][:, :, 16:] - expected["subblock_k_layer1"]).abs().max().item() < TOL


def test_block_as_large_as_the_canvas_is_plain_masked_diffusion(ref):
    """With one block covering everything the block-causal mask is full attention: the same weights
    in the Dream layout give the same logits."""
    model, expected = ref
    ids = expected["prefill_input_ids"]
    big = Transformer(model.config.__class__(**{**model.config.to_dict(), "block_size": 64}))
    big.load_state_dict(model.net.state_dict())
    dream = Transformer(model.config.__class__(**{**model.config.to_dict(), "arch": "dream", "block_size": None}))
    dream.load_state_dict(model.net.state_dict())
    with torch.no_grad():
        assert torch.allclose(big(ids), dream(ids), atol=1e-6)
        assert not torch.allclose(model.net(ids), dream(ids), atol=1e-3)  # bd 8 does differ


def test_native_round_trip_keeps_bd_size(ref, tmp_path):
    model, expected = ref
    dllm.models.loading.save_pretrained(model.net, tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (raw["model_type"], raw["bd_size"], raw["architectures"]) == ("Fast_dLLM_Qwen", 8, ["Fast_dLLM_QwenForCausalLM"])
    again = dllm.load(tmp_path / "m", tokenizer=False)
    ids = expected["prefill_input_ids"]
    assert torch.equal(_unshifted(again, ids), _unshifted(model, ids))


# ---------------------------------------------------------------------------------------- bad input
def _copy_fixture(tmp_path, **changes):
    folder = tmp_path / "fd"
    shutil.copytree(FIXTURE, folder)
    raw = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    (folder / "config.json").write_text(json.dumps(raw))
    return folder


def test_block_size_the_checkpoint_was_not_trained_with():
    with pytest.raises(ValueError, match=r"block_size=16, but the checkpoint was trained with bd_size=8"):
        dllm.load(FIXTURE, tokenizer=False, block_size=16)
    assert dllm.load(FIXTURE, tokenizer=False, block_size=8).config.block_size == 8


def test_checkpoint_without_bd_size_loaded_as_block_diffusion(tmp_path):
    with pytest.raises(ValueError, match=r"has no bd_size: it was not trained with block-causal attention"):
        dllm.load("tiny-dream", block_size=32)
    with pytest.raises(ValueError, match=r"has no bd_size"):
        dllm.load("tiny-ar", block_size=32)
    folder = _copy_fixture(tmp_path, bd_size=None)
    with pytest.raises(ValueError, match=r"Fast-dLLM v2 model .* has no bd_size"):
        dllm.load(folder, tokenizer=False)


@pytest.mark.parametrize("value", [0, -8, 8.5, "8", True])
def test_bad_bd_size_values(tmp_path, value):
    folder = _copy_fixture(tmp_path, bd_size=value)
    with pytest.raises(ValueError, match=r"bd_size"):
        dllm.load(folder, tokenizer=False)


def test_mask_token_added_to_the_tokenizer_is_found(ref, tmp_path):
    """Fast-dLLM v2's config has no mask id: ``|<MASK>|`` is an added special token of its tokenizer."""
    from transformers import AutoTokenizer

    from dllm.models.loading import save_pretrained
    from dllm.zoo import tokenizer_dir

    model, _ = ref
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    tok.mask_token = None
    tok.add_special_tokens({"additional_special_tokens": ["|<MASK>|"]})
    cfg = model.config.__class__(**{**model.config.to_dict(), "vocab_size": len(tok), "mask_token_id": None,
                                    "eos_token_ids": [tok.eos_token_id], "pad_token_id": 0, "bos_token_id": 1})
    torch.manual_seed(0)
    save_pretrained(Transformer(cfg), tmp_path / "m", tokenizer=tok)
    assert json.loads((tmp_path / "m" / "config.json").read_text()).get("mask_token_id") is None
    assert dllm.load(tmp_path / "m").mask_id == tok.convert_tokens_to_ids("|<MASK>|") == len(tok) - 1


# ---------------------------------------------------------------------------------------- training layout
def test_training_layout_halves_match_inference_forwards(ref):
    """[x_t ; x_0] with the block-diffusion training mask: the x_0 half is a plain block-causal forward of
    x_0, and x_t's block b sees exactly x_0's earlier blocks plus its own noisy block."""
    from dllm.zoo.fdllm2 import training_mask

    model, expected = ref
    bd = model.config.block_size
    x0 = expected["prefill_input_ids"][:, :16].clone()
    x0[x0 == 250] = 7
    xt = x0.clone()
    xt[:, [3, 9, 12]] = 250
    valid = torch.ones_like(x0, dtype=torch.bool)
    pos = torch.arange(16).expand(2, -1)
    with torch.no_grad():
        both = model.net(torch.cat([xt, x0], 1), torch.cat([pos, pos], 1), torch.cat([valid, valid], 1),
                         logits_for=torch.arange(32).expand(2, -1) + 1 - 1, attn_mask=training_mask(valid, bd))
        clean = model.net(x0)
        assert torch.allclose(both[:, 17:], clean[:, 1:], atol=1e-5)  # shifted logits of the x_0 half
        mixed = torch.cat([x0[:, :8], xt[:, 8:16]], 1)  # block 1 noisy, block 0 clean
        # row j of x_t's block 1 (targets 9..15) = a block-causal forward of [x_0 block 0 ; x_t block 1]
        assert torch.allclose(both[:, 9:16], model.net(mixed)[:, 9:16], atol=1e-5)
