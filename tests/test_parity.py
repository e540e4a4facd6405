"""Our transformer reproduces the reference modeling code's logits (fixtures: see
fixtures/parity/README.md)."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import dllm

FIXTURES = Path(__file__).parent / "fixtures" / "parity"
TOL = 1e-4


def _load(arch):
    model = dllm.load(FIXTURES / arch, tokenizer=False)
    return model, load_file(str(FIXTURES / arch / "expected.safetensors"))


def _raw_logits(model, ids, **kwargs):
    """The reference's unshifted output: hidden state j projected to the vocabulary."""
    length = ids.shape[1]
    targets = torch.arange(length).expand(ids.shape[0], -1) + model.shift
    with torch.no_grad():
        logits = model.net(ids, logits_for=targets.clamp(max=length - 1), **kwargs)
    return logits[:, : length - model.shift] if model.shift else logits


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_logits_match_reference(arch):
    model, expected = _load(arch)
    logits = _raw_logits(model, expected["input_ids"])
    ref = expected["logits"][:, : logits.shape[1]]
    err = (logits - ref).abs().max().item()
    assert err < TOL, f"{arch} max abs logit error {err:.2e}"


def test_llada_long_sequence_and_sharded_checkpoint():
    model, expected = _load("llada")
    assert (FIXTURES / "llada" / "model.safetensors.index.json").exists()
    logits = _raw_logits(model, expected["long_input_ids"])
    assert (logits - expected["long_logits"]).abs().max().item() < TOL


def test_dream_left_padded_batch():
    model, expected = _load("dream")
    mask = expected["padded_attention_mask"].bool()
    positions = expected["padded_position_ids"]
    logits = _raw_logits(model, expected["padded_input_ids"], positions=positions, key_valid=mask)
    ref = expected["padded_logits"][:, : logits.shape[1]]
    real = mask[:, : logits.shape[1]]
    assert (logits - ref).abs()[real].max().item() < TOL


def test_shifted_logits_are_the_previous_columns_output():
    model, expected = _load("dream")
    ids = expected["input_ids"]
    with torch.no_grad():
        shifted = model.net(ids)
    assert torch.allclose(shifted[:, 1:], expected["logits"][:, :-1], atol=TOL)
    assert torch.allclose(shifted[:, 0], expected["logits"][:, 0], atol=TOL)


def test_fixture_configs_are_read_from_native_fields():
    llada, _ = _load("llada")
    dream, _ = _load("dream")
    assert (llada.mask_id, llada.eos_ids, llada.shift) == (250, [251], 0)
    assert (dream.mask_id, dream.shift, dream.config.n_kv_heads, dream.config.qkv_bias) == (250, 1, 2, True)


def test_shipped_tiny_llada_matches_reference_code():
    """The shipped tiny-llada folder, run by the reference LLaDA modeling code, gives our logits:
    proof that it really is a LLaDA-format checkpoint (procedure: fixtures/parity/README.md)."""
    from dllm.zoo import shipped_models

    if "tiny-llada" not in shipped_models():
        pytest.skip("tiny-llada is not shipped yet")
    expected = load_file(str(FIXTURES / "tiny-llada-expected.safetensors"))
    model = dllm.load("tiny-llada")
    ids = expected["input_ids"]
    prompt = "copy: Nora Diaz, Oscar Cook, Noah Clark\n"
    assert ids[0, : len(model.encode(prompt))].tolist() == model.encode(prompt)
    err = (_raw_logits(model, ids) - expected["logits"]).abs().max().item()
    assert err < TOL, (
        f"tiny-llada max abs logit error {err:.2e} (stale fixture after retraining? see the README)"
    )
