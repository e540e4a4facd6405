"""Block-diffusion models (Fast-dLLM v2 layout): parity with the reference modeling code, loading errors,
the training layout, the block-cache policy and the shipped tiny-fdllm2 (fixtures: fixtures/parity/README.md).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
from _models import edit_config
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
        "fast_dllm_v2",
        8,
        250,
        1,
        2,
        True,
    )


def test_multi_block_prefill_matches_reference(ref):
    """20 tokens = blocks of 8, 8 and 4: block-causal attention over absolute positions."""
    model, expected = ref
    ids = expected["prefill_input_ids"]
    err = (_unshifted(model, ids) - expected["prefill_logits"][:, :-1]).abs().max().item()
    assert err < TOL, f"prefill max abs logit error {err:.2e}"


def test_block_cache_path_matches_reference(ref):
    """Prefix cache (16 prompt tokens), one block forward over it, then a sub-block overwrite in place."""
    model, expected = ref
    prompt, block, sub = (
        expected["cache_prompt_ids"],
        expected["cache_block_ids"],
        expected["cache_subblock_ids"],
    )
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
        sub_logits = model.net(
            torch.cat([prompt, sub], 1),
            kv=kv,
            query=query,
            logits_for=torch.tensor([21, 22, 23]).expand(2, -1),
        )
    assert (sub_logits - expected["subblock_logits"][:, :3]).abs().max().item() < TOL
    assert (kv.k[1][:, :, 16:] - expected["subblock_k_layer1"]).abs().max().item() < TOL


def test_block_as_large_as_the_canvas_is_plain_masked_diffusion(ref):
    """With one block covering everything the block-causal mask is full attention: the same weights
    in the Dream layout give the same logits."""
    model, expected = ref
    ids = expected["prefill_input_ids"]
    big = Transformer(model.config.__class__(**{**model.config.to_dict(), "block_size": 64}))
    big.load_state_dict(model.net.state_dict())
    dream = Transformer(
        model.config.__class__(**{**model.config.to_dict(), "arch": "dream", "block_size": None})
    )
    dream.load_state_dict(model.net.state_dict())
    with torch.no_grad():
        assert torch.allclose(big(ids), dream(ids), atol=1e-6)
        assert not torch.allclose(model.net(ids), dream(ids), atol=1e-3)  # bd 8 does differ


def test_native_round_trip_keeps_bd_size(ref, tmp_path):
    model, expected = ref
    dllm.models.loading.save_pretrained(model.net, tmp_path / "m")
    raw = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (raw["model_type"], raw["bd_size"], raw["architectures"]) == (
        "Fast_dLLM_Qwen",
        8,
        ["Fast_dLLM_QwenForCausalLM"],
    )
    again = dllm.load(tmp_path / "m", tokenizer=False)
    ids = expected["prefill_input_ids"]
    assert torch.equal(_unshifted(again, ids), _unshifted(model, ids))


# ---------------------------------------------------------------------------------------- bad input
def _copy_fixture(tmp_path, **changes):
    folder = tmp_path / "fd"
    shutil.copytree(FIXTURE, folder)
    edit_config(folder, **changes)
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
    cfg = model.config.__class__(
        **{
            **model.config.to_dict(),
            "vocab_size": len(tok),
            "mask_token_id": None,
            "eos_token_ids": [tok.eos_token_id],
            "pad_token_id": 0,
            "bos_token_id": 1,
        }
    )
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
        both = model.net(
            torch.cat([xt, x0], 1),
            torch.cat([pos, pos], 1),
            torch.cat([valid, valid], 1),
            logits_for=torch.arange(32).expand(2, -1) + 1 - 1,
            attn_mask=training_mask(valid, bd),
        )
        clean = model.net(x0)
        assert torch.allclose(both[:, 17:], clean[:, 1:], atol=1e-5)  # shifted logits of the x_0 half
        mixed = torch.cat([x0[:, :8], xt[:, 8:16]], 1)  # block 1 noisy, block 0 clean
        # row j of x_t's block 1 (targets 9..15) = a block-causal forward of [x_0 block 0 ; x_t block 1]
        assert torch.allclose(both[:, 9:16], model.net(mixed)[:, 9:16], atol=1e-5)


# ---------------------------------------------------------------------------------------- decoding
def _threshold():
    return dllm.samplers.get("fast-dllm", threshold=0.9)


@pytest.mark.parametrize("prompt_len", [13, 16])
@pytest.mark.parametrize("cache,key", [("none", "nocache"), ("block-cache", "blockcache")])
def test_generate_matches_reference_generate(ref, prompt_len, cache, key):
    """Fast_dLLM_QwenForCausalLM.generate (block 8, sub-block 4, threshold 0.9, greedy) on the random fixture:
    13 = a partial first block; 16 = the AR step right after the prefill."""
    model, expected = ref
    prompt = expected[f"gen{prompt_len}_prompt"][0].tolist()
    want = expected[f"gen{prompt_len}_{key}"][0].tolist()[prompt_len:]
    [out] = dllm.generate(
        model, [prompt], sampler=_threshold(), cache=cache, gen_length=32, block_length=8, sub_block_length=4
    )
    assert out.canvas[: len(want)] == want


def _ragged(expected):
    base = expected["prefill_input_ids"][0].tolist()
    return [base[:13], base[:16], base[:5], base[:9]]


def _cleaned(prompts):
    return [[t if t != 250 else 7 for t in p] for p in prompts]


@pytest.mark.parametrize("cache", ["none", "block-cache"])
def test_batch_equals_alone(ref, cache):
    model, expected = ref
    prompts = _cleaned(_ragged(expected))
    kwargs = dict(sampler=_threshold(), cache=cache, gen_length=24, block_length=8, sub_block_length=4)
    together = dllm.generate(model, prompts, **kwargs)
    for prompt, got in zip(prompts, together):
        [alone] = dllm.generate(model, [prompt], **kwargs)
        assert (got.canvas, got.nfe, got.steps) == (alone.canvas, alone.nfe, alone.steps)


def test_block_cache_refreshed_every_step_is_no_cache(ref):
    model, expected = ref
    prompts = _cleaned(_ragged(expected))
    kwargs = dict(sampler=_threshold(), gen_length=24, block_length=8, sub_block_length=4)
    plain = dllm.generate(model, prompts, cache="none", **kwargs)
    refreshed = dllm.generate(
        model, prompts, cache=dllm.caches.get("block-cache", refresh_interval=1), **kwargs
    )
    assert [r.canvas for r in plain] == [r.canvas for r in refreshed]
    assert [r.nfe for r in plain] == [r.nfe for r in refreshed]


def test_block_cache_recomputes_fewer_columns(ref):
    """The K/V reuse is real: the first forward covers the prompt and the first block only (not the
    masked blocks after it), later ones the block (or sub-block) columns."""
    model, expected = ref
    seen = []
    original = model.net.forward

    def spy(tokens, *args, query=None, **kwargs):
        seen.append(tokens.shape[1] if query is None else query.shape[1])
        return original(tokens, *args, query=query, **kwargs)

    model.net.forward = spy
    try:
        dllm.generate(
            model,
            [_cleaned(_ragged(expected))[1]],
            sampler=_threshold(),
            cache="block-cache",
            gen_length=32,
            block_length=8,
            sub_block_length=4,
        )
    finally:
        del model.net.forward
    refresh = 16 + 8  # the start: prompt + first block, never the whole 48-column canvas
    assert refresh in seen[:2] and max(seen) == refresh, seen
    later = seen[seen.index(refresh) + 1 :]
    assert max(later) <= 9 and min(later) <= 5, seen


def test_one_block_over_everything_decodes_like_plain_masked_diffusion(ref):
    """bd 64 covers the prompt and the first 48 generated columns: attention there is full, so sub-blocks of
    16 decode exactly what the Dream-layout copy of the weights decodes with blocks of 16."""
    model, expected = ref
    cfg = model.config.to_dict()
    prompt = _cleaned([expected["prefill_input_ids"][0].tolist()[:16]])[0]
    outs = []
    for arch, bd, gen, block, sub in (("fast_dllm_v2", 64, 64, 64, 16), ("dream", None, 48, 16, None)):
        net = Transformer(model.config.__class__(**{**cfg, "arch": arch, "block_size": bd}))
        net.load_state_dict(model.net.state_dict())
        other = dllm.models.loading.DiffusionModel(
            net=net.eval(),
            config=net.cfg,
            tokenizer=None,
            mask_id=250,
            eos_ids=[251],
            pad_id=251,
            bos_id=249,
            name=arch,
        )
        [out] = dllm.generate(
            other, [prompt], sampler=_threshold(), gen_length=gen, block_length=block, sub_block_length=sub
        )
        outs.append(out.canvas[:48])
    assert outs[0] == outs[1]


def test_blocks_follow_positions_with_an_ar_step(ref):
    from dllm import canvas

    model, _ = ref
    cfg = dllm.GenerationConfig(gen_length=24, block_length=8, sub_block_length=4)
    state = canvas.new_state(model, [[5] * 13, [5] * 16], cfg)
    ends = []
    for _ in range(6):
        ends.append((state.block_start.tolist(), state.block_end.tolist()))
        state.block_start = state.block_end
        state.block_end = canvas.block_end(state, state.block_start)
    # row 0 (P = 13, left-padded by 3: column = position + 3):
    # positions [13,16), AR 16, [17,20), [20,24), AR 24, ...
    assert [(s[0], e[0]) for s, e in ends] == [(16, 19), (19, 20), (20, 23), (23, 27), (27, 28), (28, 31)]
    # row 1 (P = 16): the AR step comes first
    assert [(s[1], e[1]) for s, e in ends] == [(16, 17), (17, 20), (20, 24), (24, 25), (25, 28), (28, 32)]


def test_block_size_errors_in_decoding(ref):
    model, _ = ref
    with pytest.raises(ValueError, match=r"block_length=16, but .* trained with bd_size=8"):
        dllm.generate(model, [[5, 6, 7]], gen_length=16, block_length=16)
    with pytest.raises(ValueError, match=r"sub_block_length=3 does not divide block_length=8"):
        dllm.GenerationConfig(gen_length=16, block_length=8, sub_block_length=3)
    dream = dllm.load("tiny-dream")
    with pytest.raises(ValueError, match=r"sub_block_length=8 is for block-diffusion models"):
        dllm.generate(dream, ["copy: a\n"], gen_length=32, block_length=32, sub_block_length=8)
    with pytest.raises(ValueError, match=r"block-cache needs a block-diffusion model"):
        dllm.generate(dream, ["copy: a\n"], cache="block-cache", gen_length=32, block_length=32)
    assert dllm.caches.get("block-cache").unsupported_reason(dream)
    assert dllm.caches.get("block-cache").unsupported_reason(model) is None


# ---------------------------------------------------------------------------------------- shipped tiny-fdllm2
def _tiny():
    from dllm.zoo import shipped_models

    if "tiny-fdllm2" not in shipped_models():
        pytest.skip("tiny-fdllm2 is not shipped yet: python -m dllm.zoo.fdllm2")
    return dllm.load("tiny-fdllm2")


def test_tiny_fdllm2_loads_offline_in_the_fast_dllm_v2_layout(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = _tiny()
    raw = json.loads((model.path / "config.json").read_text())
    assert (raw["model_type"], raw["bd_size"]) == ("Fast_dLLM_Qwen", 32)
    assert (model.config.arch, model.config.block_size, model.shift, model.mask_id) == (
        "fast_dllm_v2",
        32,
        1,
        3,
    )
    [out] = dllm.generate(
        model,
        "copy: Nora Diaz, Oscar Cook, Noah Clark\n",
        sampler=_threshold(),
        cache="block-cache",
        gen_length=64,
        block_length=32,
        sub_block_length=8,
        stop_at_eos=True,
    )
    assert out.text == "Nora Diaz, Oscar Cook, Noah Clark"


# learn2pd needs a filter trained on the model's own decoding traces; none is shipped for tiny-fdllm2
UNSUPPORTED = {"learn2pd": r"no Learn2PD filter for model 'tiny-fdllm2'"}


@pytest.mark.parametrize("cache", ["none", "block-cache"])
def test_every_sampler_runs_on_tiny_fdllm2(cache):
    model = _tiny()
    prompts = ["reverse: Emma Stone, Liam Park, Noah Reed\n", "copy: Ava Cole, Ben Fox\n"]
    for name in dllm.samplers.names():
        settings = dict(sampler=name, cache=cache, gen_length=64, block_length=32, sub_block_length=8)
        if name in UNSUPPORTED:
            with pytest.raises((ValueError, FileNotFoundError), match=UNSUPPORTED[name]):
                dllm.generate(model, prompts, **settings)
            continue
        results = dllm.generate(model, prompts, **settings)
        assert all(model.mask_id not in r.canvas and r.nfe >= 1 for r in results), name


def test_cli_generates_with_the_block_cache(capsys):
    _tiny()
    from dllm.cli import main

    assert (
        main(
            [
                "generate",
                "tiny-fdllm2",
                "copy: Nora Diaz, Oscar Cook, Noah Clark\n",
                "--sampler",
                "fast-dllm",
                "--cache",
                "block-cache",
                "--sub-block-length",
                "8",
                "--stop-at-eos",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "output Nora Diaz, Oscar Cook, Noah Clark\n" in out and "cache=block-cache" in out


def test_continuous_batching_with_the_block_cache(ref):
    """max_batch rows running, prompts joining as rows finish: each result is the prompt decoded alone."""
    model, expected = ref
    prompts = _cleaned(_ragged(expected))
    kwargs = dict(
        sampler=_threshold(), cache="block-cache", gen_length=24, block_length=8, sub_block_length=4
    )
    streamed = dllm.generate(model, prompts, max_batch=2, **kwargs)
    for prompt, got in zip(prompts, streamed):
        [alone] = dllm.generate(model, [prompt], **kwargs)
        assert (got.canvas, got.nfe) == (alone.canvas, alone.nfe)


def test_adaptive_block_planning_stays_inside_the_model_block(ref):
    """A sampler's plan_block (AdaBlock) may shrink a block-diffusion model's (sub-)block but never stretch
    it past the model's block: decoding a later block while an earlier one holds masks is outside what the
    model was trained on."""
    from dataclasses import dataclass

    from dllm import canvas
    from samplers.fast_dllm import FastDLLMSampler

    @dataclass
    class Stretch(FastDLLMSampler):
        def plan_block(self, view):
            return view.state.gen_end  # ask for one block over the whole rest of the canvas

    model, expected = ref
    seen = []

    def check(event):
        st = event.state
        seen.append(bool((st.block_end <= canvas.block_end(st, st.block_start)).all()))

    dllm.generate(
        model,
        _cleaned(_ragged(expected)),
        sampler=Stretch(threshold=0.9),
        cache="block-cache",
        gen_length=24,
        block_length=8,
        sub_block_length=4,
        callback=check,
    )
    assert seen and all(seen)


def test_shipped_tiny_fdllm2_matches_reference_code():
    """The shipped folder, run by the reference Fast-dLLM v2 modeling code (fixtures/parity/README.md), gives
    our logits: proof that tiny-fdllm2 is a Fast-dLLM v2 checkpoint (40 columns = blocks of 32 and 8)."""
    model = _tiny()
    expected = load_file(str(FIXTURE.parent / "tiny-fdllm2-expected.safetensors"))
    ids = expected["input_ids"]
    assert ids[0, :12].tolist() == model.encode("copy: Nora Diaz, Oscar Cook, Noah Clark\n")
    err = (_unshifted(model, ids) - expected["logits"][:, :-1]).abs().max().item()
    assert err < TOL, f"tiny-fdllm2 max abs logit error {err:.2e} (stale fixture after retraining?)"
