"""Training recipes of the shipped tiny models:
``python -m dllm.zoo.train NAME [--steps N] [--seed S] [--out DIR]``.

Every shipped model is trained from scratch (or, for ``tiny-dream``, from the weights of ``tiny-ar``'s
first stage, the way Dream-7B started from Qwen2.5-7B; they are trained into ``~/.cache/dllm/zoo`` if
not there yet) on the project's own task generators (``dllm.tasks``,
train split only), on a CPU, for a fixed number of optimizer steps, so that the same command and
seed rebuild the shipped weights.

Data. One example is ``[BOS] + tokenize(prompt) + tokenize(target) + [EOS] * k``: the answer is
followed by EOS padding up to a *generation canvas* whose length is what a decoder would use:
half the time a tight canvas (the answer and 1-8 EOS), else the task's ``max_new_tokens`` (at least
twice the answer) or 64 or 128 positions (decoding with ``gen_length=128, block_length=32``). A batch is laid
out exactly like ``dllm.generate`` lays out a canvas: prompts left-padded with the pad token to a
common width, canvases after them (right-padded inside a batch when their lengths differ),
``key_valid`` hiding every padding column and ``positions = cumsum(valid) - 1``.

Objectives.

* ``tiny-llada`` / ``tiny-dream`` (masked diffusion, LLaDA SFT): the prompt is never masked; every
  canvas position (answer and EOS padding) is replaced by the mask token independently with
  probability ``t``, one ``t ~ U(t_min, 1)`` per example; the loss is the cross-entropy on masked
  positions weighted ``1/t``, summed and divided by the number of canvas tokens in the batch (an
  unbiased, bounded-variance estimate of LLaDA's per-token ELBO; the raw ``1/t`` weight with
  ``t -> 0`` reaches 1000 and stalls training at small batch sizes). Dream's one-position logit
  shift lives inside ``Transformer``: its logits at canvas column ``j`` already predict token
  ``j``, so both layouts share this loss.
* ``tiny-ar``: ``transformers.Qwen2ForCausalLM``, next-token cross-entropy on ``answer + EOS``
  (prompt tokens are context only).

Curriculum: the first ``alignment_steps`` steps use only the list-copying tasks (``ALIGNMENT_TASKS``),
then the full mix.

Optimizer: AdamW (betas 0.9/0.98, weight decay 0.01), linear warmup then cosine decay to 10 % of
the peak rate, gradient clipping at 1.0, ``torch.set_num_threads(2)``.

Device: the recipes are sized for a 2-core CPU; ``--device cuda`` runs the same recipe on a GPU (the
data and noise streams are drawn on the CPU either way; attention uses SDPA there, as the Triton
kernel has no backward), not bit-identical to a CPU run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dllm import tasks as task_lib
from dllm.canvas import layout as canvas_layout
from dllm.models.config import ModelConfig
from dllm.models.transformer import Transformer
from dllm.zoo import MODELS_DIR, tokenizer_dir

PAD_ID, BOS_ID, EOS_ID, MASK_ID = 0, 1, 2, 3
TOKENIZER_DIR = tokenizer_dir()

# Training mix: sampling weight per task (default 1.0). Arithmetic, puzzles and sorting are the
# hardest for a tiny model, the "*_random" / shuffle tasks the easiest (any valid answer scores).
TASK_WEIGHTS = {
    "math_op": 3.0,
    "cumsum": 2.0,
    "sudoku": 2.0,
    "sort": 1.5,
    "letters_sort": 1.5,
    "words_sort": 1.5,
    "insert_index": 1.5,
    "remove_index": 1.5,
    "replace_index": 1.5,
    "shuffle": 0.6,
    "insert_random": 0.6,
    "remove_random": 0.6,
    "replace_random": 0.6,
    "latin_square": 0.6,
}
# Canvas length modes, chosen per example: a tight canvas (the answer and 1-8 EOS), the task's own
# budget, or a fixed 64 / 128 canvas. Long EOS tails teach little once EOS is learnt and cost most of
# the compute, so half the examples use the tight canvas.
CANVAS_MODES = (("tight", 0.5), ("native", 0.35), (64, 0.1), (128, 0.05))
# Second stage of the diffusion models: the list tasks whose answers need each first name bound to its
# own last name (sort, shuffle, *_random: after the first stage the model orders first names right but
# copies last names by position), the index ops and the puzzles / arithmetic are upweighted; a few
# 256- and 512-position canvases teach the EOS tail and the positions of long generations.
BINDING_WEIGHTS = {
    **{name: 0.5 for name in ("copy", "reverse", "letters_copy", "letters_reverse", "words_reverse")},
    "letters_sort": 1.0,
    "words_sort": 1.0,
    "sudoku": 1.0,
    "insert_index": 2.0,
    "remove_index": 2.0,
    "replace_index": 2.0,
    "sort": 3.0,
    "shuffle": 2.0,
    "insert_random": 2.0,
    "remove_random": 2.0,
    "replace_random": 2.0,
    "latin_square": 2.0,
    "math_op": 2.0,
    "cumsum": 2.0,
}
LONG_CANVAS_MODES = (("tight", 0.45), ("native", 0.33), (64, 0.08), (128, 0.08), (256, 0.04), (512, 0.02))
POOL = 8  # batches per length-sorted pool
ALIGNMENT_TASKS = (
    "copy",
    "reverse",
    "letters_copy",
    "letters_reverse",
    "words_reverse",
    "insert_index",
    "remove_index",
    "replace_index",
)
QUICK_EVAL_TASKS = (
    "copy",
    "reverse",
    "insert_index",
    "remove_index",
    "replace_index",
    "sort",
    "sudoku",
    "cumsum",
    "math_op",
)


@dataclass
class Recipe:
    name: str
    kind: str  # "llada" | "dream" | "ar"
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int = 6
    mlp_hidden: int = 512
    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.01
    qkv_bias: bool | None = None  # None: the architecture's usual choice (Dream yes, LLaDA no)
    t_min: float = 0.1  # lower clip of the masking rate (diffusion only)
    seed: int = 0
    init_from: str | None = None  # a checkpoint folder / shipped name whose weights start training
    eval_every: int = 600
    log_every: int = 50
    task_weights: dict = field(default_factory=lambda: dict(TASK_WEIGHTS))
    canvas_modes: tuple = CANVAS_MODES  # (mode, probability) pairs, see ``canvas_lengths``
    tasks: tuple | None = None  # restrict the mix to these tasks (None: all registered tasks)
    # Curriculum: the first ``alignment_steps`` steps draw only from ALIGNMENT_TASKS. A tiny model
    # trained on the whole mix from the start took thousands of steps to discover position-aligned
    # copying (it learnt every answer format first); on the list-copying tasks alone the copying
    # circuit forms within ~1000 steps and then carries over to the other tasks.
    alignment_steps: int = 0
    # Start from these layers of ``init_from`` (layer-dropped initialisation of a smaller model;
    # embeddings, final norm and head are copied as they are). None: the same config.
    init_layers: tuple | None = None
    # Optional second stage, run after the first from its saved weights with a fresh optimizer, a
    # new warmup + cosine cycle and its own data seed: overrides of this recipe, e.g. {"steps": 2000}.
    second_stage: dict | None = None

    def model_config(self) -> ModelConfig:
        if self.kind not in ("llada", "dream"):
            raise ValueError(f"recipe {self.name} ({self.kind}) does not build a dllm Transformer")
        dream = self.kind == "dream"
        return ModelConfig(
            arch=self.kind,
            d_model=self.d_model,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_kv_heads=self.n_kv_heads,
            head_dim=self.d_model // self.n_heads,
            mlp_hidden=self.mlp_hidden,
            vocab_size=936,
            rope_theta=10000.0,
            rms_eps=1e-6 if dream else 1e-5,
            qkv_bias=dream if self.qkv_bias is None else self.qkv_bias,
            shift_logits=dream,
            rope_fp32=not dream,
            tie_embeddings=False,
            max_seq_len=1024,
            mask_token_id=MASK_ID,
            eos_token_ids=[EOS_ID],
            pad_token_id=PAD_ID,
            bos_token_id=BOS_ID,
            torch_dtype="float32",
        )


DIFFUSION_SECOND_STAGE = {
    "steps": 1500,
    "lr": 5e-4,
    "warmup": 50,
    "seed": 1,
    "eval_every": 500,
    "task_weights": BINDING_WEIGHTS,
    "canvas_modes": LONG_CANVAS_MODES,
}

RECIPES = {
    # From scratch, tiny-llada had learnt no list task after 2250 steps (40 min); started from
    # tiny-ar's first stage (GQA and q/k/v biases to match it; both are LLaDA config options) it
    # learns them like tiny-dream does. Its logits stay unshifted, as in LLaDA.
    "tiny-llada": Recipe(
        "tiny-llada",
        "llada",
        n_kv_heads=3,
        qkv_bias=True,
        steps=2000,
        eval_every=750,
        init_from="tiny-ar:stage1",
        alignment_steps=500,
        second_stage=DIFFUSION_SECOND_STAGE,
    ),
    # Dream starts from tiny-ar's first stage (as Dream-7B started from Qwen2.5-7B).
    "tiny-dream": Recipe(
        "tiny-dream",
        "dream",
        n_kv_heads=3,
        steps=2000,
        eval_every=750,
        init_from="tiny-ar:stage1",
        alignment_steps=500,
        second_stage=DIFFUSION_SECOND_STAGE,
    ),
    "tiny-ar": Recipe(
        "tiny-ar",
        "ar",
        n_kv_heads=3,
        steps=4000,
        warmup=100,
        eval_every=1000,
        alignment_steps=1000,
        second_stage={"steps": 4000, "lr": 5e-4, "warmup": 50, "seed": 1},
    ),
    # The AR drafter baseline of speculative decoding: half of tiny-ar (its first and last layers),
    # fine-tuned on the same mix, so it costs about half a verifier forward per drafted token.
    "tiny-ar-draft": Recipe(
        "tiny-ar-draft",
        "ar",
        n_layers=2,
        n_kv_heads=3,
        steps=1500,
        lr=5e-4,
        warmup=50,
        eval_every=500,
        seed=2,
        init_from="tiny-ar",
        init_layers=(0, 3),
    ),
    # The same for the diffusion drafter: half of tiny-dream (first and last layers), fine-tuned on the
    # first-stage mix, so that a one-pass draft costs about half a verifier forward.
    "tiny-dream-draft": Recipe(
        "tiny-dream-draft",
        "dream",
        n_layers=2,
        n_kv_heads=3,
        steps=1500,
        lr=5e-4,
        warmup=50,
        eval_every=500,
        seed=2,
        init_from="tiny-dream",
        init_layers=(0, 3),
    ),
}


def load_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    ids = (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.mask_token_id)
    if ids != (PAD_ID, BOS_ID, EOS_ID, MASK_ID):
        raise ValueError(
            f"shipped tokenizer special ids (pad, bos, eos, mask) = {ids}, expected (0, 1, 2, 3)"
        )
    return tok


# ----------------------------------------------------------------------------------- data
class TaskStream:
    """Seeded stream of train-split examples drawn from the weighted task mix."""

    def __init__(self, seed: int, weights: dict[str, float] | None = None, tasks=None):
        self.rng = random.Random(seed)
        self.tasks = [task_lib.get(n) for n in (tasks or task_lib.names())]
        weights = weights or {}
        self.weights = [float(weights.get(t.name, 1.0)) for t in self.tasks]

    def draw(self, n: int):
        picked = self.rng.choices(self.tasks, weights=self.weights, k=n)
        return [task.sample_split(self.rng, "train") for task in picked]


def canvas_lengths(examples, targets, mode, rng: random.Random) -> list[int]:
    """Canvas length per example for a batch mode; always leaves room for answer + one EOS."""
    out = []
    for ex, tgt in zip(examples, targets):
        need = len(tgt) + 1
        budget = task_lib.get(ex.task).max_new_tokens
        if mode == "native":
            n = budget
        elif mode == "tight":
            n = need + rng.randint(0, 7)
        else:
            n = int(mode)
        out.append(max(n, need))
    return out


def encode_batch(tokenizer, examples, canvas: list[int] | None = None):
    """``(prompt ids with BOS, target ids)`` per example, tokenized the way decoding sees them."""
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    targets = tokenizer([e.target for e in examples], add_special_tokens=False)["input_ids"]
    return [[BOS_ID] + p for p in prompts], targets


def layout_diffusion(prompts, targets, canvas):
    """Left-padded prompts + EOS-padded canvases -> (tokens, positions, valid, canvas_mask) ``[B, L]``.

    The layout is ``dllm.canvas.layout``, the one decoding uses, so training sees decoding's positions.
    """
    answers = [t + [EOS_ID] * (c - len(t)) for t, c in zip(targets, canvas)]
    laid = canvas_layout(prompts, answers, PAD_ID)
    cols = torch.arange(laid.tokens.shape[1])[None]
    in_canvas = (cols >= laid.gen_start) & (cols < laid.gen_end[:, None])
    return laid.tokens, laid.positions, laid.valid, in_canvas


def layout_ar(prompts, targets):
    """Right-padded ``[BOS] prompt answer EOS`` -> (input_ids, attention_mask, labels) for a causal LM."""
    rows = [p + t + [EOS_ID] for p, t in zip(prompts, targets)]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, (r, p) in enumerate(zip(rows, prompts)):
        ids[row, : len(r)] = torch.tensor(r)
        attn[row, : len(r)] = 1
        labels[row, len(p) : len(r)] = ids[row, len(p) : len(r)]
    return ids, attn, labels


# ----------------------------------------------------------------------------------- losses
def diffusion_loss(net, tokens, positions, valid, in_canvas, generator: torch.Generator, t_min: float = 0.1):
    """LLaDA SFT loss with ``t`` clipped to ``[t_min, 1]`` and normalised by the canvas token count.

    The noise is drawn on the CPU generator whatever the batch's device, so a seed gives the same
    masks on CPU and GPU."""
    batch = tokens.shape[0]
    t = (t_min + (1.0 - t_min) * torch.rand(batch, 1, generator=generator)).to(tokens.device)
    masked = (torch.rand(tokens.shape, generator=generator).to(tokens.device) < t) & in_canvas
    noisy = torch.where(masked, torch.full_like(tokens, MASK_ID), tokens)
    logits = net(noisy, positions, valid)
    weights = (1.0 / t).expand_as(tokens)[masked]
    ce = F.cross_entropy(logits[masked].float(), tokens[masked], reduction="none")
    loss = (ce * weights).sum() / in_canvas.sum().clamp(min=1)
    return loss, {"masked_ce": float(ce.detach().mean()) if ce.numel() else 0.0}


def ar_loss(model, ids, attn, labels):
    logits = model(input_ids=ids, attention_mask=attn).logits
    loss = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), labels[:, 1:].reshape(-1), ignore_index=-100
    )
    return loss, {}


# ----------------------------------------------------------------------------------- models
def build_ar(recipe: Recipe):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=936,
        hidden_size=recipe.d_model,
        intermediate_size=recipe.mlp_hidden,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_kv_heads,
        max_position_embeddings=512,
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        use_cache=True,
    )
    return Qwen2ForCausalLM(cfg)


def _init_weights(net: Transformer, std: float = 0.02) -> None:
    for name, p in net.named_parameters():
        if name.endswith("norm.weight"):
            torch.nn.init.ones_(p)
        elif name.endswith(".bias"):
            torch.nn.init.zeros_(p)
        else:
            torch.nn.init.normal_(p, std=std)
    # Scale the residual-branch outputs by depth (GPT-2 style) for a stable start.
    for layer in net.layers:
        torch.nn.init.normal_(layer.o.weight, std=std / math.sqrt(2 * net.cfg.n_layers))
        torch.nn.init.normal_(layer.down.weight, std=std / math.sqrt(2 * net.cfg.n_layers))


def build_diffusion(recipe: Recipe) -> Transformer:
    cfg = recipe.model_config()
    net = Transformer(cfg)
    _init_weights(net)
    if recipe.init_from:
        init_from_checkpoint(net, recipe.init_from, recipe.init_layers)
    return net


STAGE_CACHE = Path.home() / ".cache" / "dllm" / "zoo"


def resolve_init(source: str) -> Path:
    """The checkpoint folder an ``init_from`` names: a folder, a shipped model name, or
    ``NAME:stage1`` -- the first stage of recipe NAME, trained into ``~/.cache/dllm/zoo`` on first use."""
    if source.endswith(":stage1"):
        name = source[: -len(":stage1")]
        if name not in RECIPES or not RECIPES[name].second_stage:
            staged = sorted(n for n, r in RECIPES.items() if r.second_stage)
            raise ValueError(
                f"init_from={source!r}: no recipe {name!r} with two stages (recipes with two: {staged})"
            )
        folder = STAGE_CACHE / f"{name}-stage1-seed{RECIPES[name].seed}"
        if not (folder / "model.safetensors").exists():
            print(f"[{name}] first stage not cached at {folder}: training it now", flush=True)
            train(replace(RECIPES[name], second_stage=None), folder, threads=torch.get_num_threads())
        return folder
    folder = MODELS_DIR / source if (MODELS_DIR / source).is_dir() else Path(source)
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"init_from={source!r}: no checkpoint folder at {folder} (train it first)")
    return folder


def init_from_checkpoint(net: Transformer, source: str, layers: tuple | None = None) -> None:
    """Copy weights from a LLaDA- or Qwen2/Dream-named checkpoint folder (e.g. tiny-ar) into ``net``
    (with ``layers``: only those blocks of it, renumbered; see ``Recipe.init_layers``)."""
    from dllm.models import weights as weights_mod
    from dllm.models.loading import read_state_dict

    folder = resolve_init(source)
    source_arch = json.loads((folder / "config.json").read_text()).get("model_type", "")
    naming = "llada" if str(source_arch).lower() == "llada" else "dream"  # Dream uses Qwen2's tensor names
    internal, unknown = weights_mod.to_internal(naming, read_state_dict(folder))
    if layers is not None:
        internal = pick_layers(internal, layers, "layers.")
    own = net.state_dict()
    bad = [k for k, v in internal.items() if k not in own or own[k].shape != v.shape]
    missing = sorted(set(own) - set(internal))
    if unknown or bad or missing:
        raise ValueError(
            f"cannot initialise from {folder}: unknown {unknown[:4]}, mismatched {bad[:4]}, "
            f"missing {missing[:4]} (dimensions must match the recipe)"
        )
    net.load_state_dict(internal)


def pick_layers(state: dict, layers: tuple, prefix: str) -> dict:
    """``state`` with only the blocks ``layers`` (keys ``PREFIX<N>.*``), renumbered 0, 1, ... in that
    order."""
    picked = {}
    for key, tensor in state.items():
        if not key.startswith(prefix):
            picked[key] = tensor
            continue
        index, rest = key[len(prefix) :].split(".", 1)
        if int(index) in layers:
            picked[f"{prefix}{layers.index(int(index))}.{rest}"] = tensor
    return picked


def init_ar_from_checkpoint(model, source: str, layers: tuple | None = None) -> None:
    """Continue a causal LM from a saved ``transformers`` checkpoint folder (same config), or, with
    ``layers``, start a shallower one from those layers of it (new layer i <- source layer layers[i])."""
    from dllm.models.loading import read_state_dict

    folder = resolve_init(source)
    state = read_state_dict(folder)
    if layers is not None:
        state = pick_layers(state, layers, "model.layers.")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"cannot initialise from {folder}: missing {missing[:4]}, unexpected {unexpected[:4]}"
        )


def as_diffusion_model(net: Transformer, tokenizer, name: str):
    from dllm.models.loading import DiffusionModel

    return DiffusionModel(
        net=net,
        config=net.cfg,
        tokenizer=tokenizer,
        mask_id=MASK_ID,
        eos_ids=[EOS_ID],
        pad_id=PAD_ID,
        bos_id=BOS_ID,
        name=name,
    )


# ----------------------------------------------------------------------------------- evaluation
def quick_eval(model, kind: str, tokenizer, n: int = 16, tasks=QUICK_EVAL_TASKS) -> dict[str, float]:
    """Held-out (eval split) accuracy, greedy, one token per step, on a few tasks."""
    from dllm.generate import generate

    scores = {}
    for name in tasks:
        task = task_lib.get(name)
        examples = task.examples("eval", n, seed=0)
        if kind == "ar":
            texts = ar_generate(model, tokenizer, [e.prompt for e in examples], task.max_new_tokens)
        else:
            gen = task.max_new_tokens
            results = generate(
                model,
                [e.prompt for e in examples],
                sampler="llada",
                gen_length=gen,
                block_length=gen,
                steps=gen,
            )
            texts = [r.text for r in results]
        scores[name] = sum(task.score(t, e) for t, e in zip(texts, examples)) / len(examples)
    return scores


@torch.no_grad()
def ar_generate(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy batched decoding with ``transformers`` ``generate`` (left-padded prompts)."""
    rows = [[BOS_ID] + tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r)
        attn[i, width - len(r) :] = 1
    was_training = model.training
    model.eval()
    ids, attn = ids.to(model.device), attn.to(model.device)
    out = model.generate(
        input_ids=ids,
        attention_mask=attn,
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    model.train(was_training)
    texts = []
    for row in out[:, width:].tolist():
        if EOS_ID in row:
            row = row[: row.index(EOS_ID)]
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


# ----------------------------------------------------------------------------------- training
def lr_at(step: int, recipe: Recipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return recipe.lr * (recipe.min_lr_ratio + (1 - recipe.min_lr_ratio) * cosine)


def make_optimizer(params, recipe: Recipe):
    params = [p for p in params if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
        betas=(0.9, 0.98),
    )


class Trainer:
    """One recipe's model, optimizer and data stream; ``step()`` runs one optimizer step."""

    def __init__(self, recipe: Recipe, tokenizer=None, device: str | torch.device = "cpu"):
        from dllm.models.loading import resolve_device

        self.recipe = recipe
        self.device = resolve_device(device)
        torch.manual_seed(recipe.seed)
        self.tokenizer = tokenizer or load_tokenizer()
        self.stream = TaskStream(recipe.seed, recipe.task_weights, recipe.tasks)
        self.alignment_stream = TaskStream(recipe.seed + 3, None, ALIGNMENT_TASKS)
        self.mode_rng = random.Random(recipe.seed + 1)
        self.generator = torch.Generator().manual_seed(recipe.seed + 2)
        self.model = build_ar(recipe) if recipe.kind == "ar" else build_diffusion(recipe)
        if recipe.kind == "ar" and recipe.init_from:
            init_ar_from_checkpoint(self.model, recipe.init_from, recipe.init_layers)
        self.model.to(self.device).train()
        self.optimizer = make_optimizer(self.model.parameters(), recipe)
        self.step_index = 0
        self.queue: list = []

    def batch(self):
        """The next batch; batches are cut from a pool of ``POOL`` batches sorted by length, so
        that little compute goes to padding."""
        if not self.queue:
            self.queue = self._fill()
        return self.queue.pop()

    def _fill(self) -> list:
        size = self.recipe.batch_size
        in_curriculum = self.step_index < self.recipe.alignment_steps and self.recipe.tasks is None
        stream = self.alignment_stream if in_curriculum else self.stream
        examples = stream.draw(size * POOL)
        prompts, targets = encode_batch(self.tokenizer, examples)
        if self.recipe.kind == "ar":
            rows = sorted(zip(prompts, targets), key=lambda r: len(r[0]) + len(r[1]))
            batches = [layout_ar(*zip(*rows[i : i + size])) for i in range(0, len(rows), size)]
        else:
            modes, probs = zip(*self.recipe.canvas_modes)
            picked = self.mode_rng.choices(modes, weights=probs, k=len(examples))
            canvas = [
                canvas_lengths([e], [t], m, self.mode_rng)[0] for e, t, m in zip(examples, targets, picked)
            ]
            rows = sorted(zip(prompts, targets, canvas), key=lambda r: (r[2], len(r[0])))
            batches = [layout_diffusion(*zip(*rows[i : i + size])) for i in range(0, len(rows), size)]
        self.mode_rng.shuffle(batches)
        return batches

    def loss(self, batch):
        if self.recipe.kind == "ar":
            return ar_loss(self.model, *batch)
        return diffusion_loss(self.model, *batch, generator=self.generator, t_min=self.recipe.t_min)

    def step(self, batch=None) -> float:
        """One optimizer step on ``batch`` (default: the next batch of the stream); returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step_index, self.recipe)
        batch = self.batch() if batch is None else batch
        loss, _ = self.loss([t.to(self.device) for t in batch])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.step_index += 1
        return float(loss.detach())

    def evaluate(self, n: int = 16) -> dict[str, float]:
        self.model.eval()
        try:
            if self.recipe.kind == "ar":
                return quick_eval(self.model, "ar", self.tokenizer, n)
            return quick_eval(
                as_diffusion_model(self.model, self.tokenizer, self.recipe.name),
                "diffusion",
                self.tokenizer,
                n,
            )
        finally:
            self.model.train()

    def save(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.recipe.kind == "ar":
            self.model.generation_config.bos_token_id = BOS_ID
            self.model.generation_config.eos_token_id = EOS_ID
            self.model.generation_config.pad_token_id = PAD_ID
            self.model.save_pretrained(str(folder), safe_serialization=True)
            return copy_tokenizer(folder)
        return save_diffusion(self.model, folder)


def save_diffusion(net: Transformer, folder: Path) -> Path:
    """A diffusion net as a native checkpoint folder with the shipped special ids and tokenizer."""
    from dllm.models.loading import save_pretrained

    save_pretrained(net, folder)
    gen = {"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID, "mask_token_id": MASK_ID}
    (Path(folder) / "generation_config.json").write_text(json.dumps(gen, indent=2) + "\n")
    return copy_tokenizer(folder)


def copy_tokenizer(folder: Path) -> Path:
    """The shipped tokenizer files verbatim (a transformers round trip rewrites them)."""
    for src in TOKENIZER_DIR.iterdir():
        if src.is_file():
            shutil.copyfile(src, Path(folder) / src.name)
    return Path(folder)


def partial_folder(out: Path) -> Path:
    return Path(out).with_name(Path(out).name + ".partial")


def train(recipe: Recipe, out: Path | None, log=print, threads: int = 2, device: str = "cpu") -> dict:
    torch.set_num_threads(threads)
    start = time.time()
    trainer = Trainer(recipe, device=device)
    n_params = sum(p.numel() for p in trainer.model.parameters())
    log(
        f"[{recipe.name}] {n_params:,} parameters; {threads} threads on {device};"
        f" recipe {json.dumps({k: v for k, v in vars(recipe).items() if k != 'task_weights'})}"
    )
    seconds, history = train_loop(trainer, recipe, out, log, start)
    return {"params": n_params, "seconds": seconds, "history": history, "trainer": trainer}


def train_loop(trainer, recipe: Recipe, out: Path | None, log, start: float) -> tuple[float, list[dict]]:
    """``recipe.steps`` of ``trainer.step()`` (returns the loss), logging the mean loss every
    ``log_every`` steps, ``trainer.evaluate()`` every ``eval_every`` (partial weights saved beside
    ``out``), and ``trainer.save(out)`` at the end -> ``(seconds, history)``."""
    history, running = [], []
    for step in range(recipe.steps):
        running.append(trainer.step())
        done = step + 1
        if done % recipe.log_every == 0 or done == recipe.steps:
            mean = sum(running) / len(running)
            running = []
            log(
                f"[{recipe.name}] step {done}/{recipe.steps} loss {mean:.4f} lr {lr_at(step, recipe):.2e} "
                f"elapsed {time.time() - start:.0f}s"
            )
            history.append({"step": done, "loss": round(mean, 5)})
        if recipe.eval_every and (done % recipe.eval_every == 0 or done == recipe.steps):
            scores = trainer.evaluate()
            mean_acc = sum(scores.values()) / len(scores)
            log(
                f"[{recipe.name}] step {done} held-out acc {mean_acc:.3f} "
                + " ".join(f"{k}={v:.2f}" for k, v in scores.items())
            )
            if not history or history[-1]["step"] != done:  # an evaluation step that logged no loss
                history.append({"step": done})
            history[-1]["eval"] = scores
            if out is not None and done < recipe.steps:
                # The latest evaluated weights, for inspection while training runs; never in ``out``
                # itself, where an interrupted run would pass for a finished (or cached) model.
                trainer.save(partial_folder(out))
    seconds = time.time() - start
    log(f"[{recipe.name}] done in {seconds / 60:.1f} min")
    if out is not None:
        trainer.save(out)
        shutil.rmtree(partial_folder(out), ignore_errors=True)
        log(f"[{recipe.name}] saved to {out}")
    return seconds, history


def second_stage(recipe: Recipe, first_stage_folder: Path) -> Recipe:
    """The recipe of ``recipe``'s second stage, starting from the first stage's saved weights."""
    if not recipe.second_stage:
        raise ValueError(f"recipe {recipe.name} has no second stage")
    return replace(
        recipe,
        **{"alignment_steps": 0, **recipe.second_stage},
        init_from=str(first_stage_folder),
        second_stage=None,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=None, help="seed (default: the recipe's, 0)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: dllm/zoo/models/NAME)"
    )
    parser.add_argument("--init-from", default=None, help="checkpoint to start from ('none' = scratch)")
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--tasks", nargs="+", default=None, help="restrict the training mix to these tasks")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup steps (default: the recipe's)")
    parser.add_argument(
        "--alignment-steps",
        type=int,
        default=None,
        help="curriculum: steps on the list-copying tasks only before the full mix",
    )
    parser.add_argument(
        "--stage",
        choices=["all", "1", "2"],
        default="all",
        help="recipes with a second stage: run both (default), only the first, or only the "
        "second (from --init-from, default the output folder)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads (1 is much faster when other jobs load the machine)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on (e.g. cuda); the recipe's "
        "data and noise streams are the same on every device",
    )
    args = parser.parse_args(argv)
    recipe = RECIPES[args.name]
    if args.stage != "all" and not recipe.second_stage:
        parser.error(f"--stage {args.stage}: recipe {args.name} has a single stage")
    changes = {}
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.seed is not None:
        changes["seed"] = args.seed
    for key in ("eval_every", "lr", "warmup", "batch_size", "alignment_steps"):
        if getattr(args, key) is not None:
            changes[key] = getattr(args, key)
    if args.tasks is not None:
        changes["tasks"] = tuple(args.tasks)
    if args.init_from is not None:
        changes["init_from"] = None if args.init_from == "none" else args.init_from
    recipe = replace(recipe, **changes)
    out = args.out if args.out is not None else MODELS_DIR / recipe.name
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    if args.stage != "2":
        train(replace(recipe, second_stage=None), out, log=log, threads=args.threads, device=args.device)
    if recipe.second_stage and args.stage != "1":  # command-line overrides apply to the first stage only
        first = Path(args.init_from) if args.stage == "2" and args.init_from else out
        train(second_stage(RECIPES[args.name], first), out, log=log, threads=args.threads, device=args.device)


if __name__ == "__main__":
    main()
