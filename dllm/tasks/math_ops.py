"""Small arithmetic tasks: ``math_op`` and ``cumsum`` (both exact match, one right answer).

* ``math_op``: ``"math: 47*8\\n"`` -> ``"376"``.  One of ``+``, ``-``, ``*`` on two operands with
  1-3 digits each (digit counts uniform; 1-digit operands are 0-9, k-digit ones have no leading
  zero).  Results may be negative (``"math: 8-47\\n"`` -> ``"-39"``).
* ``cumsum``: ``"cumsum: 3, 1, 4, 1\\n"`` -> ``"3, 4, 8, 9"``: running sums of 3..8 digits 1-9
  (drawn with replacement; sizes length-balanced).
"""

from __future__ import annotations

import random
import re

from .base import Example, Task, answer_list, first_line, join_items

_INT = re.compile(r"[+-]?\d+")


def parse_int(text: str) -> int | None:
    """The integer written on the first non-empty line, or None.

    Lenient about surrounding spaces, a leading ``=``, a space after the sign and a trailing
    period (``"= - 39."`` -> -39); anything else on the line (thousands commas, digits split by
    spaces, words, a second number) makes it unparsable.
    """
    s = first_line(text).rstrip(".").lstrip("=").strip()
    s = re.sub(r"^([+-])\s+", r"\1", s)
    return int(s) if _INT.fullmatch(s) else None


def _operand(rng: random.Random, digits: int) -> int:
    if digits == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (digits - 1), 10**digits - 1)


class MathOp(Task):
    family = "math"
    deterministic = True

    def __init__(
        self, name: str = "math_op", max_digits: int = 3, ops: str = "+-*", max_new_tokens: int = 16
    ):
        self.name = name
        self.max_digits = max_digits
        self.ops = ops
        self.max_new_tokens = max_new_tokens

    def make(self, rng: random.Random, length: int | None) -> tuple[str, str, dict]:
        a = _operand(rng, rng.randint(1, self.max_digits))
        b = _operand(rng, rng.randint(1, self.max_digits))
        op = rng.choice(self.ops)
        value = a + b if op == "+" else a - b if op == "-" else a * b
        meta = {"a": a, "b": b, "op": op, "answer": value}
        return f"math: {a}{op}{b}\n", str(value), meta

    def score(self, prediction: str, example: Example) -> float:
        """1.0 iff the first non-empty line is the exact integer (see :func:`parse_int`)."""
        return float(parse_int(prediction) == example.meta["answer"])


class CumSum(Task):
    family = "math"
    deterministic = True

    def __init__(self, name: str = "cumsum", lengths=range(3, 9), max_new_tokens: int = 48):
        self.name = name
        self.lengths = tuple(lengths)
        self.max_new_tokens = max_new_tokens

    def make(self, rng: random.Random, length: int | None) -> tuple[str, str, dict]:
        n = length if length is not None else rng.choice(self.lengths)
        values = [rng.randint(1, 9) for _ in range(n)]
        sums, total = [], 0
        for v in values:
            total += v
            sums.append(total)
        meta = {"items": values, "n": n, "answer": sums}
        return f"cumsum: {join_items(values)}\n", join_items(sums), meta

    def score(self, prediction: str, example: Example) -> float:
        """1.0 iff the first line parses (lenient list parsing) to exactly the running sums."""
        pred = answer_list(prediction)
        return float(pred == [str(x) for x in example.meta["answer"]])
