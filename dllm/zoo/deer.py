"""DEER's two-stage Diffusion-to-AR alignment of a diffusion drafter to its AR verifier.

    python -m dllm.zoo.deer [--stages 1 2] [--init tiny-dream-draft] [--alpha 1.01] [--r-max 32] [--out DIR]

A pretrained dLLM denoises whole sequences and leans on tokens to its right; as a drafter it only
sees the committed prefix and must fill a block of masks after it. DEER (Cheng et al., "DEER:
Draft with Diffusion, Verify with Autoregressive Models", arXiv 2512.15176, §3.1) aligns it on
the **verifier's own answers**:

- **Stage I, continuation distillation**: a teacher answer (greedy or sampled from tiny-ar) is cut
  at a random point; the prompt and the answer up to the cut are visible; the next block of
  ``block`` positions (the answer's continuation, EOS-padded past its end, as a drafting block
  at inference) is masked at rate t (fully masked for ``full_mask_share`` of the examples, since
  drafting starts from a fully masked block); loss: cross-entropy on the masked positions weighted
  1/t (LLaDA's), divided by the block tokens.
- **Stage II, prefix-conditioned refinement**: the answer is truncated at a random point and only
  its last R tokens are masked, R ~ U{1..r_max}; position i = 1..R (1 = right after the visible
  prefix) is weighted alpha^(R−i), so the tokens next to the prefix, which decide acceptance, weigh
  most (alpha = 1.01, the paper's stable value).

Deviations (the paper's numbers are for 0.5B drafters and answers of hundreds of tokens): r_max = 32
(paper 96; our answers are ≤ 30 tokens), blocks of 8–32 positions, and no ``[SEP]`` after the block:
the shipped tokenizer has no spare special token, so the block simply ends the canvas (at
inference too). The base model is ``tiny-dream-draft`` (2 layers): a drafter much cheaper than
its verifier is the setting DEER targets (0.5B drafting for 4B–30B). Teacher answers are generated
once per seed and cached in ``~/.cache/dllm/zoo``. Ablations: ``--stages 1`` (Stage I only),
``--stages 2`` (Stage II only), and the base model itself as a drafter (no alignment).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from dllm import tasks as task_lib

from .train import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    MODELS_DIR,
    PAD_ID,
    STAGE_CACHE,
    Recipe,
    layout_diffusion,
    lr_at,
    make_optimizer,
    save_diffusion,
)


@dataclass
class DeerRecipe:
    name: str = "tiny-deer"
    init: str = "tiny-dream-draft"  # the diffusion model that is aligned
    teacher: str = "tiny-ar"  # the verifier whose answers it learns
    prompts_per_task: int = 300  # train-split prompts per task; each gets a greedy and a sampled answer
    stages: tuple = (1, 2)
    stage1_steps: int = 1200
    stage1_lr: float = 5e-4
    stage2_steps: int = 600
    stage2_lr: float = 2e-4
    blocks: tuple = (8, 16, 24, 32)  # Stage I block lengths (drafting k at inference)
    full_mask_share: float = 0.5
    t_min: float = 0.1
    alpha: float = 1.01
    r_max: int = 32
    batch_size: int = 64
    warmup: int = 50
    seed: int = 0
    log_every: int = 50
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        from dllm.config import check_range

        check_range("DeerRecipe", "alpha", self.alpha, 1.0)
        check_range("DeerRecipe", "r_max", self.r_max, 1)
        check_range("DeerRecipe", "full_mask_share", self.full_mask_share, 0.0, 1.0)
        if not self.stages or any(s not in (1, 2) for s in self.stages):
            raise ValueError(f"DeerRecipe.stages={self.stages!r}; expected 1, 2 or both")


def stage2_weights(r: int, alpha: float) -> torch.Tensor:
    """DEER Stage II weights w_i = alpha^(R − i) for i = 1..R (the first masked token weighs most)."""
    return alpha ** (r - torch.arange(1, r + 1, dtype=torch.float64))


# ----------------------------------------------------------------------------------- teacher data
def teacher_answers(recipe: DeerRecipe, log=print) -> list[tuple[list[int], list[int]]]:
    """``(prompt ids with BOS, answer ids ending in EOS)`` from the teacher, greedy and sampled (T = 1)."""
    cache = STAGE_CACHE / f"deer-data-{recipe.teacher}-n{recipe.prompts_per_task}-seed{recipe.seed}.json"
    if cache.exists():
        return [tuple(pair) for pair in json.loads(cache.read_text())]
    import dllm

    teacher = dllm.load(recipe.teacher)
    tokenizer = teacher.tokenizer
    rng = random.Random(recipe.seed)
    torch.manual_seed(recipe.seed)
    pairs, start = [], time.time()
    for name in task_lib.names():
        task = task_lib.get(name)
        prompts = [
            [BOS_ID] + tokenizer.encode(task.sample_split(rng, "train").prompt, add_special_tokens=False)
            for _ in range(recipe.prompts_per_task)
        ]
        for sampled in (False, True):
            for i in range(0, len(prompts), 128):
                pairs += zip(
                    prompts[i : i + 128],
                    _generate(teacher.net, prompts[i : i + 128], task.max_new_tokens, sampled),
                )
    log(
        f"[{recipe.name}] {len(pairs)} teacher answers from {recipe.teacher}"
        f" in {time.time() - start:.0f}s -> {cache}"
    )
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(pairs))
    return pairs


@torch.no_grad()
def _generate(net, prompts: list[list[int]], max_new_tokens: int, sampled: bool) -> list[list[int]]:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), PAD_ID, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        attn[row, width - len(p) :] = 1
    out = net.generate(
        input_ids=ids,
        attention_mask=attn,
        max_new_tokens=max_new_tokens,
        do_sample=sampled,
        temperature=1.0 if sampled else None,
        top_k=None,
        top_p=None,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
    )
    answers = []
    for row in out[:, width:].tolist():
        answers.append(row[: row.index(EOS_ID) + 1] if EOS_ID in row else row + [EOS_ID])
    return answers


# ----------------------------------------------------------------------------------- batches
def stage1_batch(pairs, recipe: DeerRecipe, rng: random.Random, generator: torch.Generator):
    """Visible prompt + answer prefix, then a block of the continuation masked at rate t."""
    prefixes, blocks = [], []
    for prompt, answer in rng.sample(pairs, recipe.batch_size):
        cut = rng.randrange(len(answer))
        size = rng.choice(recipe.blocks)
        prefixes.append(prompt + answer[:cut])
        blocks.append((answer + [EOS_ID] * size)[cut : cut + size])
    tokens, positions, valid, block = layout_diffusion(prefixes, blocks, [len(b) for b in blocks])
    t = recipe.t_min + (1 - recipe.t_min) * torch.rand(len(blocks), 1, generator=generator)
    full = torch.rand(len(blocks), 1, generator=generator) < recipe.full_mask_share
    t = torch.where(full, torch.ones_like(t), t)
    masked = (torch.rand(tokens.shape, generator=generator) < t) & block
    weights = (1.0 / t).expand_as(tokens)
    return tokens, positions, valid, masked, weights, block


def stage2_batch(pairs, recipe: DeerRecipe, rng: random.Random):
    """A truncated answer whose last R tokens are masked, weighted alpha^(R - i)."""
    prefixes, blocks = [], []
    for prompt, answer in rng.sample(pairs, recipe.batch_size):
        end = rng.randint(1, len(answer))
        r = min(rng.randint(1, recipe.r_max), end)
        prefixes.append(prompt + answer[: end - r])
        blocks.append(answer[end - r : end])
    tokens, positions, valid, block = layout_diffusion(prefixes, blocks, [len(b) for b in blocks])
    weights = torch.zeros(tokens.shape, dtype=torch.float32)
    start = tokens.shape[1] - max(len(b) for b in blocks)
    for row, b in enumerate(blocks):
        weights[row, start : start + len(b)] = stage2_weights(len(b), recipe.alpha).float()
    return tokens, positions, valid, block.clone(), weights, block


def masked_loss(net, tokens, positions, valid, masked, weights, block) -> torch.Tensor:
    """Weighted cross-entropy on the masked positions, divided by the number of block tokens."""
    noisy = torch.where(masked, torch.full_like(tokens, MASK_ID), tokens)
    logits = net(noisy, positions, valid)
    ce = F.cross_entropy(logits[masked].float(), tokens[masked], reduction="none")
    return (ce * weights[masked]).sum() / block.sum().clamp(min=1)


# ----------------------------------------------------------------------------------- training
def train(
    recipe: DeerRecipe, out: Path | None, threads: int = 1, log=print, stage1_out: Path | None = None
) -> dict:
    import dllm

    torch.set_num_threads(threads)
    start = time.time()
    pairs = teacher_answers(recipe, log)
    data_seconds = time.time() - start
    net = dllm.load(recipe.init).net.train()
    for p in net.parameters():
        p.requires_grad_(True)
    rng, generator = random.Random(recipe.seed + 1), torch.Generator().manual_seed(recipe.seed + 2)
    history = []
    for stage in recipe.stages:
        steps, lr = (
            (recipe.stage1_steps, recipe.stage1_lr) if stage == 1 else (recipe.stage2_steps, recipe.stage2_lr)
        )
        schedule = Recipe(recipe.name, "dream", steps=steps, lr=lr, warmup=recipe.warmup)
        optimizer = make_optimizer(net.parameters(), schedule)
        running = []
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, schedule)
            batch = (
                stage1_batch(pairs, recipe, rng, generator)
                if stage == 1
                else stage2_batch(pairs, recipe, rng)
            )
            loss = masked_loss(net, *batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            running.append(float(loss.detach()))
            if (step + 1) % recipe.log_every == 0 or step + 1 == steps:
                mean = sum(running) / len(running)
                running = []
                history.append({"stage": stage, "step": step + 1, "loss": round(mean, 5)})
                log(
                    f"[{recipe.name}] stage {stage} step {step + 1}/{steps} loss {mean:.4f} "
                    f"elapsed {time.time() - start:.0f}s"
                )
        if stage == 1 and stage1_out is not None and len(recipe.stages) > 1:
            save_diffusion(net.eval(), stage1_out)
            net.train()
            log(f"[{recipe.name}] Stage I weights saved to {stage1_out}")
    seconds = time.time() - start
    log(f"[{recipe.name}] done in {seconds / 60:.1f} min (teacher data {data_seconds:.0f}s)")
    if out is not None:
        save_diffusion(net.eval(), out)
        (Path(out) / "deer_recipe.json").write_text(
            json.dumps({**asdict(recipe), "seconds": round(seconds), "history": history}, indent=1) + "\n"
        )
        log(f"[{recipe.name}] saved to {out}")
    return {"seconds": seconds, "history": history, "net": net}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stages", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    parser.add_argument("--init", default="tiny-dream-draft", help="diffusion model to align")
    parser.add_argument("--teacher", default="tiny-ar")
    parser.add_argument("--alpha", type=float, default=1.01)
    parser.add_argument("--r-max", type=int, default=32)
    parser.add_argument("--stage1-steps", type=int, default=1200)
    parser.add_argument("--stage2-steps", type=int, default=600)
    parser.add_argument("--prompts-per-task", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: dllm/zoo/models/tiny-deer)"
    )
    parser.add_argument("--stage1-out", type=Path, default=None, help="also save the Stage I weights here")
    args = parser.parse_args(argv)
    recipe = DeerRecipe(
        stages=tuple(args.stages),
        init=args.init,
        teacher=args.teacher,
        alpha=args.alpha,
        r_max=args.r_max,
        stage1_steps=args.stage1_steps,
        stage2_steps=args.stage2_steps,
        prompts_per_task=args.prompts_per_task,
        seed=args.seed,
    )
    train(
        recipe,
        args.out if args.out is not None else MODELS_DIR / recipe.name,
        threads=args.threads,
        log=lambda m: print(m, flush=True),
        stage1_out=args.stage1_out,
    )


if __name__ == "__main__":
    main()
