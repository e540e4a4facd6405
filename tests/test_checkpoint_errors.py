"""Broken checkpoint folders: every one a ValueError / FileNotFoundError naming the file, the field or the
tensor; never a KeyError, a ZeroDivisionError, a safetensors or JSON internal, or a silently random model."""

import json
import shutil

import pytest
import torch
from _models import edit_config
from safetensors.torch import load_file, save_file

import dllm
from dllm.zoo import shipped_models
from dllm.zoo.random_checkpoint import build

LLADA_Q = "model.transformer.blocks.0.q_proj.weight"
DREAM_Q = "model.layers.0.self_attn.q_proj.weight"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkpoints")
    return {arch: build(arch, root / arch, d_model=32, n_layers=1) for arch in ("llada", "dream")}


def _config(folder, **changes):
    edit_config(folder, **changes)


def _weights(folder, change):
    state = load_file(str(folder / "model.safetensors"))
    change(state)
    save_file(state, str(folder / "model.safetensors"))


def _truncate(folder, name="model.safetensors", keep=0.5):
    data = (folder / name).read_bytes()
    (folder / name).write_bytes(data[: int(len(data) * keep)])


def _nan(state, name=None):
    for key in [name] if name else list(state):
        state[key] = torch.full_like(state[key], float("nan"))


def _one_inf(state, name):
    state[name] = state[name].clone()
    state[name].view(-1)[3] = float("inf")


def _shard(folder):
    """Split model.safetensors into two shards with an index, then break the second one."""
    state = load_file(str(folder / "model.safetensors"))
    names = sorted(state)
    parts = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    for shard, keys in parts.items():
        save_file({k: state[k] for k in keys}, str(folder / shard))
    (folder / "model.safetensors").unlink()
    weight_map = {k: shard for shard, keys in parts.items() for k in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


CASES = [
    # (id, arch, break the folder, exception, message pattern)
    (
        "truncated-safetensors",
        "llada",
        lambda f: _truncate(f),
        ValueError,
        r"model\.safetensors: cannot read the safetensors weights, the file is truncated or corrupted",
    ),
    (
        "garbage-safetensors",
        "dream",
        lambda f: (f / "model.safetensors").write_bytes(b"\x08" + b"x" * 40),
        ValueError,
        r"model\.safetensors: cannot read the safetensors weights",
    ),
    (
        "empty-safetensors",
        "llada",
        lambda f: (f / "model.safetensors").write_bytes(b""),
        ValueError,
        r"model\.safetensors: cannot read",
    ),
    (
        "truncated-shard",
        "llada",
        lambda f: (_shard(f), _truncate(f, "model-00002-of-00002.safetensors")),
        ValueError,
        r"model-00002-of-00002\.safetensors: cannot read the safetensors weights",
    ),
    (
        "index-invalid-json",
        "dream",
        lambda f: (f / "model.safetensors.index.json").write_text("{oops"),
        ValueError,
        r"model\.safetensors\.index\.json is not valid JSON: .* at line 1, column 2",
    ),
    (
        "index-without-weight-map",
        "dream",
        lambda f: (f / "model.safetensors.index.json").write_text("{}"),
        ValueError,
        r"model\.safetensors\.index\.json has no weight_map",
    ),
    (
        "config-invalid-json",
        "llada",
        lambda f: (f / "config.json").write_text('{"d_model": 32,'),
        ValueError,
        r"config\.json is not valid JSON: .* at line 1, column 16",
    ),
    (
        "config-not-an-object",
        "llada",
        lambda f: (f / "config.json").write_text("[1, 2]"),
        ValueError,
        r"config\.json must hold a model config \(a JSON object\), found a JSON list",
    ),
    (
        "config-not-utf8",
        "llada",
        lambda f: (f / "config.json").write_bytes(b'{"d_model": "\xff"}'),
        ValueError,
        r"config\.json is not UTF-8 text",
    ),
    (
        "generation-config-invalid",
        "dream",
        lambda f: (f / "generation_config.json").write_text("nope"),
        ValueError,
        r"generation_config\.json is not valid JSON",
    ),
    (
        "missing-d_model",
        "llada",
        lambda f: _config(f, d_model=None),
        ValueError,
        r"config\.json: required field 'd_model' is missing from the LLaDA config",
    ),
    (
        "missing-n_layers",
        "llada",
        lambda f: _config(f, n_layers=None),
        ValueError,
        r"config\.json: required field 'n_layers' is missing",
    ),
    (
        "missing-hidden_size",
        "dream",
        lambda f: _config(f, hidden_size=None),
        ValueError,
        r"config\.json: required field 'hidden_size' is missing from the Dream config",
    ),
    (
        "missing-intermediate_size",
        "dream",
        lambda f: _config(f, intermediate_size=None),
        ValueError,
        r"config\.json: required field 'intermediate_size' is missing",
    ),
    (
        "zero-heads",
        "llada",
        lambda f: _config(f, n_heads=0),
        ValueError,
        r"config\.json: field n_heads=0 must be positive",
    ),
    (
        "negative-heads",
        "dream",
        lambda f: _config(f, num_attention_heads=-4),
        ValueError,
        r"field num_attention_heads=-4 must be positive",
    ),
    (
        "zero-kv-heads",
        "llada",
        lambda f: _config(f, n_kv_heads=0),
        ValueError,
        r"field n_kv_heads=0 must be positive",
    ),
    (
        "heads-not-dividing-width",
        "llada",
        lambda f: _config(f, n_heads=5, n_kv_heads=5),
        ValueError,
        r"d_model=32 is not divisible by n_heads=5",
    ),
    (
        "dream-heads-not-dividing-width",
        "dream",
        lambda f: _config(f, num_attention_heads=6, num_key_value_heads=3),
        ValueError,
        r"hidden_size=32 is not divisible by num_attention_heads=6",
    ),
    (
        "kv-heads-not-dividing-heads",
        "dream",
        lambda f: _config(f, num_key_value_heads=3),
        ValueError,
        r"n_heads=4 is not a multiple of n_kv_heads=3",
    ),
    (
        "width-a-string",
        "llada",
        lambda f: _config(f, d_model="abc"),
        ValueError,
        r"field d_model='abc' is not an integer",
    ),
    (
        "layers-fractional",
        "dream",
        lambda f: _config(f, num_hidden_layers=1.5),
        ValueError,
        r"field num_hidden_layers=1.5 is not an integer",
    ),
    (
        "zero-vocab",
        "dream",
        lambda f: _config(f, vocab_size=0),
        ValueError,
        r"field vocab_size=0 must be positive",
    ),
    (
        "rope-theta-negative",
        "llada",
        lambda f: _config(f, rope_theta=-1.0),
        ValueError,
        r"field rope_theta=-1.0 must be positive",
    ),
    (
        "mask-id-a-string",
        "llada",
        lambda f: _config(f, mask_token_id="x"),
        ValueError,
        r"field mask_token_id='x' is not an integer",
    ),
    (
        "unsupported-model-type",
        "llada",
        lambda f: _config(f, model_type="mamba", architectures=["MambaForCausalLM"]),
        ValueError,
        r"config\.json: unsupported architecture: model_type='mamba'",
    ),
    (
        "gpt2-over-llada-weights",
        "llada",
        lambda f: _config(f, model_type="gpt2", architectures=["GPT2LMHeadModel"]),
        ValueError,
        r"the weights in model\.safetensors do not match the architecture config\.json declares"
        r" \(model_type='gpt2'\): missing \[.*unexpected \['model\.transformer\.blocks\.0.*refusing",
    ),
    (
        "llama-over-dream-weights",
        "dream",
        lambda f: _config(f, model_type="llama", architectures=["LlamaForCausalLM"]),
        ValueError,
        r"do not match the architecture config\.json declares \(model_type='llama'\): unexpected"
        r" \['model\.layers\.0\.self_attn\.k_proj\.bias'",
    ),
    (
        "all-nan-weights",
        "llada",
        lambda f: _weights(f, _nan),
        ValueError,
        r"checkpoint tensor model\.transformer\.\S+ in \S+model\.safetensors"
        r" has \d+ non-finite value\(s\) \(NaN or inf\)",
    ),
    (
        "one-nan-tensor",
        "dream",
        lambda f: _weights(f, lambda s: _nan(s, DREAM_Q)),
        ValueError,
        rf"checkpoint tensor {DREAM_Q} in \S+ has 1024 non-finite value\(s\) \(NaN or inf\) of 1024",
    ),
    (
        "one-inf-value",
        "llada",
        lambda f: _weights(f, lambda s: _one_inf(s, LLADA_Q)),
        ValueError,
        rf"checkpoint tensor {LLADA_Q} in \S+ has 1 non-finite value\(s\)",
    ),
    (
        "missing-tensor",
        "llada",
        lambda f: _weights(f, lambda s: s.pop(LLADA_Q)),
        ValueError,
        r"does not match the llada architecture config\.json declares \(1 layers\):"
        rf" missing tensors \['{LLADA_Q}'\] \(1\)$",
    ),
    (
        "unexpected-tensor",
        "dream",
        lambda f: _weights(f, lambda s: s.update({"model.layers.0.extra.weight": torch.ones(2)})),
        ValueError,
        r"unexpected tensors \['model\.layers\.0\.extra\.weight'\] \(1\)$",
    ),
    (
        "more-layers-than-declared",
        "llada",
        lambda f: _config(f, n_layers=2),
        ValueError,
        r"\(2 layers\): missing tensors \['model\.transformer\.blocks\.1\..* \.\.\. \(9\)",
    ),
    (
        "fewer-layers-than-declared",
        "dream",
        lambda f: _config(f, num_hidden_layers=0),
        ValueError,
        r"field num_hidden_layers=0 must be positive",
    ),
    (
        "shape-mismatch",
        "dream",
        lambda f: _weights(f, lambda s: s.update({DREAM_Q: torch.ones(32, 16)})),
        ValueError,
        rf"checkpoint tensor {DREAM_Q} has shape \(32, 16\), config\.json implies \(32, 32\)",
    ),
    (
        "integer-weights",
        "llada",
        lambda f: _weights(f, lambda s: s.update({LLADA_Q: s[LLADA_Q].to(torch.int32)})),
        ValueError,
        rf"checkpoint tensor {LLADA_Q} has dtype int32; model weights must be floating point",
    ),
    (
        "missing-weights",
        "dream",
        lambda f: (f / "model.safetensors").unlink(),
        FileNotFoundError,
        r"no weights in",
    ),
    (
        "missing-config",
        "dream",
        lambda f: (f / "config.json").unlink(),
        FileNotFoundError,
        r"no config\.json in",
    ),
]


@pytest.mark.parametrize("arch,breaker,error,match", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_checkpoint_is_a_clear_error(built, tmp_path, arch, breaker, error, match):
    folder = tmp_path / arch
    shutil.copytree(built[arch], folder)
    breaker(folder)
    with pytest.raises(error, match=match):
        dllm.load(folder)


def test_fp32_weights_that_overflow_float16_are_named(built, tmp_path):
    folder = tmp_path / "llada"
    shutil.copytree(built["llada"], folder)
    _weights(folder, lambda s: s[LLADA_Q].view(-1).__setitem__(0, 1e6))
    assert dllm.load(folder).dtype == torch.float32
    with pytest.raises(
        ValueError, match=rf"{LLADA_Q} .* has 1 non-finite value\(s\) .*\(as float16\).*overflow this dtype"
    ):
        dllm.load(folder, dtype="float16")


def test_intact_folders_still_load(built):
    for folder in built.values():
        assert isinstance(dllm.load(folder), dllm.DiffusionModel)


@pytest.mark.parametrize(
    "breaker,match",
    [
        (
            lambda f: _truncate(f),
            r"model\.safetensors: cannot read the safetensors weights, the file is truncated",
        ),
        (
            lambda f: _weights(f, lambda s: _nan(s, "model.norm.weight")),
            r"tensor model\.norm\.weight has 192 non-finite",
        ),
        (
            lambda f: _weights(f, lambda s: s.pop("model.norm.weight")),
            r"do not match the architecture config\.json declares"
            r" \(model_type='qwen2'\): missing \['model\.norm\.weight'\]",
        ),
    ],
    ids=["truncated", "nan", "missing-tensor"],
)
def test_broken_causal_lm_folder(tmp_path, breaker, match):
    folder = tmp_path / "ar"
    shutil.copytree(shipped_models()["tiny-ar-draft"], folder)
    breaker(folder)
    with pytest.raises(ValueError, match=match):
        dllm.load(folder)


def test_a_nul_character_in_the_model_name_is_named():
    with pytest.raises(
        ValueError, match=r"model 'tiny\\x00llada' is not a valid name or path \(it contains a NUL"
    ):
        dllm.load("tiny\x00llada")


# ---- tokenizer files and vocabulary size (issue 26)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _resize_vocab(folder, rows: int, *fields: str) -> None:
    """config.json's vocabulary size (``fields``) and the embedding / LM head rows set to ``rows``
    (cut, or padded with small random rows), consistently: only the tokenizer disagrees."""
    _config(folder, **dict.fromkeys(fields, rows))

    def resize(state):
        for key, tensor in list(state.items()):
            if tensor.dim() == 2 and tensor.shape[0] == 936:
                pad = torch.randn(max(rows - 936, 0), tensor.shape[1]) * 0.02
                state[key] = torch.cat([tensor[:rows], pad]).contiguous()

    _weights(folder, resize)


@pytest.mark.parametrize("keep", [(), ("tokenizer_config.json",)], ids=["no-files", "config-only"])
def test_a_folder_without_tokenizer_json_names_the_folder_and_the_file(built, tmp_path, keep):
    folder = tmp_path / "llada"
    shutil.copytree(built["llada"], folder)
    for name in TOKENIZER_FILES:
        if name not in keep:
            (folder / name).unlink(missing_ok=True)
    with pytest.raises(
        FileNotFoundError, match=rf"no tokenizer in {folder}: tokenizer\.json is missing"
    ) as err:
        dllm.load(folder)
    assert "Couldn't instantiate" not in str(err.value) and "vocab.json" in str(err.value)
    assert isinstance(dllm.load(folder, tokenizer=False), dllm.DiffusionModel)  # the way out it names


def test_a_corrupt_tokenizer_json_names_the_file(built, tmp_path):
    folder = tmp_path / "dream"
    shutil.copytree(built["dream"], folder)
    (folder / "tokenizer.json").write_text('{"version": ')
    with pytest.raises(
        ValueError, match=rf"{folder}: transformers could not build the tokenizer from tokenizer\.json"
    ):
        dllm.load(folder)


@pytest.mark.parametrize(
    "arch,fields", [("llada", ("vocab_size", "embedding_size")), ("dream", ("vocab_size",))]
)
def test_a_tokenizer_larger_than_the_embedding_is_refused(built, tmp_path, arch, fields):
    folder = tmp_path / arch
    shutil.copytree(built[arch], folder)
    _resize_vocab(folder, 600, *fields)
    assert dllm.load(folder, tokenizer=False).config.vocab_size == 600  # weights and config agree
    with pytest.raises(
        ValueError,
        match=rf"the tokenizer has 936 tokens \(ids up to 935\), but config\.json's {fields[-1]} is 600"
        r" .*token ids from 600 on \(336 tokens.*cannot be embedded",
    ):
        dllm.load(folder)


@pytest.mark.parametrize(
    "arch,fields", [("llada", ("vocab_size", "embedding_size")), ("dream", ("vocab_size",))]
)
def test_an_embedding_padded_beyond_the_tokenizer_still_loads(built, tmp_path, arch, fields):
    folder = tmp_path / arch
    shutil.copytree(built[arch], folder)
    _resize_vocab(folder, 960, *fields)  # padded to a multiple of 64, as real checkpoints are
    model = dllm.load(folder)
    assert model.config.vocab_size == 960 and len(model.tokenizer) == 936
    [result] = dllm.generate(model, "copy: Emma\n", gen_length=8, block_length=8)
    assert result.steps > 0


def test_shipped_models_still_load():
    for name in shipped_models():
        model = dllm.load(name)
        assert model.tokenizer is not None


def test_causal_lm_tensor_of_the_wrong_shape_is_named(tmp_path):
    folder = tmp_path / "ar"
    shutil.copytree(shipped_models()["tiny-ar-draft"], folder)
    name = "model.layers.0.self_attn.q_proj.weight"
    shape = tuple(load_file(str(folder / "model.safetensors"))[name].shape)
    _weights(folder, lambda s: s.update({name: torch.ones(shape[0], shape[1] // 2)}))
    with pytest.raises(ValueError) as err:
        dllm.load(folder)
    # the diffusion loader's wording (test "shape-mismatch" above), with the folder in front
    half = (shape[0], shape[1] // 2)
    assert (
        str(err.value) == f"{folder}: checkpoint tensor {name} has shape {half}, config.json implies {shape}"
    )


def test_causal_lm_tokenizer_larger_than_the_embedding_is_refused(tmp_path):
    folder = tmp_path / "ar"
    shutil.copytree(shipped_models()["tiny-ar-draft"], folder)
    _resize_vocab(folder, 600, "vocab_size")
    with pytest.raises(ValueError, match=r"tokenizer has 936 tokens .* vocab_size is 600"):
        dllm.load(folder)
