"""Core types shared by every task: :class:`Example`, :class:`Task`, split hashing and answer parsing.

Conventions used by all tasks
-----------------------------
* A prompt is one line ``"<keyword(s)>: <payload>\\n"`` without any chat template; the answer is one
  line (usually a comma-separated list) that directly follows the prompt.
* Scorers look at the **first non-empty line** of a prediction only (leading whitespace is dropped),
  so whatever a model writes after its answer line is ignored.
* Splits are defined by the prompt: an example belongs to the eval split iff
  ``sha256(prompt) mod 10 == 0`` (:func:`is_eval_prompt`).  ``Task.examples("train", ...)`` never
  returns such a prompt and ``Task.examples("eval", ...)`` only returns such prompts, so the two
  splits can never share an instance, whatever seeds are used.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

SPLITS = ("train", "eval")
EVAL_MODULUS = 10

# How many consecutive duplicate draws ``Task.examples`` tolerates before it accepts a duplicate
# (only happens when a task's instance space for one length is nearly exhausted).
_MAX_DUPLICATE_DRAWS = 200


@dataclass(frozen=True)
class Example:
    """One task instance.

    ``meta`` holds what the scorer needs (input items, index, new item, grid, ...); it is kept
    JSON-serialisable (lists, strings, ints) and excluded from hashing.
    """

    task: str
    uid: str
    prompt: str
    target: str
    meta: dict = field(default_factory=dict, hash=False)


def stable_hash(text: str) -> int:
    """A process-independent integer hash of ``text`` (sha256), unlike Python's ``hash``."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def is_eval_prompt(prompt: str) -> bool:
    """True iff ``prompt`` belongs to the eval split (``stable_hash(prompt) % 10 == 0``)."""
    return stable_hash(prompt) % EVAL_MODULUS == 0


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped (empty string if there is none)."""
    for line in text.strip().splitlines():
        line = line.strip()
        if line:
            return line
    return ""


def normalize(text: str) -> str:
    """Strip and collapse internal whitespace runs to one space."""
    return " ".join(text.split())


_QUOTES = "\"'`"


def parse_list(text: str) -> list[str]:
    """Leniently parse a list written as text.

    Accepts items separated by commas and/or newlines with any spacing around the commas, an
    optional surrounding ``[ ]`` pair, an optional trailing period, and items wrapped in quotes
    (``["Emma Stone", "Liam Park"]``).  Whitespace inside an item is collapsed; empty items are
    dropped.  ``parse_list("[Emma Stone ,Liam  Park].") == ["Emma Stone", "Liam Park"]``.
    """
    s = text.strip()
    s = s.rstrip(".").strip()
    if s.startswith("["):
        s = s[1:]
    if s.endswith("]"):
        s = s[:-1]
    items = []
    for part in re.split(r"[,\n]", s):
        part = normalize(part).strip(_QUOTES).strip()
        if part:
            items.append(part)
    return items


def answer_list(prediction: str) -> list[str]:
    """``parse_list`` applied to the first non-empty line of a prediction."""
    return parse_list(first_line(prediction))


class Task:
    """Base class of every task.

    Subclasses set ``name``, ``family``, ``max_new_tokens``, ``deterministic`` and optionally
    ``lengths`` (the instance sizes that :meth:`examples` cycles through for length balance), and
    implement :meth:`make` and :meth:`score`.

    ``max_new_tokens`` is the default output budget in tokens of the shipped tokenizer: at least
    twice the longest possible target, rounded up to a multiple of 8.
    """

    name: str = ""
    family: str = ""
    max_new_tokens: int = 32
    deterministic: bool = True
    lengths: tuple[int, ...] | None = None

    # ----------------------------------------------------------------- to implement
    def make(self, rng: random.Random, length: int | None) -> tuple[str, str, dict]:
        """Draw one instance of the given size (``None``: any size) -> ``(prompt, target, meta)``."""
        raise NotImplementedError

    def score(self, prediction: str, example: Example) -> float:
        """Score a model's output (first non-empty line only) against ``example``: 0.0..1.0."""
        raise NotImplementedError

    # ----------------------------------------------------------------- generic API
    def _example(self, prompt: str, target: str, meta: dict, uid: str) -> Example:
        return Example(task=self.name, uid=uid, prompt=prompt, target=target, meta=meta)

    def sample(self, rng: random.Random) -> Example:
        """One instance from ``rng`` (size uniform over ``lengths``), from either split."""
        length = rng.choice(self.lengths) if self.lengths else None
        prompt, target, meta = self.make(rng, length)
        uid = f"{self.name}/sample/{stable_hash(prompt):016x}"
        return self._example(prompt, target, meta, uid)

    def sample_split(self, rng: random.Random, split: str) -> Example:
        """Like :meth:`sample` but redraws until the prompt belongs to ``split``."""
        _check_split(split)
        want_eval = split == "eval"
        while True:
            length = rng.choice(self.lengths) if self.lengths else None
            prompt, target, meta = self.make(rng, length)
            if is_eval_prompt(prompt) == want_eval:
                uid = f"{self.name}/{split}/sample/{stable_hash(prompt):016x}"
                return self._example(prompt, target, meta, uid)

    def examples(self, split: str, n: int, seed: int = 0) -> list[Example]:
        """``n`` reproducible examples of ``split`` ("train" or "eval").

        The same ``(split, n, seed)`` always gives the same list; different seeds give different
        streams.  Sizes cycle through ``self.lengths`` (example ``i`` has size
        ``lengths[i % len(lengths)]``), so every size gets the same count when ``n`` is a multiple
        of ``len(lengths)``.  Duplicate prompts within the list are avoided while the instance space
        allows it.  uids are ``"<task>/<split>/<seed>/<i>"``.
        """
        _check_split(split)
        want_eval = split == "eval"
        rng = random.Random(stable_hash(f"{self.name}|{split}|{seed}"))
        seen: set[str] = set()
        out: list[Example] = []
        for i in range(n):
            length = self.lengths[i % len(self.lengths)] if self.lengths else None
            dups = 0
            while True:
                prompt, target, meta = self.make(rng, length)
                if is_eval_prompt(prompt) != want_eval:
                    continue
                if prompt in seen and dups < _MAX_DUPLICATE_DRAWS:
                    dups += 1
                    continue
                break
            seen.add(prompt)
            out.append(self._example(prompt, target, meta, f"{self.name}/{split}/{seed}/{i}"))
        return out

    def __repr__(self) -> str:
        return f"<Task {self.name} family={self.family} max_new_tokens={self.max_new_tokens}>"


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def join_items(items: Sequence[Any]) -> str:
    """Render a list the way prompts and targets write it: ``"a, b, c"``."""
    return ", ".join(str(x) for x in items)
