"""Closed forms for parallel decoding on list tasks under an ideal-marginal model (ParallelBench §2.8).

Decoding T groups of tokens S_1..S_T, each drawn from a product of exact marginals, has a KL
floor of sum_t C(S_t | X, S_<t), where C is the conditional total correlation
(sum of marginal entropies minus the joint entropy). For a length-n list (all in bits):

* copy / reverse / sort / *_index: C = 0 (every slot is determined);
* replace_random (change any one item to NEW): C = (n-1) log2(n / (n-1))  (-> log2 e);
* shuffle (any permutation): C = n log2 n - log2 n!  (-> infinity).

Expected accuracy of decoding rules with the ideal model + tie-breaking noise
(:class:`dllm.eval.oracle.IdealMarginalModel`) follows from the marginals: with m slots masked,
a shuffle slot is uniform over the m unplaced items (confidence 1/m); a replace_random slot
keeps its item with probability (m-1)/m and takes NEW with 1/m until NEW is placed. A *schedule*
is the number of slots committed at each step (``sum(schedule) == n``). Greedy decoding takes
each slot's argmax (ties at random); committed slots are chosen among equally confident ones
at random.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

ZERO_C_TASKS = ("copy", "reverse", "sort", "replace_index", "insert_index", "remove_index")


def total_correlation(task: str, n: int) -> float:
    """C(Y|X) in bits of a length-``n`` list task under its answer distribution."""
    if n < 1:
        raise ValueError(f"n={n} is out of range; allowed [1, inf)")
    base = task.split("_", 1)[1] if task.startswith(("letters_", "words_")) else task
    if base in ZERO_C_TASKS:
        return 0.0
    if base == "replace_random":
        return 0.0 if n == 1 else (n - 1) * math.log2(n / (n - 1))
    if base == "shuffle":
        return n * math.log2(n) - math.log2(math.factorial(n))
    raise ValueError(
        f"no closed form for task {task!r}; known: {', '.join(ZERO_C_TASKS)}, replace_random, shuffle"
    )


def topk_schedule(n: int, k: int) -> list[int]:
    """k slots per step; the last step takes the remainder (the convention of the §2.8 table)."""
    if k < 1:
        raise ValueError(f"k={k} is out of range; allowed [1, inf)")
    return [k] * (n // k) + ([n % k] if n % k else [])


def _check_schedule(n: int | None, schedule: Sequence[int]) -> int:
    if any(c < 0 for c in schedule):
        raise ValueError(f"schedule {list(schedule)} has a negative step")
    total = sum(schedule)
    if n is not None and total != n:
        raise ValueError(f"schedule {list(schedule)} commits {total} slots, expected {n}")
    return total


def shuffle_step_floor(schedule: Sequence[int]) -> float:
    """L_T = sum over steps of C(S_t | X, S_<t) for shuffle: k log2 m - log2 P(m, k) per step."""
    m = _check_schedule(None, schedule)
    total = 0.0
    for k in schedule:
        total += k * math.log2(m) - math.log2(math.perm(m, k)) if k else 0.0
        m -= k
    return total


def shuffle_two_per_step_floor(n: int) -> float:
    """L_{n/2} for shuffle, two slots per step: log2(n!! / (n-1)!!)."""
    return math.log2(_double_factorial(n) / _double_factorial(n - 1))


def _double_factorial(n: int) -> int:
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def shuffle_topk_accuracy(schedule: Sequence[int]) -> float:
    """P(all committed items distinct) = prod over steps of P(m, k) / m^k (greedy or temperature 1)."""
    m = _check_schedule(None, schedule)
    acc = 1.0
    for k in schedule:
        if k:
            acc *= math.perm(m, k) / m**k
        m -= k
    return acc


def replace_random_topk_accuracy(schedule: Sequence[int]) -> float:
    """Greedy decoding of replace_random with the given schedule.

    While NEW is unplaced and m >= 3 masked slots remain, every slot's argmax is its own item; at
    m = 2 each slot's argmax is a fair coin between its item and NEW; at m = 1 NEW is certain.
    Success means NEW ends up exactly once.
    """
    n = _check_schedule(None, schedule)

    @lru_cache(maxsize=None)
    def success(step: int, m: int, placed: bool) -> float:
        if m == 0:
            return 1.0 if placed else 0.0
        k = schedule[step]
        if k == 0:
            return success(step + 1, m, placed)
        if placed or m >= 3:
            return success(step + 1, m - k, placed)
        if m == 1:
            return 1.0
        if k == 1:  # m == 2: a coin for one slot, then the last slot follows
            return 0.5 * success(step + 1, 1, True) + 0.5 * success(step + 1, 1, False)
        return 0.5  # m == 2, both slots at once: exactly one NEW with probability 1/2

    return success(0, n, False)


def replace_random_sampled_one_step_accuracy(n: int) -> float:
    """Temperature-1 sampling of all n slots in one step: exactly one NEW, ((n-1)/n)^(n-1) (-> 1/e)."""
    return ((n - 1) / n) ** (n - 1) if n > 1 else 1.0


def shuffle_threshold_accuracy(n: int, threshold: float) -> float:
    """Fast-dLLM threshold rule (commit slots with confidence >= threshold, at least one) on shuffle.

    Every slot has confidence 1/m, so one slot is committed per step until 1/m >= threshold;
    then all m remaining slots are committed at once (distinct with probability m!/m^m).
    """
    _check_threshold(threshold)
    for m in range(n, 0, -1):
        if 1 / m >= threshold:
            return math.factorial(m) / m**m
    return 1.0  # unreachable: m = 1 always passes


def replace_random_threshold_accuracy(n: int, threshold: float) -> float:
    """Threshold rule on replace_random: 1 iff threshold > (n-1)/n (for n >= 3), else 0.

    With m slots masked and NEW unplaced each slot's confidence is max((m-1)/m, 1/m). If it passes
    the threshold at m >= 3 every slot keeps its item (failure); at m = 2 both slots commit and
    succeed with probability 1/2; otherwise one slot is committed and the rest follow exactly.
    """
    _check_threshold(threshold)
    for m in range(n, 0, -1):
        conf = max((m - 1) / m, 1 / m)
        if conf >= threshold:
            if m == 1:
                return 1.0
            return 0.5 if m == 2 else 0.0
        if m == 2:
            return 1.0  # one slot now (coin), the other is then determined
    return 1.0


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} is out of range; allowed (0, 1]")


def expected_accuracy(
    task: str,
    n: int,
    *,
    schedule: Sequence[int] | None = None,
    threshold: float | None = None,
    temperature: float = 0.0,
) -> float:
    """Closed-form accuracy of a top-k ``schedule`` or a ``threshold`` rule on a length-``n`` list task."""
    if (schedule is None) == (threshold is None):
        raise ValueError("give exactly one of schedule or threshold")
    base = task.split("_", 1)[1] if task.startswith(("letters_", "words_")) else task
    if base in ZERO_C_TASKS:
        return 1.0
    if schedule is not None:
        _check_schedule(n, schedule)
        if base == "shuffle":
            return shuffle_topk_accuracy(schedule)
        if base == "replace_random":
            if temperature > 0:
                if list(schedule) != [n]:
                    raise ValueError("sampled replace_random has a closed form for one step only")
                return replace_random_sampled_one_step_accuracy(n)
            return replace_random_topk_accuracy(schedule)
    else:
        if temperature > 0:
            raise ValueError("threshold closed forms assume greedy decoding")
        if base == "shuffle":
            return shuffle_threshold_accuracy(n, threshold)
        if base == "replace_random":
            return replace_random_threshold_accuracy(n, threshold)
    raise ValueError(f"no closed form for task {task!r}")
