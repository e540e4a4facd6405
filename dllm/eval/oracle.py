"""Ideal-marginal oracle: a fake dLLM that returns the Bayes-optimal per-slot marginals of list tasks.

For a list task ("copy: A, B, C\\n") the true answer distribution is known. Given the canvas so far,
this model returns, for every masked answer slot, the exact marginal of the item in that slot
given the slots already decided (ParallelBench §6.5 "unbiased model"):

* ``copy`` / ``reverse`` / ``sort`` / ``replace_index`` / ``insert_index`` / ``remove_index``:
  one-hot on the determined item;
* ``shuffle``: uniform over the items not yet placed (1/m each, m = masked slots left);
* ``replace_random`` (replace any one item with NEW): once NEW is placed, every masked slot is
  one-hot on its original item; before that, each masked slot puts 1/m on NEW and (m-1)/m on its
  original item.

Slots past the answer are one-hot EOS. Tiny i.i.d. logit noise (``noise``, default 1e-6, from
the model's own seeded generator) breaks ties at random, as the paper's "unbiased model + noise":
greedy argmax among equally likely items, and confidence ranking among equally confident slots.
Because the marginals are exact, any parallel-decoding error comes from committing dependent
slots in one step, which :mod:`dllm.eval.theory` gives in closed form.

Tokenisation is one token per item: ``encode("shuffle: A, B, C\\n") = [BOS, <shuffle>, <:>, A, B,
C, <\\n>]`` and ``decode`` joins items with ``", "``, so the tasks' own scorers read the output. The
model plugs into ``dllm.generate`` like a loaded checkpoint (``net``, ``config``, ``mask_id``,
``eos_ids``, ...), but has no K/V buffers (``supports_kv = False``), so caches that need them
are skipped by the runner.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import torch

SPECIALS = ("<pad>", "<bos>", "<eos>", "<mask>", "<:>", "<nl>")
PAD, BOS, EOS, MASK, COLON, NL = range(6)
OPS = (
    "copy",
    "reverse",
    "sort",
    "sort_last",
    "shuffle",
    "replace_index",
    "replace_random",
    "insert_index",
    "remove_index",
)
MAX_INDEX = 64
_HEADERS = (
    (re.compile(r"^(copy|reverse|shuffle|sort)$"), lambda m: (m.group(1), None, None)),
    (re.compile(r"^sort by full name$"), lambda m: ("sort", None, None)),
    (re.compile(r"^sort by last name$"), lambda m: ("sort_last", None, None)),
    (re.compile(r"^replace any with (.+)$"), lambda m: ("replace_random", m.group(1), None)),
    (re.compile(r"^replace at (\d+) with (.+)$"), lambda m: ("replace_index", m.group(2), int(m.group(1)))),
    (re.compile(r"^insert (.+) at (\d+)$"), lambda m: ("insert_index", m.group(1), int(m.group(2)))),
    (re.compile(r"^remove at (\d+)$"), lambda m: ("remove_index", None, int(m.group(1)))),
)


def default_items() -> list[str]:
    """Every item of the shipped list tasks: people's names, letters and words."""
    from dllm.tasks.names import FULL_NAMES, LETTERS, WORDS

    return list(dict.fromkeys([*FULL_NAMES, *LETTERS, *WORDS]))


def answer(op: str, items: Sequence[str], new: str | None, index: int | None) -> list[str]:
    """The answer of a deterministic op (1-based ``index``), or the input order for random ops."""
    items = list(items)
    if op == "reverse":
        return items[::-1]
    if op == "sort":
        return sorted(items)
    if op == "sort_last":
        return sorted(items, key=lambda s: (s.split()[-1], s))
    if op == "replace_index":
        return items[: index - 1] + [new] + items[index:]
    if op == "insert_index":
        return items[: index - 1] + [new] + items[index - 1 :]
    if op == "remove_index":
        return items[: index - 1] + items[index:]
    return items  # copy; shuffle / replace_random slots start from the input order


@dataclass
class OracleConfig:
    vocab_size: int
    mask_token_id: int = MASK
    eos_token_ids: list = field(default_factory=lambda: [EOS])
    pad_token_id: int = PAD
    bos_token_id: int = BOS
    shift_logits: bool = False
    max_seq_len: int = 4096
    arch: str = "oracle"


@dataclass
class _Prompt:
    op: str
    items: list[int]  # answer-order item ids (input order for shuffle / replace_random)
    new: int | None
    index: int | None
    length: int  # prompt tokens (BOS ... <nl>)

    @property
    def n_out(self) -> int:
        return len(self.items)


class IdealMarginalNet:
    """The "network": token canvas in, exact marginals (as log-probabilities + noise) out."""

    def __init__(self, owner: IdealMarginalModel):
        self.owner = owner
        self._parsed: dict[tuple, _Prompt] = {}

    def _parse(self, row: list[int]) -> tuple[_Prompt, int]:
        """The prompt of a canvas row and the column where its answer starts."""
        start = row.index(BOS)
        end = row.index(NL, start)
        key = tuple(row[start : end + 1])
        if key not in self._parsed:
            self._parsed[key] = self.owner._prompt_from_ids(list(key))
        return self._parsed[key], end + 1

    def __call__(
        self,
        tokens: torch.Tensor,
        positions=None,
        key_valid=None,
        *,
        query=None,
        kv=None,
        logits_for=None,
        attention_backend=None,
        **_ignored,
    ) -> torch.Tensor:
        batch, width = tokens.shape
        vocab = self.owner.config.vocab_size
        cols = logits_for if logits_for is not None else torch.arange(width).expand(batch, -1)
        out = torch.full((batch, cols.shape[1], vocab), float("-inf"))
        rows_b, rows_c, toks, vals = [], [], [], []
        canvas = tokens.tolist()
        for b, row in enumerate(canvas):
            prompt, gen_start = self._parse(row)
            slots = [(c, c - gen_start) for c in cols[b].tolist()]
            decided = [t for t in row[gen_start : gen_start + prompt.n_out] if t != MASK]
            masked_left = sum(1 for t in row[gen_start : gen_start + prompt.n_out] if t == MASK)
            for q, (col, j) in enumerate(slots):
                current = row[col] if col < width else MASK
                for tok, logp in self._marginal(prompt, j, current, decided, masked_left):
                    rows_b.append(b)
                    rows_c.append(q)
                    toks.append(tok)
                    vals.append(logp)
        out[rows_b, rows_c, toks] = torch.tensor(vals, dtype=out.dtype)
        if self.owner.noise > 0:
            out += self.owner.noise * torch.randn(out.shape, generator=self.owner.generator)
        return out.to(self.owner.device)

    @staticmethod
    def _marginal(p: _Prompt, j: int, current: int, decided: list[int], m: int) -> list[tuple[int, float]]:
        if j < 0:
            return [(current, 0.0)]  # a prompt column: irrelevant, keep it finite
        if j >= p.n_out:
            return [(EOS, 0.0)]
        if current != MASK:
            return [(current, 0.0)]
        if p.op == "shuffle":
            left = [t for t in p.items if t not in decided]
            return [(t, -math.log(len(left))) for t in left]
        if p.op == "replace_random":
            original = p.items[j]
            if p.new in decided or m <= 1:
                return [(p.new if p.new not in decided else original, 0.0)]
            return [(original, math.log((m - 1) / m)), (p.new, -math.log(m))]
        return [(p.items[j], 0.0)]  # deterministic ops: items were stored in answer order


class IdealMarginalModel:
    """A model object for ``dllm.generate`` that decodes list tasks with exact marginals.

    ``items`` is the item vocabulary (default: every name, letter and word of the shipped list
    tasks); ``noise`` the logit noise scale; ``seed`` seeds the noise generator.
    """

    fingerprint = "ideal-marginal-v1"
    supports_kv = False

    def __init__(
        self,
        items: Sequence[str] | None = None,
        noise: float = 1e-6,
        seed: int = 0,
        device: str | torch.device = "cpu",
    ):
        self.items = list(dict.fromkeys(items if items is not None else default_items()))
        base = len(SPECIALS)
        self.vocab = [
            *SPECIALS,
            *(f"<{op}>" for op in OPS),
            *(str(i) for i in range(1, MAX_INDEX + 1)),
            *self.items,
        ]
        self.token_id = {tok: i for i, tok in enumerate(self.vocab)}
        self.op_id = {op: base + i for i, op in enumerate(OPS)}
        self.index_base = base + len(OPS) - 1  # token of index i = index_base + i
        self.item_base = base + len(OPS) + MAX_INDEX
        self.config = OracleConfig(vocab_size=len(self.vocab))
        self.noise = noise
        self.generator = torch.Generator().manual_seed(seed)
        self.net = IdealMarginalNet(self)
        self.name = "oracle"
        self.mask_id, self.eos_ids, self.pad_id, self.bos_id = MASK, [EOS], PAD, BOS
        self.tokenizer = None
        self._device = torch.device(device)

    # ---- the attributes dllm.generate reads ----------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def max_length(self) -> int:
        return self.config.max_seq_len

    @property
    def shift(self) -> int:
        return 0

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    # ---- tokenisation --------------------------------------------------------------------------
    def _item(self, text: str) -> int:
        text = text.strip()
        if text not in self.token_id or self.token_id[text] < self.item_base:
            raise ValueError(f"{text!r} is not an item of the oracle's vocabulary")
        return self.token_id[text]

    def encode(self, text: str, add_bos: bool = True, chat: bool = False) -> list[int]:
        """``"<header>: a, b, c\\n"`` -> ``[BOS, <op>, (index), (new), <:>, a, b, c, <nl>]``."""
        if chat:
            raise ValueError("the oracle model has no chat template; drop the chat option")
        line = text.strip()
        if ":" not in line:
            raise ValueError(f"the oracle model reads prompts 'header: item, item, ...', got {text!r}")
        header, _, payload = line.partition(":")
        for pattern, parse in _HEADERS:
            match = pattern.match(header.strip())
            if match:
                op, new, index = parse(match)
                break
        else:
            raise ValueError(f"the oracle model does not know the task header {header.strip()!r}")
        ids = [BOS] if add_bos else []
        ids.append(self.op_id[op])
        if index is not None:
            if not 1 <= index <= MAX_INDEX:
                raise ValueError(f"index {index} is out of range; allowed [1, {MAX_INDEX}]")
            ids.append(self.index_base + index)
        if new is not None:
            ids.append(self._item(new))
        ids.append(COLON)
        ids += [self._item(item) for item in payload.split(",") if item.strip()]
        ids.append(NL)
        return ids

    def decode(self, ids) -> str:
        return ", ".join(self.vocab[i] for i in ids)

    def _prompt_from_ids(self, ids: list[int]) -> _Prompt:
        op = OPS[ids[1] - self.op_id[OPS[0]]]
        pos, index, new = 2, None, None
        if op in ("replace_index", "insert_index", "remove_index"):
            index = ids[pos] - self.index_base
            pos += 1
        if op in ("replace_random", "replace_index", "insert_index"):
            new = ids[pos]
            pos += 1
        items = ids[pos + 1 : -1]
        names = [self.vocab[i] for i in items]
        ordered = answer(op, names, None if new is None else self.vocab[new], index)
        return _Prompt(
            op=op, items=[self.token_id[s] for s in ordered], new=new, index=index, length=len(ids)
        )
