"""Prompt examples drawn from the project's tasks, and the task scorer for a prompt that is one."""

from __future__ import annotations

import threading
from collections import OrderedDict

# Waiting-line list tasks, the 4x4 sudoku, arithmetic (see dllm.eval.tasks)
EXAMPLE_TASKS = ("reverse", "sort", "insert_index", "sudoku", "math_op", "cumsum")
_KNOWN: OrderedDict = OrderedDict()
_LOCK = threading.Lock()
_LIMIT = 4096


def _remember(example):
    with _LOCK:
        _KNOWN[example.prompt] = example
        _KNOWN.move_to_end(example.prompt)
        while len(_KNOWN) > _LIMIT:
            _KNOWN.popitem(last=False)
    return example


def draw(task: str, seed: int = 0):
    """One eval-split example of ``task`` (deterministic in ``seed``), remembered for scoring."""
    from dllm.eval import tasks

    [example] = tasks.get(task).examples("eval", 1, seed=seed)
    return _remember(example)


def default_examples() -> list:
    return [draw(name) for name in EXAMPLE_TASKS]


def lookup(prompt: str):
    """The task example whose prompt this is (None for a prompt typed by hand)."""
    with _LOCK:
        return _KNOWN.get(prompt)


def score(prompt: str, prediction: str) -> float | None:
    """The task's own scorer on ``prediction`` when ``prompt`` is a task example; None otherwise."""
    from dllm.eval import tasks

    example = lookup(prompt)
    if example is None:
        return None
    return float(tasks.get(example.task).score(prediction, example))


def finalize(prompt: str, newline: bool = True) -> str:
    """The prompt as sent: task prompts are one line ending in a newline; add it when asked and missing."""
    prompt = prompt or ""
    if newline and prompt.strip() and not prompt.endswith("\n"):
        prompt += "\n"
    return prompt
