"""List operations over a vocabulary: the engine behind Waiting Line and the synthetic list ops.

Prompt format (one line): ``"<header>: item, item, item\\n"``; the answer is the resulting list on one
line, items separated by ``", "``.  Headers per operation (positions are **1-based**):

==================  =========================================  ================================
op                  header                                     correct answers
==================  =========================================  ================================
``copy``            ``copy``                                   the list itself
``reverse``         ``reverse``                                the reversed list
``sort``            ``sort by full name`` (names, key "full"),  the list sorted by the stated key
                    ``sort by last name`` (key "last"),
                    ``sort`` (letters / words)
``shuffle``         ``shuffle``                                any permutation except the identity
``insert_index``    ``insert NEW at K``                        NEW inserted so it is item K
``insert_random``   ``insert NEW anywhere``                    NEW inserted at any position
``remove_index``    ``remove at K``                            item K removed
``remove_random``   ``remove any``                             any single item removed
``replace_index``   ``replace at K with NEW``                  item K replaced by NEW
``replace_random``  ``replace any with NEW``                   any single item replaced by NEW
==================  =========================================  ================================

Synthetic list ops registered here (family ``"list_op"``): ``letters_copy``, ``letters_reverse``,
``letters_sort`` (4..12 distinct capital letters) and ``words_reverse``, ``words_sort`` (3..8
distinct common lowercase nouns).  Their prompts use the same headers as the waiting-line ops
(``"reverse: K, B, Q\\n"``, ``"sort: K, B, Q\\n"``); letters and words sort by plain string order.

Scoring parses the first non-empty line of the prediction with
:func:`~dllm.tasks.base.parse_list` and then applies exact list match (deterministic ops) or the
validity checks of ParallelBench (shuffle / ``*_random`` ops); see :meth:`ListTask.score`.
"""

from __future__ import annotations

import random
from typing import Sequence

from .base import Example, Task, answer_list, join_items
from .names import FULL_NAMES, LETTERS, WORDS

OPS = (
    "copy",
    "reverse",
    "sort",
    "shuffle",
    "insert_index",
    "remove_index",
    "replace_index",
    "insert_random",
    "remove_random",
    "replace_random",
)
SORT_KEYS = ("full", "last")
_DETERMINISTIC_OPS = {"copy", "reverse", "sort", "insert_index", "remove_index", "replace_index"}


def _sort_key(key: str):
    if key == "full":
        return lambda s: s
    if key == "last":  # by last word, ties broken by the full string
        return lambda s: (s.split()[-1], s)
    raise ValueError(f"sort_key must be one of {SORT_KEYS}, got {key!r}")


class ListTask(Task):
    """One list operation over one vocabulary.

    Args:
        name: task name.
        op: one of :data:`OPS`.
        vocab: the items lists are drawn from (distinct items, drawn without replacement).
        lengths: list sizes (the input list of every instance has one of these sizes).
        family: ``"waiting_line"`` or ``"list_op"``.
        max_new_tokens: output budget in shipped-tokenizer tokens.
        sort_key: for ``op="sort"``: ``"full"`` (the whole string as written, i.e. first name
            first for people) or ``"last"`` (last word).  The prompt always states the key for
            names (``sort by full name`` / ``sort by last name``), so prompt and label agree;
            ParallelBench's prompt says "last name" while its labels use the full string.
        key_in_prompt: whether the sort header names the key (True for names).
    """

    def __init__(
        self,
        name: str,
        op: str,
        vocab: Sequence[str],
        lengths: Sequence[int],
        family: str,
        max_new_tokens: int,
        sort_key: str = "full",
        key_in_prompt: bool = False,
    ):
        if op not in OPS:
            raise ValueError(f"unknown list op {op!r}; known: {OPS}")
        _sort_key(sort_key)
        self.name = name
        self.op = op
        self.vocab = tuple(vocab)
        self.lengths = tuple(lengths)
        self.family = family
        self.max_new_tokens = max_new_tokens
        self.deterministic = op in _DETERMINISTIC_OPS
        self.sort_key = sort_key
        self.key_in_prompt = key_in_prompt
        if max(self.lengths) + 1 > len(self.vocab):
            raise ValueError("vocabulary too small for the requested lengths")

    # ---------------------------------------------------------------- generation
    def header(self, meta: dict) -> str:
        op = self.op
        if op == "sort":
            if self.key_in_prompt:
                return "sort by full name" if self.sort_key == "full" else "sort by last name"
            return "sort"
        if op == "insert_index":
            return f"insert {meta['new']} at {meta['index']}"
        if op == "insert_random":
            return f"insert {meta['new']} anywhere"
        if op == "remove_index":
            return f"remove at {meta['index']}"
        if op == "remove_random":
            return "remove any"
        if op == "replace_index":
            return f"replace at {meta['index']} with {meta['new']}"
        if op == "replace_random":
            return f"replace any with {meta['new']}"
        return op  # copy, reverse, shuffle

    def make(self, rng: random.Random, length: int | None) -> tuple[str, str, dict]:
        n = length if length is not None else rng.choice(self.lengths)
        picked = rng.sample(range(len(self.vocab)), n + 1)
        items = [self.vocab[i] for i in picked[:n]]
        spare = self.vocab[picked[n]]  # an item not in the list, for insert / replace
        meta: dict = {"items": items, "n": n}
        op = self.op
        if op == "copy":
            out = list(items)
        elif op == "reverse":
            out = items[::-1]
        elif op == "sort":
            out = sorted(items, key=_sort_key(self.sort_key))
            meta["sort_key"] = self.sort_key
        elif op == "shuffle":
            out = list(items)
            while out == items:  # n >= 2, so a non-identity permutation exists
                rng.shuffle(out)
        elif op.startswith("insert"):
            pos = rng.randint(0, n)  # 0-based slot; 1-based index = pos + 1
            out = items[:pos] + [spare] + items[pos:]
            meta["new"] = spare
            if op == "insert_index":
                meta["index"] = pos + 1
        elif op.startswith("remove"):
            pos = rng.randint(0, n - 1)
            out = items[:pos] + items[pos + 1 :]
            if op == "remove_index":
                meta["index"] = pos + 1
        elif op.startswith("replace"):
            pos = rng.randint(0, n - 1)
            out = items[:pos] + [spare] + items[pos + 1 :]
            meta["new"] = spare
            if op == "replace_index":
                meta["index"] = pos + 1
        else:  # pragma: no cover - guarded in __init__
            raise AssertionError(op)
        assert len(set(out)) == len(out)
        prompt = f"{self.header(meta)}: {join_items(items)}\n"
        return prompt, join_items(out), meta

    # ---------------------------------------------------------------- scoring
    def score(self, prediction: str, example: Example) -> float:
        """Score the first non-empty line of ``prediction``.

        * copy / reverse / sort / ``*_index``: the parsed list equals the target list exactly.
        * shuffle: same multiset as the input and a different order.
        * insert_random: deleting the first occurrence of NEW leaves exactly the input list.
        * remove_random: one item fewer, and deleting one input item gives the prediction.
        * replace_random: same length, exactly one position differs and it holds NEW.
        """
        pred = answer_list(prediction)
        items = list(example.meta["items"])
        op = self.op
        if op in _DETERMINISTIC_OPS:
            return float(pred == answer_list(example.target))
        if op == "shuffle":
            return float(sorted(pred) == sorted(items) and pred != items)
        if op == "insert_random":
            new = example.meta["new"]
            if new not in pred:
                return 0.0
            rest = list(pred)
            rest.remove(new)
            return float(rest == items)
        if op == "remove_random":
            if len(pred) != len(items) - 1:
                return 0.0
            return float(any(items[:i] + items[i + 1 :] == pred for i in range(len(items))))
        if op == "replace_random":
            new = example.meta["new"]
            if len(pred) != len(items):
                return 0.0
            diff = [i for i, (a, b) in enumerate(zip(pred, items)) if a != b]
            return float(len(diff) == 1 and pred[diff[0]] == new)
        raise AssertionError(op)  # pragma: no cover


# Output budgets (shipped tokenizer, every name/letter one token): see Task.max_new_tokens.
def waiting_line_tasks() -> list[ListTask]:
    """The ten ParallelBench Waiting Line tasks over ``"First Last"`` names, 3..8 customers."""
    budgets = {
        "copy": 48,
        "reverse": 48,
        "sort": 48,
        "shuffle": 48,
        "insert_index": 56,
        "insert_random": 56,
        "remove_index": 40,
        "remove_random": 40,
        "replace_index": 48,
        "replace_random": 48,
    }
    return [
        ListTask(
            op, op, FULL_NAMES, range(3, 9), "waiting_line", budgets[op], sort_key="full", key_in_prompt=True
        )
        for op in OPS
    ]


def synthetic_list_tasks() -> list[ListTask]:
    """Synthetic list ops over letters (4..12 items) and words (3..8 items)."""
    letters = range(4, 13)
    words = range(3, 9)
    return [
        ListTask("letters_copy", "copy", LETTERS, letters, "list_op", 48),
        ListTask("letters_reverse", "reverse", LETTERS, letters, "list_op", 48),
        ListTask("letters_sort", "sort", LETTERS, letters, "list_op", 48),
        ListTask("words_reverse", "reverse", WORDS, words, "list_op", 32),
        ListTask("words_sort", "sort", WORDS, words, "list_op", 32),
    ]
