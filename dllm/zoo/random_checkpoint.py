"""Build a small random-weight checkpoint folder in a real layout (LLaDA or Dream) with the shipped tokenizer.

For trying the whole pipeline (loading, generation, CLI) where no trained model is at hand; the
output is meaningless text. ``python -m dllm.zoo.random_checkpoint llada OUT_DIR [--seed 0]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from dllm.models.config import ModelConfig
from dllm.models.loading import save_pretrained
from dllm.models.transformer import Transformer
from dllm.zoo import tokenizer_dir

TOKENIZER_DIR = tokenizer_dir()


def build(arch: str, out: str | Path, seed: int = 0, d_model: int = 64, n_layers: int = 2) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(TOKENIZER_DIR))
    shifted = arch == "dream"
    cfg = ModelConfig(
        arch=arch,
        d_model=d_model,
        n_layers=n_layers,
        n_heads=4,
        n_kv_heads=2 if shifted else 4,
        head_dim=d_model // 4,
        mlp_hidden=2 * d_model,
        vocab_size=len(tokenizer),
        rope_theta=10000.0,
        rms_eps=1e-5 if arch == "llada" else 1e-6,
        qkv_bias=shifted,
        shift_logits=shifted,
        rope_fp32=not shifted,
        max_seq_len=512,
        mask_token_id=tokenizer.mask_token_id,
        eos_token_ids=[tokenizer.eos_token_id],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
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
