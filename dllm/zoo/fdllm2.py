"""Training recipe of ``tiny-fdllm2``: ``tiny-ar`` adapted into a block-diffusion LM (Fast-dLLM v2 recipe).

``python -m dllm.zoo.fdllm2 [--stage all|1|2] [--steps N] [--out DIR] [--threads 1]``

Two stages (``--stage all``, the default): 1,500 steps from ``tiny-ar`` (kept in ``~/.cache/dllm/zoo``),
then 600 steps from them with a fresh optimizer (``SECOND_STAGE``). ``--stage 2 --init-from DIR`` runs
the second alone.

Idea (Wu et al., "Fast-dLLM v2: Efficient Block-Diffusion LLM", arXiv:2509.26328; the
``Fast_dLLM_QwenForCausalLM.forward`` training branch of ``Efficient-Large-Model/Fast_dLLM_v2_7B``):
an AR model keeps its weights, its next-token logit shift and its RoPE, and is fine-tuned to denoise
one block of ``bd_size`` tokens at a time given the clean blocks before it.

* Sequence ``[BOS] prompt answer EOS...``: the answer is followed by EOS up to the end of the block
  (block ids = position // bd_size, counted from BOS) that holds the first EOS, sometimes one more
  EOS block; rows are right-padded (padding hidden as keys). Only answer + EOS tokens are noised.
* Noise: one ``t ~ U(0, 1)`` per block, each response token masked with ``p = (1 - eps) t + eps``
  (eps = 1e-3). **Complementary masks**: the batch is duplicated with the complement pattern
  (inside the response), so every token is trained once masked and once visible.
* Layout ``[x_t ; x_0]`` (2n columns, both halves with the same positions) with the block-diffusion
  training mask (``block_diff_mask`` of the reference): x_t attends its own block of x_t and the
  *strictly earlier* blocks of x_0; x_0 is block-causal over itself; x_0 never sees x_t. Here it is
  an explicit boolean mask (``Transformer(attn_mask=...)``), not FlexAttention.
* Loss: the AR-shifted cross-entropy (hidden state at column j-1 predicts token j, computed on the
  x_t half) on masked tokens, mean over the masked tokens of both complementary copies (the
  reference's ``ForCausalLM`` loss; no 1/t weight).

Reused from ``dllm.zoo.train``: ``Recipe`` (optimizer and schedule fields), the task stream and
tokenization, weight init from a checkpoint, ``lr_at``, ``make_optimizer``, saving.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from dllm.models.transformer import Transformer
from dllm.zoo import MODELS_DIR
from dllm.zoo import train as zoo_train
from dllm.zoo.train import BOS_ID, EOS_ID, MASK_ID, PAD_ID

NAME = "tiny-fdllm2"
BD_SIZE = 32  # Fast-dLLM v2's bd_size
SUB_BLOCK = 8  # its small_block_size (decoding default)
NOISE_EPS = 1e-3
EXTRA_EOS_BLOCK = 0.15  # probability of one more all-EOS block after the answer's block

RECIPE = zoo_train.Recipe(
    NAME,
    "dream",
    n_kv_heads=3,
    qkv_bias=True,
    steps=1500,
    batch_size=24,
    lr=5e-4,
    warmup=50,
    eval_every=500,
    init_from="tiny-ar",
    seed=0,
)
# Second stage, from the first stage's weights: a fresh optimizer and cosine cycle, a new data seed.
SECOND_STAGE = {"steps": 600, "lr": 3e-4, "warmup": 20, "seed": 1, "eval_every": 300}
EVAL_TASKS = zoo_train.QUICK_EVAL_TASKS


def model_config(recipe=RECIPE, bd_size: int = BD_SIZE):
    """tiny-ar's dimensions in the Fast-dLLM v2 layout (Qwen2 names, shifted logits, ``block_size``)."""
    return replace(recipe.model_config(), arch="fast_dllm_v2", block_size=bd_size, max_seq_len=1024)


def build(recipe=RECIPE, bd_size: int = BD_SIZE) -> Transformer:
    net = Transformer(model_config(recipe, bd_size))
    zoo_train._init_weights(net)
    if recipe.init_from:
        zoo_train.init_from_checkpoint(net, recipe.init_from)
    return net


# ----------------------------------------------------------------------------------- data
def layout(prompts, targets, bd_size: int, rng: random.Random):
    """Right-padded ``[BOS] prompt answer EOS..`` rows -> (tokens, valid, response) ``[B, L]``;
    each row ends at a block boundary (positions are column indices: no left padding)."""
    rows, starts = [], []
    for p, t in zip(prompts, targets):
        body = p + t + [EOS_ID]
        end = -(-len(body) // bd_size) * bd_size
        if rng.random() < EXTRA_EOS_BLOCK:
            end += bd_size
        rows.append(body + [EOS_ID] * (end - len(body)))
        starts.append(len(p))
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    valid = torch.zeros_like(tokens, dtype=torch.bool)
    response = torch.zeros_like(valid)
    for i, (r, s) in enumerate(zip(rows, starts)):
        tokens[i, : len(r)] = torch.tensor(r)
        valid[i, : len(r)] = True
        response[i, s : len(r)] = True
    return tokens, valid, response


def training_mask(valid: torch.Tensor, bd_size: int) -> torch.Tensor:
    """``[B, 1, 2L, 2L]`` boolean mask of the ``[x_t ; x_0]`` layout (True = may attend)."""
    length = valid.shape[1]
    idx = torch.arange(2 * length)
    clean = idx >= length
    block = (idx % length) // bd_size
    q_clean, k_clean = clean[:, None], clean[None, :]
    q_blk, k_blk = block[:, None], block[None, :]
    diagonal = (q_blk == k_blk) & (q_clean == k_clean)
    offset_causal = (q_blk > k_blk) & k_clean & ~q_clean
    causal_clean = (q_blk >= k_blk) & k_clean & q_clean
    allowed = diagonal | offset_causal | causal_clean
    keys = torch.cat([valid, valid], dim=1)
    return allowed[None, None] & keys[:, None, None, :]


def block_noise(tokens, response, bd_size: int, generator: torch.Generator):
    """(masked, complement) ``[B, L]``: per-block ``t``, complementary patterns inside the response."""
    batch, length = tokens.shape
    n_blocks = -(-length // bd_size)
    t = torch.rand(batch, n_blocks, generator=generator)
    p = ((1 - NOISE_EPS) * t + NOISE_EPS).repeat_interleave(bd_size, dim=1)[:, :length]
    masked = (torch.rand(batch, length, generator=generator) < p) & response
    return masked, ~masked & response


def block_diffusion_loss(net: Transformer, tokens, valid, response, generator, bd_size: int = BD_SIZE):
    masked, complement = block_noise(tokens, response, bd_size, generator)
    noise = torch.cat([masked, complement])
    clean = torch.cat([tokens, tokens])
    x_t = torch.where(noise, torch.full_like(clean, MASK_ID), clean)
    valid2 = torch.cat([valid, valid])
    length = tokens.shape[1]
    positions = torch.arange(length).expand(clean.shape[0], -1)
    logits = net(
        torch.cat([x_t, clean], dim=1),
        torch.cat([positions, positions], dim=1),
        torch.cat([valid2, valid2], dim=1),
        logits_for=positions,
        attn_mask=training_mask(valid2, bd_size),
    )
    ce = F.cross_entropy(logits[noise].float(), clean[noise])
    return ce, {"masked": int(noise.sum())}


# ----------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def block_decode(
    net: Transformer, prompt: list[int], gen_length: int, sub_block: int = SUB_BLOCK, threshold: float = 0.9
) -> tuple[list[int], int]:
    """Fast-dLLM v2 decoding without caches (batch 1), for the trainer's held-out checks: blocks
    aligned to ``bd_size`` over positions, sub-blocks left to right, every masked token of the
    sub-block above ``threshold`` plus the arg-max committed per forward; stop after the block
    holding EOS. Returns (answer ids, forwards)."""
    bd = net.cfg.block_size
    ids = list(prompt)
    limit = len(prompt) + gen_length
    forwards = 0
    while len(ids) < limit:
        end = min(-(-(len(ids) + 1) // bd) * bd, limit)
        start = len(ids)
        x = torch.tensor(ids + [MASK_ID] * (end - start))[None]
        for s in range(start, end, sub_block):
            e = min(s + sub_block, end)
            while (x[0, s:e] == MASK_ID).any():
                logits = net(x, logits_for=torch.arange(s, e)[None])[0].float()
                logits[:, MASK_ID] = float("-inf")
                forwards += 1
                conf, pred = torch.softmax(logits, -1).max(-1)
                open_ = x[0, s:e] == MASK_ID
                conf = torch.where(open_, conf, torch.full_like(conf, -1.0))
                take = (conf > threshold) | (torch.arange(e - s) == conf.argmax())
                take &= open_
                x[0, s:e] = torch.where(take, pred, x[0, s:e])
        ids = x[0].tolist()
        if EOS_ID in ids[len(prompt) :]:
            break
    answer = ids[len(prompt) :]
    return (answer[: answer.index(EOS_ID)] if EOS_ID in answer else answer), forwards


def quick_eval(net: Transformer, tokenizer, n: int = 16, tasks=EVAL_TASKS) -> dict[str, float]:
    from dllm import tasks as task_lib

    was_training = net.training
    net.eval()
    scores = {}
    for name in tasks:
        task = task_lib.get(name)
        examples = task.examples("eval", n, seed=0)
        hits = 0
        for ex in examples:
            prompt = [BOS_ID] + tokenizer.encode(ex.prompt, add_special_tokens=False)
            answer, _ = block_decode(net, prompt, task.max_new_tokens)
            hits += task.score(tokenizer.decode(answer, skip_special_tokens=True), ex)
        scores[name] = hits / len(examples)
    net.train(was_training)
    return scores


# ----------------------------------------------------------------------------------- training
def train(
    recipe=RECIPE, out: Path | None = None, threads: int = 1, bd_size: int = BD_SIZE, log=print
) -> dict:
    torch.set_num_threads(threads)
    start = time.time()
    torch.manual_seed(recipe.seed)
    tokenizer = zoo_train.load_tokenizer()
    stream = zoo_train.TaskStream(recipe.seed, recipe.task_weights, recipe.tasks)
    rng = random.Random(recipe.seed + 1)
    generator = torch.Generator().manual_seed(recipe.seed + 2)
    net = build(recipe, bd_size).train()
    optimizer = zoo_train.make_optimizer(net.parameters(), recipe)
    log(
        f"[{recipe.name}] {sum(p.numel() for p in net.parameters()):,} parameters; bd_size {bd_size};"
        f" {threads} threads;"
        f" recipe {json.dumps({k: v for k, v in vars(recipe).items() if k != 'task_weights'})}"
    )
    trainer = _Trainer(net, optimizer, recipe, tokenizer, stream, rng, generator, bd_size)
    seconds, history = zoo_train.train_loop(trainer, recipe, out, log, start)
    return {"seconds": seconds, "history": history, "net": net}


class _Trainer:
    """One block-diffusion optimisation step per ``step()``, for ``dllm.zoo.train.train_loop``."""

    def __init__(self, net, optimizer, recipe, tokenizer, stream, rng, generator, bd_size):
        self.net, self.optimizer, self.recipe, self.tokenizer = net, optimizer, recipe, tokenizer
        self.stream, self.rng, self.generator, self.bd_size = stream, rng, generator, bd_size
        self.queue, self.steps = [], 0

    def step(self) -> float:
        recipe = self.recipe
        if not self.queue:  # length-sorted pools, as in dllm.zoo.train
            examples = self.stream.draw(recipe.batch_size * zoo_train.POOL)
            prompts, targets = zoo_train.encode_batch(self.tokenizer, examples)
            rows = sorted(zip(prompts, targets), key=lambda r: len(r[0]) + len(r[1]))
            self.queue = [rows[i : i + recipe.batch_size] for i in range(0, len(rows), recipe.batch_size)]
            self.rng.shuffle(self.queue)
        batch = self.queue.pop()
        tokens, valid, response = layout([r[0] for r in batch], [r[1] for r in batch], self.bd_size, self.rng)
        for group in self.optimizer.param_groups:
            group["lr"] = zoo_train.lr_at(self.steps, recipe)
        loss, _ = block_diffusion_loss(self.net, tokens, valid, response, self.generator, self.bd_size)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
        self.optimizer.step()
        self.steps += 1
        return loss.item()

    def evaluate(self) -> dict[str, float]:
        return quick_eval(self.net, self.tokenizer)

    def save(self, folder: Path) -> None:
        zoo_train.save_diffusion(self.net, folder)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--init-from", default=None, help="checkpoint to continue from (default: tiny-ar)")
    parser.add_argument("--bd-size", type=int, default=BD_SIZE)
    parser.add_argument("--out", type=Path, default=None, help="default: dllm/zoo/models/tiny-fdllm2")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--stage",
        choices=["all", "1", "2"],
        default="all",
        help="both stages (default; the first is kept in ~/.cache/dllm/zoo), or one of them",
    )
    args = parser.parse_args(argv)
    changes = {
        k: getattr(args, k)
        for k in ("steps", "batch_size", "lr", "eval_every", "warmup", "seed", "init_from")
        if getattr(args, k) is not None
    }
    out = args.out if args.out is not None else MODELS_DIR / NAME
    log = lambda m: print(m, flush=True)  # noqa: E731
    if args.stage == "1":
        train(replace(RECIPE, **changes), out, threads=args.threads, bd_size=args.bd_size, log=log)
        return
    if args.stage == "2":
        second = replace(RECIPE, **{**SECOND_STAGE, **changes})
        train(second, out, threads=args.threads, bd_size=args.bd_size, log=log)
        return
    first = zoo_train.STAGE_CACHE / f"{NAME}-stage1"
    train(replace(RECIPE, **changes), first, threads=args.threads, bd_size=args.bd_size, log=log)
    second = replace(RECIPE, **{**SECOND_STAGE, "init_from": str(first)})
    train(second, out, threads=args.threads, bd_size=args.bd_size, log=log)


if __name__ == "__main__":
    main()
