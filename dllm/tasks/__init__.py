"""Self-contained ParallelBench-style tasks: seeded generators and deterministic checkers.

Tasks (``names()``), each prompt one line ``"<keyword(s)>: <payload>\\n"``, each answer one line:

Waiting Line (family ``"waiting_line"``; 3..8 customers named ``"First Last"``; positions 1-based)
    ``copy``, ``reverse``, ``sort`` (by the full name string as written, which the prompt says:
    ``"sort by full name: ..."``), ``shuffle`` (any non-identity permutation), ``insert_index``,
    ``remove_index``, ``replace_index``, ``insert_random``, ``remove_random``, ``replace_random``.
Puzzles (family ``"puzzle"``)
    ``latin_square`` (4x4, validity checker), ``sudoku`` (4x4, 12 givens, unique solution).
Synthetic list ops (family ``"list_op"``)
    ``letters_copy``, ``letters_reverse``, ``letters_sort`` (4..12 capital letters),
    ``words_reverse``, ``words_sort`` (3..8 common nouns).
Math (family ``"math"``)
    ``math_op`` (``a+b`` / ``a-b`` / ``a*b``, 1-3 digit operands), ``cumsum`` (running sums of
    3..8 digits).

Example prompts: ``"reverse: Emma Stone, Liam Park, Noah Reed\\n"`` -> ``"Noah Reed, Liam Park, Emma
Stone"``; see each module's docstring for the others.  Scorers read the first non-empty line of a
prediction only.  Train and eval are split by a sha256 hash of the prompt (eval iff ``% 10 == 0``).

A leaf of the core (it imports nothing of dllm): the evaluation harness, the training recipes
(``dllm.zoo``), DiffuSpec's n-gram corpus (``dllm.drafters.ngram``) and the demo's examples all read
it. It was ``dllm.eval.tasks``, a name that still works (``from dllm.eval import tasks``).
"""

from __future__ import annotations

import random
from typing import Sequence

from .base import Example, Task, first_line, is_eval_prompt, parse_list, stable_hash
from .list_ops import ListTask, synthetic_list_tasks, waiting_line_tasks
from .math_ops import CumSum, MathOp
from .puzzles import LatinSquare, Sudoku

__all__ = [
    "Example",
    "Task",
    "ListTask",
    "LatinSquare",
    "Sudoku",
    "MathOp",
    "CumSum",
    "get",
    "names",
    "parse_list",
    "first_line",
    "is_eval_prompt",
    "stable_hash",
    "training_mix",
]


def _build_registry() -> dict[str, Task]:
    tasks: list[Task] = []
    tasks += waiting_line_tasks()
    tasks += [LatinSquare(), Sudoku()]
    tasks += synthetic_list_tasks()
    tasks += [MathOp(), CumSum()]
    registry = {t.name: t for t in tasks}
    assert len(registry) == len(tasks), "duplicate task names"
    return registry


_REGISTRY: dict[str, Task] = _build_registry()


def names() -> list[str]:
    """All registered task names, in catalog order."""
    return list(_REGISTRY)


def get(name: str) -> Task:
    """The registered task called ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(_REGISTRY)}") from None


def training_mix(rng: random.Random, tasks: Sequence[str | Task] | None = None) -> Example:
    """One train-split example from a task chosen uniformly from ``tasks`` (default: all tasks)."""
    pool = names() if tasks is None else list(tasks)
    if not pool:
        raise ValueError("training_mix needs at least one task")
    task = rng.choice(pool)
    if isinstance(task, str):
        task = get(task)
    return task.sample_split(rng, "train")
