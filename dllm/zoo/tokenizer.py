"""The project's small byte-level BPE tokenizer, trained on the ParallelBench-style task corpus.

``build_tokenizer(out_dir)`` trains a byte-level BPE (HF ``tokenizers``) on train-split prompts and
targets of every task in :mod:`dllm.tasks` and saves it so that
``transformers.AutoTokenizer.from_pretrained(out_dir)`` returns a ``PreTrainedTokenizerFast``.
The shipped copy lives in ``dllm/zoo/tokenizer/`` (:data:`SHIPPED_DIR`, :func:`load_tokenizer`);
rebuild it with ``python -m dllm.zoo.tokenizer dllm/zoo/tokenizer`` (the build is deterministic).

Design:

* Pre-tokenisation is one regex split followed by the byte-level mapping.  The regex is GPT-2-like
  (letters run together with an optional leading space) except that **every digit is its own piece**,
  optionally with the space before it (``" 12"`` -> ``" 1"``, ``"2"``), so numbers, Sudoku cells and
  running sums tokenise digit by digit.  BPE merges never cross pieces.
* All 256 byte symbols are in the vocabulary, so any text (any unicode) encodes and decodes exactly.
* Special tokens, ids 0-3: ``<|pad|>``, ``<|startoftext|>`` (BOS), ``<|endoftext|>`` (EOS),
  ``<|mask|>`` (mask).  No post-processor: nothing is added when encoding; the framework adds BOS
  and EOS itself.
* The corpus repeats every first and last name (with and without its leading space) so that each
  one is a single token in both forms; :func:`build_tokenizer` checks this and raises otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import Iterator

from dllm.zoo import tokenizer_dir

PAD_TOKEN = "<|pad|>"
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MASK_TOKEN = "<|mask|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, MASK_TOKEN]

SHIPPED_DIR = tokenizer_dir()

# GPT-2 style split, but single digits (each with an optional leading space).
SPLIT_PATTERN = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

DEFAULT_VOCAB_SIZE = 1024
DEFAULT_N_EXAMPLES = 1000  # train examples per task in the corpus
_NAME_REPEATS = 200  # extra occurrences of every name (each form) in the corpus
_SEED = 1234


def _corpus(n_examples: int) -> Iterator[str]:
    from dllm import tasks
    from dllm.tasks.names import FIRST_NAMES, LAST_NAMES

    for name in tasks.names():
        for ex in tasks.get(name).examples("train", n_examples, seed=_SEED):
            yield ex.prompt + ex.target + "\n"
    rng = random.Random(_SEED)
    words = list(FIRST_NAMES) + list(LAST_NAMES)
    for _ in range(_NAME_REPEATS):
        rng.shuffle(words)
        yield " ".join(words) + "\n"  # leading-space forms (and the first one bare)
        yield "\n".join(words) + "\n"  # bare forms, as at the start of an answer line


def _make_backend(vocab_size: int, n_examples: int):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(n_examples), trainer=trainer)
    return tok


def name_tokenization_problems(tokenizer) -> list[str]:
    """Names that are not one token, either as ``" Name"`` or as ``"Name"`` (empty = all good).

    ``tokenizer`` is a ``tokenizers.Tokenizer`` or a transformers fast tokenizer.
    """
    from tokenizers import Tokenizer

    from dllm.tasks.names import FIRST_NAMES, LAST_NAMES

    def n_tokens(text: str) -> int:
        if isinstance(tokenizer, Tokenizer):
            return len(tokenizer.encode(text, add_special_tokens=False).ids)
        return len(tokenizer.encode(text, add_special_tokens=False))

    bad = []
    for name in FIRST_NAMES + LAST_NAMES:
        for form in (" " + name, name):
            if n_tokens(form) != 1:
                bad.append(repr(form))
    return bad


def build_tokenizer(
    out_dir: str | os.PathLike, vocab_size: int = DEFAULT_VOCAB_SIZE, n_examples: int = DEFAULT_N_EXAMPLES
) -> Path:
    """Train the tokenizer and write ``tokenizer.json``, ``tokenizer_config.json`` and
    ``special_tokens_map.json`` into ``out_dir``.  Returns the directory.

    Raises ``RuntimeError`` if some first or last name does not end up as a single token.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok = _make_backend(vocab_size, n_examples)
    bad = name_tokenization_problems(tok)
    if bad:
        raise RuntimeError(
            f"names split into several tokens: {', '.join(bad)}; raise vocab_size or the name repeats"
        )
    tok.save(str(out / "tokenizer.json"), pretty=True)

    special_map = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "mask_token": MASK_TOKEN,
        "pad_token": PAD_TOKEN,
    }
    added = {
        str(tok.token_to_id(t)): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t in SPECIAL_TOKENS
    }
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "added_tokens_decoder": added,
        **special_map,
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
        "padding_side": "right",
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special_map, indent=2) + "\n")
    return out


def load_tokenizer(path: str | os.PathLike | None = None):
    """``AutoTokenizer.from_pretrained`` on ``path`` (default: the shipped tokenizer)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or SHIPPED_DIR))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m dllm.zoo.tokenizer", description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--vocab-size", type=int, default=DEFAULT_VOCAB_SIZE)
    ap.add_argument("--n-examples", type=int, default=DEFAULT_N_EXAMPLES)
    args = ap.parse_args(argv)
    out = build_tokenizer(args.out_dir, args.vocab_size, args.n_examples)
    tok = load_tokenizer(out)
    print(f"wrote {out} (vocab size {len(tok)})")


if __name__ == "__main__":
    main()
