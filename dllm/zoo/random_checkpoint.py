"""Build a small random-weight checkpoint folder in a real layout (LLaDA or Dream) with the shipped tokenizer.

For trying the whole pipeline (loading, generation, CLI) where no trained model is at hand; the
output is meaningless text. ``python -m dllm.zoo.random_checkpoint llada OUT_DIR [--seed 0]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dllm.models.config import small_layout
from dllm.models.loading import save_pretrained
from dllm.models.transformer import Transformer
from dllm.zoo import tokenizer_dir

TOKENIZER_DIR = tokenizer_dir()


def build(arch: str, out: str | Path, seed: int = 0, d_model: int = 64, n_layers: int = 2) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    rms_eps = 1e-5 if arch == "llada" else 1e-6  # each architecture's own default
    cfg = small_layout(arch, tokenizer, d_model=d_model, n_layers=n_layers, rms_eps=rms_eps)
    torch.manual_seed(seed)
    net = Transformer(cfg)
    return save_pretrained(net, out, tokenizer=tokenizer)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=["llada", "dream"])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build(args.arch, args.out, seed=args.seed))


if __name__ == "__main__":
    main()
