"""Train a Learn2PD filter for a model: ``python -m dllm.zoo.learn2pd_train MODEL [--prompts N] [--out DIR]``.

Recipe (Learn2PD, arXiv:2509.25188, ``generate_training_data.py`` + ``train.ipynb``), on train-split
prompts of the project's tasks (never the eval split):

1. Reference output ``y*``: decode every prompt with the LLaDA sampler, one token per step
   (greedy, ``gen_length`` / ``block_length`` as used at inference).
2. Replay ("extremely greedy parallel" oracle decoding): per block, while it has masks: one
   forward; record the block's confidences (features, ``dllm.confidence_filter.block_confidences``)
   and, per position, whether the current prediction equals ``y*`` (labels); then commit every
   masked block position whose prediction equals ``y*``. When none does, ``y*`` is written into
   the rest of the block (the reference's anti-stall: with greedy decoding the next forward
   would be identical and the reference then writes ``y*``; we skip that duplicate forward).
3. Train ``ConfidenceFilter`` with ``BCEWithLogitsLoss`` and AdamW (lr 3e-3), full batch, on an
   80/10/10 split; report validation loss and, at the inference threshold, the precision of
   accepted masked positions. The reference runs 40 000 epochs; ``--epochs`` defaults to 3 000 and
   the weights of the epoch with the lowest validation loss are kept (on a few thousand samples
   the filter starts to overfit after a few hundred epochs).

The filter is written to ``dllm/zoo/filters/<model>/`` (``filter.safetensors`` + ``filter.json``
with the recipe and the validation numbers), where ``dllm.samplers.get("learn2pd", model=...)``
finds it. Same command, same seed -> same filter.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import dllm
from dllm import tasks as task_lib
from dllm.confidence_filter import DEFAULT_THRESHOLD, ConfidenceFilter, block_confidences, weights_fingerprint
from dllm.samplers import Sampler  # the interface the replay implements (no plugin module)
from dllm.state import Decision
from dllm.zoo import FILTERS_DIR


@dataclass
class OracleReplay(Sampler):
    """Commits exactly the block positions whose prediction equals the reference; records samples."""

    targets: torch.Tensor = None  # [B, G] reference canvas per row
    block: int = 32
    features: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    masked: list = field(default_factory=list)

    def select(self, view):
        st = view.state
        target = self.targets.gather(1, (view.cols - st.gen_start).clamp(0, self.targets.shape[1] - 1))
        feats, index, inside = block_confidences(view, self.block)
        live = view.cand.any(1)
        match = (view.pred == target).gather(1, index) & inside
        is_mask = (st.tokens.gather(1, view.cols) == st.mask_id).gather(1, index) & inside
        self.features.append(feats[live])
        self.labels.append(match[live].float())
        self.masked.append(is_mask[live])
        commit = view.cand & (view.pred == target)
        stalled = ~commit.any(1, keepdim=True)
        return Decision(commit=commit | (view.cand & stalled), tokens=target)


def reference_outputs(model, prompts, gen_length, block_length, batch):
    out = []
    for i in range(0, len(prompts), batch):
        results = dllm.generate(
            model, prompts[i : i + batch], sampler="llada", gen_length=gen_length, block_length=block_length
        )
        out += [r.canvas for r in results]
    return torch.tensor(out)


def collect(model, prompts, gen_length=128, block_length=32, batch=32, log=print):
    """(features [N, K], labels [N, K], masked [N, K]) from the oracle replay of ``prompts``."""
    feats, labels, masked = [], [], []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        targets = reference_outputs(model, chunk, gen_length, block_length, batch)
        replay = OracleReplay(targets=targets, block=block_length)
        dllm.generate(model, chunk, sampler=replay, gen_length=gen_length, block_length=block_length)
        feats += replay.features
        labels += replay.labels
        masked += replay.masked
        log(f"  prompts {i + len(chunk)}/{len(prompts)}: {sum(len(f) for f in feats)} samples")
    return torch.cat(feats), torch.cat(labels), torch.cat(masked)


def train_filter(
    features,
    labels,
    masked,
    *,
    block_length=32,
    hidden=64,
    epochs=3000,
    lr=3e-3,
    seed=0,
    threshold=0.96,
    log=print,
):
    """Full-batch BCE training on an 80/10/10 split; returns the filter and its held-out numbers."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(features), generator=gen)
    n_train, n_val = int(0.8 * len(order)), int(0.1 * len(order))
    parts = {
        "train": order[:n_train],
        "val": order[n_train : n_train + n_val],
        "test": order[n_train + n_val :],
    }
    torch.manual_seed(seed)
    module = ConfidenceFilter(block_length, hidden)
    optim = torch.optim.AdamW(module.parameters(), lr=lr)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    x, y = features[parts["train"]], labels[parts["train"]]
    x_val, y_val = features[parts["val"]], labels[parts["val"]]
    best, best_state, best_epoch = float("inf"), None, 0
    for epoch in range(epochs):
        optim.zero_grad()
        loss = loss_fn(module(x), y)
        loss.backward()
        optim.step()
        with torch.no_grad():
            val = loss_fn(module(x_val), y_val).item()
        if val < best:  # keep the weights of the best validation loss (the filters are small: they overfit)
            best, best_epoch = val, epoch + 1
            best_state = {k: v.clone() for k, v in module.state_dict().items()}
        if (epoch + 1) % max(1, epochs // 10) == 0:
            log(
                f"  epoch {epoch + 1}: train loss {loss.item():.4f}, val loss {val:.4f}"
                f" (best {best:.4f} at {best_epoch})"
            )
    module.load_state_dict(best_state)
    stats = {name: evaluate(module, features, labels, masked, idx, threshold) for name, idx in parts.items()}
    return module.eval(), {**stats, "best_epoch": best_epoch}


def evaluate(module, features, labels, masked, idx, threshold) -> dict:
    with torch.no_grad():
        logits = module(features[idx])
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[idx]).item()
    accept = (torch.sigmoid(logits) > threshold) & masked[idx]
    right = (accept & (labels[idx] > 0.5)).sum().item()
    return {
        "loss": round(loss, 4),
        "accepted_per_sample": round(accept.sum().item() / max(1, len(idx)), 3),
        "precision": round(right / max(1, accept.sum().item()), 4),
        "recall": round(right / max(1, ((labels[idx] > 0.5) & masked[idx]).sum().item()), 4),
    }


def training_prompts(model, n: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [model.encode(task_lib.training_mix(rng).prompt) for _ in range(n)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="shipped model name or checkpoint folder")
    parser.add_argument("--prompts", type=int, default=384, help="train-split prompts to replay")
    parser.add_argument("--gen-length", type=int, default=128)
    parser.add_argument("--block-length", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", help="output folder (default dllm/zoo/filters/<model>)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.time()
    model = dllm.load(args.model)
    name = Path(args.model).name
    threshold = DEFAULT_THRESHOLD[bool(model.shift)]
    print(f"[learn2pd] {name}: replaying {args.prompts} train prompts")
    prompts = training_prompts(model, args.prompts, args.seed)
    features, labels, masked = collect(model, prompts, args.gen_length, args.block_length, args.batch)
    print(
        f"[learn2pd] {len(features)} samples, {labels[masked].mean():.3f} of masked positions already final"
    )
    module, stats = train_filter(
        features,
        labels,
        masked,
        block_length=args.block_length,
        hidden=args.hidden,
        epochs=args.epochs,
        seed=args.seed,
        threshold=threshold,
    )
    out = Path(args.out) if args.out else FILTERS_DIR / name
    module.save(
        out,
        model=name,
        model_fingerprint=weights_fingerprint(model.path),
        threshold=threshold,
        prompts=args.prompts,
        gen_length=args.gen_length,
        epochs=args.epochs,
        seed=args.seed,
        samples=len(features),
        held_out=stats,
        command=f"python -m dllm.zoo.learn2pd_train {args.model} --prompts {args.prompts}"
        f" --epochs {args.epochs}"
        f" --seed {args.seed}",
    )
    print(f"[learn2pd] wrote {out} in {time.time() - start:.0f}s: {json.dumps(stats)}")


if __name__ == "__main__":
    main()
