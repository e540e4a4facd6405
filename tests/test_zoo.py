"""Shipped tiny models (load offline, size, native layout, a few held-out answers) and the training recipe."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

import dllm
from dllm.zoo import shipped_models

MAX_BYTES = 25 * 1024 * 1024
DIFFUSION = ("tiny-llada", "tiny-dream")
ALL = DIFFUSION + ("tiny-ar",)


def _folder(name):
    folder = shipped_models().get(name)
    if folder is None:
        pytest.skip(
            f"{name} is not shipped yet (no dllm/zoo/models/{name}/config.json); train it with "
            f"`python -m dllm.zoo.train {name}`"
        )
    return folder


@pytest.mark.parametrize("name", DIFFUSION)
def test_diffusion_model_loads_offline(name, monkeypatch):
    _folder(name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = dllm.load(name)
    assert model.mask_id == 3 and 2 in model.eos_ids and model.pad_id == 0 and model.bos_id == 1
    assert model.config.arch == name.split("-")[1]
    assert model.config.shift_logits == (name == "tiny-dream")
    assert model.encode("copy: A, B\n")[0] == 1


def test_tiny_ar_loads_with_transformers(monkeypatch):
    folder = _folder("tiny-ar")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from dllm.zoo.train import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder))
    tok = PreTrainedTokenizerFast.from_pretrained(str(folder))  # AutoTokenizer would build a Qwen2Tokenizer
    text = "sudoku: 0 3 0 2, 2 1 3 4\ncopy: Nora Diaz, Oscar Cook\n"
    assert tok.encode(text) == load_tokenizer().encode(text)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)
    gen = json.loads((folder / "generation_config.json").read_text())
    assert (gen["bos_token_id"], gen["eos_token_id"], gen["pad_token_id"]) == (1, 2, 0)


@pytest.mark.parametrize("name", ALL)
def test_shipped_size_and_files(name):
    folder = _folder(name)
    weights = sorted(folder.glob("*.safetensors"))
    assert weights, f"{folder} has no safetensors"
    assert sum(f.stat().st_size for f in weights) <= MAX_BYTES
    for required in ("config.json", "generation_config.json", "tokenizer.json", "README.md"):
        assert (folder / required).exists(), f"{name} lacks {required}"


def test_tiny_llada_uses_native_llada_names():
    folder = _folder("tiny-llada")
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    for key in ("d_model", "n_layers", "n_heads", "mlp_hidden_size", "rope_theta", "mask_token_id"):
        assert key in config
    assert config["model_type"] == "llada" and "hidden_size" not in config
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    for key in (
        "model.transformer.wte.weight",
        "model.transformer.blocks.0.q_proj.weight",
        "model.transformer.blocks.0.ff_proj.weight",
        "model.transformer.ff_out.weight",
    ):
        assert key in keys


def test_tiny_llada_answers_held_out_prompts():
    _folder("tiny-llada")
    from dllm.eval import tasks

    model = dllm.load("tiny-llada")
    cases = [(tasks.get("copy"), e) for e in tasks.get("copy").examples("eval", 2, seed=0)]
    cases += [(tasks.get("reverse"), tasks.get("reverse").examples("eval", 1, seed=0)[0])]
    results = dllm.generate(
        model, [e.prompt for _, e in cases], sampler="llada", gen_length=48, block_length=48
    )
    for (task, example), result in zip(cases, results):
        assert task.score(result.text, example) == 1.0, (example.prompt, example.target, result.text)


def test_binding_probe_finds_the_name_columns():
    from _models import load_benchmark

    from dllm.zoo.train import load_tokenizer

    probe = load_benchmark("binding")
    tokenizer = load_tokenizer()
    ids = tokenizer.encode("Emma Stone, Liam Park, Noah Reed", add_special_tokens=False)
    firsts, lasts = probe.name_columns(ids, 3)
    assert [tokenizer.decode([ids[i]]).strip() for i in firsts] == ["Emma", "Liam", "Noah"]
    assert [tokenizer.decode([ids[i]]).strip() for i in lasts] == ["Stone", "Park", "Reed"]
    with pytest.raises(ValueError, match="expected 8"):
        probe.name_columns(ids[:-1], 3)


@pytest.mark.parametrize("name", ALL)
def test_binding_probe_scores_positional_copying_as_bound(name):
    """Copy is answerable by position, so every shipped model binds there; the probe must say so
    (and the chance column is the mean of 1/n)."""
    _folder(name)
    from _models import load_benchmark

    from dllm.eval import tasks
    from dllm.zoo.train import load_tokenizer

    probe = load_benchmark("binding")
    model = dllm.load(name)
    examples = tasks.get("copy").examples("eval", 6, seed=0)
    run = probe.probe_ar if isinstance(model, dllm.models.CausalLM) else probe.probe_diffusion
    scores = run(model, load_tokenizer(), examples)
    assert scores["last masked"] >= 0.9
    assert scores.get("first masked", 1.0) >= 0.9
    assert probe.chance(examples) == pytest.approx(sum(1 / e.meta["n"] for e in examples) / 6)


@pytest.mark.parametrize(
    "task, message", [("cumsum", "not a Waiting Line task"), ("nope", "unknown task 'nope'")]
)
def test_binding_probe_rejects_tasks_without_names(task, message, capsys):
    from _models import load_benchmark

    with pytest.raises(SystemExit):
        load_benchmark("binding").main(["--tasks", task])
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ the recipe code
def _tiny(kind):
    from dllm.zoo import train

    return replace(
        train.RECIPES[f"tiny-{kind}"],
        d_model=32,
        n_layers=1,
        n_heads=2,
        n_kv_heads=2 if kind == "llada" else 1,
        mlp_hidden=64,
        batch_size=8,
        lr=3e-3,
        warmup=1,
        steps=30,
        init_from=None,
    )


def _fixed_loss(trainer, batch):
    if trainer.recipe.kind == "ar":
        with torch.no_grad():
            return float(trainer.loss(batch)[0])
    from dllm.zoo.train import diffusion_loss

    with torch.no_grad():
        return float(diffusion_loss(trainer.model, *batch, generator=torch.Generator().manual_seed(0))[0])


@pytest.mark.parametrize("kind", ["llada", "dream", "ar"])
def test_training_steps_decrease_loss(kind):
    from dllm.zoo.train import Trainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and robust on a loaded machine
    try:
        trainer = Trainer(_tiny(kind))
        batch = trainer.batch()
        before = _fixed_loss(trainer, batch)
        for _ in range(20):
            trainer.step(batch)
        after = _fixed_loss(trainer, batch)
    finally:
        torch.set_num_threads(threads)
    assert after < before - 0.5, (before, after)


def test_diffusion_batch_layout_matches_generate():
    """Prompts left-padded, canvas after them, positions = cumsum(valid) - 1, prompt never in the loss."""
    from dllm.zoo.train import EOS_ID, PAD_ID, layout_diffusion

    tokens, positions, valid, in_canvas = layout_diffusion([[1, 10, 11], [1, 12]], [[20, 21], [22]], [4, 3])
    assert tokens.tolist() == [
        [1, 10, 11, 20, 21, EOS_ID, EOS_ID],
        [PAD_ID, 1, 12, 22, EOS_ID, EOS_ID, PAD_ID],
    ]
    assert valid.tolist() == [[True] * 7, [False] + [True] * 5 + [False]]
    assert positions[1, 1:6].tolist() == [0, 1, 2, 3, 4]
    assert in_canvas.tolist() == [[False] * 3 + [True] * 4, [False] * 3 + [True] * 3 + [False]]


def test_curriculum_draws_alignment_tasks_first():
    from dllm.zoo.train import ALIGNMENT_TASKS, Trainer

    trainer = Trainer(replace(_tiny("llada"), alignment_steps=1))
    drawn = []
    for stream in (trainer.stream, trainer.alignment_stream):
        original = stream.draw
        stream.draw = lambda n, original=original: drawn.append(examples := original(n)) or examples
    trainer.batch()
    assert {e.task for e in drawn[-1]} <= set(ALIGNMENT_TASKS)
    trainer.queue.clear()
    trainer.step_index = 1
    trainer.batch()
    assert {e.task for e in drawn[-1]} - set(ALIGNMENT_TASKS)  # the full mix afterwards


def test_second_stage_recipe_starts_from_the_first_stage():
    from pathlib import Path

    from dllm.zoo.train import RECIPES, second_stage

    stage = second_stage(RECIPES["tiny-ar"], Path("/tmp/first"))
    assert stage.init_from == "/tmp/first" and stage.second_stage is None and stage.alignment_steps == 0
    assert (stage.steps, stage.lr, stage.seed) == (4000, 5e-4, 1)
    with pytest.raises(ValueError, match="no second stage"):
        second_stage(replace(RECIPES["tiny-ar"], second_stage=None), Path("/tmp/first"))


def test_diffusion_second_stage_upweights_binding_tasks_and_long_canvases():
    from pathlib import Path

    from dllm.zoo.train import RECIPES, second_stage

    for name in ("tiny-llada", "tiny-dream"):
        stage = second_stage(RECIPES[name], Path("/tmp/first"))
        assert stage.task_weights["sort"] > stage.task_weights["copy"]
        assert {256, 512} <= {mode for mode, _ in stage.canvas_modes}
        assert stage.model_config().max_seq_len >= 64 + 512


def test_trainer_uses_the_recipe_canvas_modes():
    from dllm.zoo.train import Trainer

    trainer = Trainer(replace(_tiny("llada"), batch_size=4, canvas_modes=((256, 1.0),), tasks=("copy",)))
    tokens, positions, valid, in_canvas = trainer.batch()
    assert int(in_canvas.sum(dim=1).min()) == 256


def test_stage_errors_name_the_problem(capsys, monkeypatch):
    from dllm.zoo import train as train_mod

    monkeypatch.setitem(
        train_mod.RECIPES, "tiny-dream", replace(train_mod.RECIPES["tiny-dream"], second_stage=None)
    )
    with pytest.raises(SystemExit):
        train_mod.main(["tiny-dream", "--stage", "2"])
    assert "recipe tiny-dream has a single stage" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no recipe 'tiny-dream' with two stages"):
        train_mod.resolve_init("tiny-dream:stage1")


def test_intermediate_checkpoints_stay_out_of_the_output_folder(tmp_path):
    from dllm.zoo.train import partial_folder, train

    out = tmp_path / "model"
    during = []

    def log(message):  # the last step's loss line comes after the step-2 evaluation, before the final save
        if "step 4/4" in message:
            during.append((out.exists(), (partial_folder(out) / "model.safetensors").exists()))

    train(replace(_tiny("llada"), steps=4, eval_every=2, tasks=("math_op",)), out, log=log, threads=1)
    assert during == [(False, True)]
    assert (out / "model.safetensors").exists() and not partial_folder(out).exists()
