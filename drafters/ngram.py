"""A token-level n-gram language model: DiffuSpec's causal-consistency proxy.

DiffuSpec scores candidate paths with a 3-gram KenLM fitted on each dataset's training split; we
fit a token-level model over the verifier's token ids (so no word segmentation is involved) with
interpolated Witten–Bell smoothing, on a corpus the caller names: ``"tasks"`` (the train split of
the project's task generators, encoded as the models were trained: BOS + prompt + answer + EOS) or
a text file (one document per line).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path


class NgramModel:
    """P(token | previous order-1 tokens), Witten–Bell interpolated down to an add-one unigram."""

    def __init__(self, sequences, order: int, vocab_size: int):
        if order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {order}")
        self.order, self.vocab_size = order, vocab_size
        self.counts = [defaultdict(Counter) for _ in range(order)]  # counts[n][history of n tokens][token]
        for seq in sequences:
            for i, token in enumerate(seq):
                for n in range(order):
                    if i - n < 0:
                        break
                    self.counts[n][tuple(seq[i - n : i])][token] += 1
        self.totals = [{h: (sum(c.values()), len(c)) for h, c in level.items()} for level in self.counts]
        self._cache: dict = {}

    def logprob(self, history, token: int) -> float:
        """Natural-log probability of ``token`` after ``history`` (only its last order-1 tokens count)."""
        history = tuple(history[len(history) - (self.order - 1) :]) if self.order > 1 else ()
        key = (history, token)
        if key not in self._cache:
            self._cache[key] = math.log(self._prob(history, token))
        return self._cache[key]

    def _prob(self, history: tuple, token: int) -> float:
        unigram, (total, types) = self.counts[0][()], self.totals[0].get((), (0, 0))
        p = (unigram[token] + 1) / (total + self.vocab_size)
        for n in range(1, len(history) + 1):
            h = history[len(history) - n :]
            if h not in self.totals[n]:
                break
            total, types = self.totals[n][h]
            p = (self.counts[n][h][token] + types * p) / (total + types)
        return p


def task_corpus(tokenizer, size: int, seed: int = 0) -> list[list[int]]:
    """``size`` train-split examples of every task, as token ids."""
    import dllm.tasks as task_lib

    rng = random.Random(seed)
    out = []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for name in task_lib.names():
        task = task_lib.get(name)
        for _ in range(size):
            example = task.sample_split(rng, "train")
            out.append(
                bos + tokenizer.encode(example.prompt + example.target, add_special_tokens=False) + eos
            )
    return out


@lru_cache(maxsize=8)
def _fitted(corpus: str, order: int, size: int, tokenizer_key: str, tokenizer) -> NgramModel:
    if corpus == "tasks":
        sequences = task_corpus(tokenizer, size)
    else:
        path = Path(corpus)
        if not path.is_file():
            raise FileNotFoundError(f"n-gram corpus {corpus!r} is neither 'tasks' nor a text file")
        sequences = [
            tokenizer.encode(line.rstrip("\n"), add_special_tokens=False)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
        if not sequences:
            raise ValueError(f"n-gram corpus {corpus} has no non-empty lines")
    return NgramModel(sequences, order, len(tokenizer))


def fit(corpus: str, order: int, size: int, tokenizer) -> NgramModel:
    """The n-gram model of ``corpus`` for ``tokenizer`` (fitted once per process)."""
    return _fitted(corpus, order, size, getattr(tokenizer, "name_or_path", ""), tokenizer)
