"""Tests for dllm.tasks: generators, splits, and hand-written right/wrong cases for every checker."""

from __future__ import annotations

import collections
import itertools
import json
import random

import pytest

from dllm import tasks as T
from dllm.tasks import Example, LatinSquare, ListTask, Sudoku, parse_list
from dllm.tasks.base import first_line, is_eval_prompt
from dllm.tasks.math_ops import parse_int
from dllm.tasks.names import FIRST_NAMES, FULL_NAMES, LAST_NAMES
from dllm.tasks.puzzles import all_sudoku_grids, count_solutions, is_sudoku_solution

WAITING_LINE = [
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
]
REQUIRED = WAITING_LINE + ["latin_square", "sudoku", "letters_reverse", "letters_sort", "math_op", "cumsum"]
ALL = T.names()


def ex(task: str, items, target: str = "", **meta) -> Example:
    """A hand-made example for ``task`` with input ``items``."""
    meta = {"items": list(items), "n": len(items), **meta}
    return Example(task=task, uid=f"{task}/test", prompt="", target=target, meta=meta)


def score(task: str, prediction: str, example: Example) -> float:
    return T.get(task).score(prediction, example)


# ----------------------------------------------------------------------------- registry / API
def test_registry_names_and_attributes():
    names = T.names()
    assert set(REQUIRED) <= set(names)
    assert len(names) == len(set(names))
    for name in names:
        task = T.get(name)
        assert task.name == name
        assert task.family in {"waiting_line", "puzzle", "list_op", "math"}
        assert task.max_new_tokens > 0 and task.max_new_tokens % 8 == 0
    assert all(T.get(n).family == "waiting_line" for n in WAITING_LINE)
    nondet = {n for n in names if not T.get(n).deterministic}
    assert nondet == {"shuffle", "insert_random", "remove_random", "replace_random", "latin_square"}


def test_get_unknown_lists_known_names():
    with pytest.raises(ValueError) as err:
        T.get("no_such_task")
    msg = str(err.value)
    assert "no_such_task" in msg
    for name in ("copy", "sudoku", "cumsum", "latin_square"):
        assert name in msg


def test_bad_split_rejected():
    with pytest.raises(ValueError):
        T.get("copy").examples("test", 3)


def test_name_lists():
    assert len(FIRST_NAMES) >= 50 and len(LAST_NAMES) >= 50
    assert len(set(FULL_NAMES)) == len(FIRST_NAMES) * len(LAST_NAMES)


# ----------------------------------------------------------------------------- generation
@pytest.mark.parametrize("name", ALL)
def test_targets_score_one_and_meta_is_json(name):
    task = T.get(name)
    exs = task.examples("train", 60, seed=3) + task.examples("eval", 30, seed=3)
    rng = random.Random(9)
    exs += [task.sample(rng) for _ in range(20)]
    for e in exs:
        assert e.task == name
        assert e.prompt.endswith("\n") and e.prompt.count("\n") == 1
        assert "\n" not in e.target and e.target == e.target.strip()
        assert task.score(e.target, e) == 1.0, e
        assert task.score(e.target + "\nsome trailing garbage", e) == 1.0
        json.dumps(e.meta)


@pytest.mark.parametrize("name", ALL)
def test_reproducible_and_seeded(name):
    task = T.get(name)
    a = task.examples("eval", 12, seed=0)
    assert a == task.examples("eval", 12, seed=0)
    assert [e.uid for e in a] == [f"{name}/eval/0/{i}" for i in range(12)]
    assert [e.prompt for e in a] != [e.prompt for e in task.examples("eval", 12, seed=1)]
    assert [e.prompt for e in task.examples("train", 12, 0)] != [e.prompt for e in a]
    s1 = [task.sample(random.Random(5)) for _ in range(3)]
    s2 = [task.sample(random.Random(5)) for _ in range(3)]
    assert s1 == s2


def test_train_eval_disjoint_over_thousands():
    total = 0
    for name in ALL:
        task = T.get(name)
        train = task.examples("train", 200, seed=0) + task.examples("train", 100, seed=7)
        evals = task.examples("eval", 60, seed=0) + task.examples("eval", 30, seed=7)
        assert all(not is_eval_prompt(e.prompt) for e in train)
        assert all(is_eval_prompt(e.prompt) for e in evals)
        assert not {e.prompt for e in train} & {e.prompt for e in evals}
        total += len(train) + len(evals)
    assert total > 5000


@pytest.mark.parametrize("name", ALL)
def test_no_duplicate_prompts_within_a_list(name):
    exs = T.get(name).examples("eval", 60, seed=0)
    assert len({e.prompt for e in exs}) == len(exs)


@pytest.mark.parametrize("name", [n for n in ALL if T.get(n).lengths])
def test_length_balance(name):
    task = T.get(name)
    k = len(task.lengths)
    for split in ("train", "eval"):
        exs = task.examples(split, 5 * k, seed=2)
        counts = collections.Counter(e.meta["n"] for e in exs)
        assert counts == {n: 5 for n in task.lengths}
        assert [e.meta["n"] for e in exs[:k]] == list(task.lengths)  # cycles through the sizes


def test_waiting_line_sizes_and_items():
    for name in WAITING_LINE:
        task = T.get(name)
        assert task.lengths == (3, 4, 5, 6, 7, 8)
        for e in task.examples("train", 60, seed=1):
            items = e.meta["items"]
            assert len(set(items)) == len(items) == e.meta["n"]
            assert all(it in FULL_NAMES for it in items)
            assert e.prompt.endswith(", ".join(items) + "\n")
            out = parse_list(e.target)
            assert len(set(out)) == len(out)
            if "new" in e.meta:
                assert e.meta["new"] not in items and e.meta["new"] in e.prompt
            if "index" in e.meta:
                assert f" {e.meta['index']}" in e.prompt.split(":")[0]


def test_index_tasks_are_one_based():
    for e in T.get("insert_index").examples("train", 40, seed=0):
        assert parse_list(e.target)[e.meta["index"] - 1] == e.meta["new"]
    for e in T.get("replace_index").examples("train", 40, seed=0):
        assert parse_list(e.target)[e.meta["index"] - 1] == e.meta["new"]
    for e in T.get("remove_index").examples("train", 40, seed=0):
        items = e.meta["items"]
        k = e.meta["index"] - 1
        assert parse_list(e.target) == items[:k] + items[k + 1 :]
    indices = {e.meta["index"] for e in T.get("insert_index").examples("train", 300, seed=0)}
    assert indices == set(range(1, 10))


def test_sort_prompt_and_key_agree():
    for e in T.get("sort").examples("train", 30, seed=0):
        assert e.prompt.startswith("sort by full name: ")
        assert parse_list(e.target) == sorted(e.meta["items"])
    by_last = ListTask(
        "sort_last", "sort", FULL_NAMES, range(3, 9), "waiting_line", 48, sort_key="last", key_in_prompt=True
    )
    for e in by_last.examples("train", 30, seed=0):
        assert e.prompt.startswith("sort by last name: ")
        out = parse_list(e.target)
        assert [x.split()[1] for x in out] == sorted(x.split()[1] for x in out)


def test_shuffle_target_is_not_identity():
    for e in T.get("shuffle").examples("train", 60, seed=0):
        assert parse_list(e.target) != e.meta["items"]
        assert sorted(parse_list(e.target)) == sorted(e.meta["items"])


def test_training_mix():
    rng = random.Random(0)
    seen = set()
    for _ in range(300):
        e = T.training_mix(rng)
        assert not is_eval_prompt(e.prompt)
        assert T.get(e.task).score(e.target, e) == 1.0
        seen.add(e.task)
    assert len(seen) >= len(ALL) - 2
    sub = {T.training_mix(random.Random(i), ["copy", "sudoku"]).task for i in range(40)}
    assert sub == {"copy", "sudoku"}
    a = [T.training_mix(random.Random(3)) for _ in range(5)]
    assert a == [T.training_mix(random.Random(3)) for _ in range(5)]
    assert T.training_mix(random.Random(1), [T.get("cumsum")]).task == "cumsum"


# ----------------------------------------------------------------------------- parsing
def test_parse_list_lenient():
    want = ["Emma Stone", "Liam Park"]
    assert parse_list("Emma Stone, Liam Park") == want
    assert parse_list("Emma Stone,Liam Park") == want
    assert parse_list("  Emma  Stone ,  Liam Park  ") == want
    assert parse_list("[Emma Stone, Liam Park]") == want
    assert parse_list('["Emma Stone", "Liam Park"]') == want
    assert parse_list("Emma Stone, Liam Park.") == want
    assert parse_list("[Emma Stone, Liam Park].") == want
    assert parse_list("Emma Stone\nLiam Park\n") == want
    assert parse_list("Emma Stone, , Liam Park,") == want
    assert parse_list("") == []


def test_first_line_only():
    assert first_line("\n\n  a, b \nc") == "a, b"
    e = ex("copy", ["Emma Stone", "Liam Park"], "Emma Stone, Liam Park")
    assert score("copy", "Emma Stone, Liam Park\nNoah Reed", e) == 1.0
    assert score("copy", "\nEmma Stone, Liam Park", e) == 1.0
    assert score("copy", "Sure!\nEmma Stone, Liam Park", e) == 0.0
    assert score("copy", "", e) == 0.0


# ----------------------------------------------------------------------------- checkers: waiting line
ITEMS = ["Emma Stone", "Liam Park", "Noah Reed", "Ava Cole"]


def test_copy_checker():
    e = ex("copy", ITEMS, ", ".join(ITEMS))
    assert score("copy", "Emma Stone, Liam Park, Noah Reed, Ava Cole", e) == 1.0
    assert score("copy", '["Emma Stone", "Liam Park", "Noah Reed", "Ava Cole"]', e) == 1.0
    assert score("copy", "Emma Stone ,Liam Park,  Noah Reed, Ava Cole.", e) == 1.0
    assert score("copy", "Emma Stone, Noah Reed, Liam Park, Ava Cole", e) == 0.0
    assert score("copy", "Emma Stone, Liam Park, Noah Reed", e) == 0.0
    assert score("copy", "Emma Stone, Liam Park, Noah Reed, Ava Cole, Ava Cole", e) == 0.0
    assert score("copy", "emma stone, liam park, noah reed, ava cole", e) == 0.0


def test_reverse_checker():
    e = ex("reverse", ITEMS, "Ava Cole, Noah Reed, Liam Park, Emma Stone")
    assert score("reverse", "Ava Cole, Noah Reed, Liam Park, Emma Stone", e) == 1.0
    assert score("reverse", "[Ava Cole,Noah Reed,Liam Park,Emma Stone]", e) == 1.0
    assert score("reverse", "Noah Reed, Ava Cole, Liam Park, Emma Stone", e) == 0.0  # swapped pair
    assert score("reverse", "Emma Stone, Liam Park, Noah Reed, Ava Cole", e) == 0.0  # copied


def test_sort_checker():
    items = ["Liam Adams", "Emma Stone", "Noah Cole"]
    e = ex("sort", items, "Emma Stone, Liam Adams, Noah Cole")
    assert score("sort", "Emma Stone, Liam Adams, Noah Cole", e) == 1.0
    assert score("sort", "Liam Adams, Noah Cole, Emma Stone", e) == 0.0  # last-name order
    assert score("sort", "Emma Stone, Noah Cole, Liam Adams", e) == 0.0


def test_shuffle_checker():
    e = ex("shuffle", ITEMS, "Liam Park, Emma Stone, Ava Cole, Noah Reed")
    assert score("shuffle", "Liam Park, Emma Stone, Ava Cole, Noah Reed", e) == 1.0
    assert score("shuffle", "Ava Cole, Noah Reed, Liam Park, Emma Stone", e) == 1.0
    assert score("shuffle", "Emma Stone, Liam Park, Noah Reed, Ava Cole", e) == 0.0  # identity
    assert score("shuffle", "Liam Park, Emma Stone, Ava Cole", e) == 0.0  # missing item
    assert score("shuffle", "Liam Park, Emma Stone, Ava Cole, Ava Cole", e) == 0.0  # duplicated
    assert score("shuffle", "Liam Park, Emma Stone, Ava Cole, Noah Reed, Mia Hill", e) == 0.0
    assert score("shuffle", "Liam Park, Emma Stone, Ava Cole, Noah Reeds", e) == 0.0
    # every non-identity permutation is accepted
    perms = list(itertools.permutations(ITEMS))
    assert sum(score("shuffle", ", ".join(p), e) for p in perms) == len(perms) - 1


def test_insert_index_checker():
    e = ex(
        "insert_index", ITEMS, "Emma Stone, Mia Hill, Liam Park, Noah Reed, Ava Cole", new="Mia Hill", index=2
    )
    assert score("insert_index", "Emma Stone, Mia Hill, Liam Park, Noah Reed, Ava Cole", e) == 1.0
    assert score("insert_index", "Mia Hill, Emma Stone, Liam Park, Noah Reed, Ava Cole", e) == 0.0
    assert score("insert_index", "Emma Stone, Liam Park, Noah Reed, Ava Cole", e) == 0.0


def test_insert_random_checker():
    e = ex("insert_random", ITEMS, "", new="Mia Hill")
    for pos in range(len(ITEMS) + 1):
        out = ITEMS[:pos] + ["Mia Hill"] + ITEMS[pos:]
        assert score("insert_random", ", ".join(out), e) == 1.0
    assert score("insert_random", ", ".join(ITEMS), e) == 0.0  # nothing inserted
    assert score("insert_random", ", ".join(["Mia Hill"] + ITEMS + ["Mia Hill"]), e) == 0.0  # twice
    assert score("insert_random", ", ".join(ITEMS + ["Zoe Hill"]), e) == 0.0  # wrong name
    swapped = [ITEMS[1], ITEMS[0]] + ITEMS[2:] + ["Mia Hill"]
    assert score("insert_random", ", ".join(swapped), e) == 0.0  # order changed
    assert score("insert_random", ", ".join(ITEMS[:-1] + ["Mia Hill"]), e) == 0.0  # replaced


def test_remove_index_checker():
    e = ex("remove_index", ITEMS, "Emma Stone, Liam Park, Ava Cole", index=3)
    assert score("remove_index", "Emma Stone, Liam Park, Ava Cole", e) == 1.0
    assert score("remove_index", "Emma Stone, Noah Reed, Ava Cole", e) == 0.0
    assert score("remove_index", "Emma Stone, Liam Park, Noah Reed, Ava Cole", e) == 0.0


def test_remove_random_checker():
    e = ex("remove_random", ITEMS, "")
    for pos in range(len(ITEMS)):
        assert score("remove_random", ", ".join(ITEMS[:pos] + ITEMS[pos + 1 :]), e) == 1.0
    assert score("remove_random", ", ".join(ITEMS), e) == 0.0  # nothing removed
    assert score("remove_random", ", ".join(ITEMS[:2]), e) == 0.0  # two removed
    assert score("remove_random", "Liam Park, Emma Stone, Noah Reed", e) == 0.0  # reordered
    assert score("remove_random", "Emma Stone, Liam Park, Emma Stone", e) == 0.0  # duplicate


def test_replace_index_checker():
    e = ex("replace_index", ITEMS, "Emma Stone, Mia Hill, Noah Reed, Ava Cole", new="Mia Hill", index=2)
    assert score("replace_index", "Emma Stone, Mia Hill, Noah Reed, Ava Cole", e) == 1.0
    assert score("replace_index", "Mia Hill, Liam Park, Noah Reed, Ava Cole", e) == 0.0
    assert score("replace_index", "Emma Stone, Mia Hill, Liam Park, Noah Reed, Ava Cole", e) == 0.0


def test_replace_random_checker():
    e = ex("replace_random", ITEMS, "", new="Mia Hill")
    for pos in range(len(ITEMS)):
        out = list(ITEMS)
        out[pos] = "Mia Hill"
        assert score("replace_random", ", ".join(out), e) == 1.0
    assert score("replace_random", ", ".join(ITEMS), e) == 0.0  # nothing replaced
    assert score("replace_random", "Mia Hill, Mia Hill, Noah Reed, Ava Cole", e) == 0.0  # two
    assert score("replace_random", "Zoe Hill, Liam Park, Noah Reed, Ava Cole", e) == 0.0  # wrong name
    assert score("replace_random", "Mia Hill, Noah Reed, Liam Park, Ava Cole", e) == 0.0  # reordered
    assert score("replace_random", "Mia Hill, Liam Park, Noah Reed", e) == 0.0  # replace + remove
    assert score("replace_random", ", ".join(ITEMS[:1] + ["Mia Hill"] + ITEMS[1:]), e) == 0.0


# ----------------------------------------------------------------------------- checkers: list ops
def test_letters_and_words_checkers():
    e = ex("letters_reverse", list("KBQA"), "A, Q, B, K")
    assert score("letters_reverse", "A, Q, B, K", e) == 1.0
    assert score("letters_reverse", "[A,Q,B,K]", e) == 1.0
    assert score("letters_reverse", "Q, A, B, K", e) == 0.0
    assert score("letters_reverse", "AQBK", e) == 0.0
    e = ex("letters_sort", list("KBQA"), "A, B, K, Q")
    assert score("letters_sort", "A, B, K, Q", e) == 1.0
    assert score("letters_sort", "A, B, Q, K", e) == 0.0
    assert score("letters_sort", "A, B, K", e) == 0.0
    e = ex("letters_copy", list("KBQA"), "K, B, Q, A")
    assert score("letters_copy", "K, B, Q, A.", e) == 1.0
    assert score("letters_copy", "K, B, Q, a", e) == 0.0
    e = ex("words_sort", ["river", "apple", "moon"], "apple, moon, river")
    assert score("words_sort", "apple, moon, river", e) == 1.0
    assert score("words_sort", "apple, river, moon", e) == 0.0
    e = ex("words_reverse", ["river", "apple", "moon"], "moon, apple, river")
    assert score("words_reverse", "moon, apple, river", e) == 1.0
    assert score("words_reverse", "river, apple, moon", e) == 0.0


# ----------------------------------------------------------------------------- checkers: puzzles
def latin_ex(symbols, clues=()) -> Example:
    meta = {"symbols": list(symbols), "size": len(symbols), "clues": [list(c) for c in clues]}
    return Example("latin_square", "latin/test", "", "", meta)


def test_latin_square_checker():
    e = latin_ex("AB9L")
    assert score("latin_square", "A B 9 L, B 9 L A, 9 L A B, L A B 9", e) == 1.0
    assert score("latin_square", "L A B 9, 9 L A B, B 9 L A, A B 9 L", e) == 1.0  # another square
    assert score("latin_square", "AB9L, B9LA, 9LAB, LAB9", e) == 1.0  # no spaces inside rows
    assert score("latin_square", "[A B 9 L, B 9 L A, 9 L A B, L A B 9].\nmore", e) == 1.0
    # repeated symbol in a column (rows are fine)
    assert score("latin_square", "A B 9 L, B 9 L A, A B 9 L, L A B 9", e) == 0.0
    # repeated symbol in a row
    assert score("latin_square", "A A 9 L, B 9 L A, 9 L A B, L B B 9", e) == 0.0
    assert score("latin_square", "A B 9 X, B 9 X A, 9 X A B, X A B 9", e) == 0.0  # wrong symbol
    assert score("latin_square", "A B 9 L, B 9 L A, 9 L A B", e) == 0.0  # 3 rows
    assert score("latin_square", "A B 9 L, B 9 L A, 9 L A B, L A B 9, A B 9 L", e) == 0.0
    assert score("latin_square", "A B 9, B 9 A, 9 A B", e) == 0.0
    assert score("latin_square", "A B 9 L\nB 9 L A\n9 L A B\nL A B 9", e) == 0.0  # first line only


def test_latin_square_clues():
    e = latin_ex("ABCD", clues=[(0, 0, "A"), (2, 3, "D")])
    # a valid Latin square whose cell (2, 3) is B, not the clue's D
    assert score("latin_square", "A B C D, B C D A, C D A B, D A B C", e) == 0.0
    # all 576 Latin squares over ABCD: accepted exactly when both clues hold
    squares = [
        rows
        for rows in itertools.product(itertools.permutations("ABCD"), repeat=4)
        if all(len(set(col)) == 4 for col in zip(*rows))
    ]
    assert len(squares) == 576
    accepted = 0
    for rows in squares:
        text = ", ".join(" ".join(r) for r in rows)
        want = rows[0][0] == "A" and rows[2][3] == "D"
        got = score("latin_square", text, e)
        assert got == float(want), text
        accepted += want
    assert 0 < accepted < 576
    task = LatinSquare(name="latin_clued", clues=3)
    for e in task.examples("train", 20, seed=0):
        assert " | " in e.prompt and len(e.meta["clues"]) == 3
        assert task.score(e.target, e) == 1.0
        r, c, s = e.meta["clues"][0]
        rows = [row.split() for row in parse_list(e.target)]
        # relabel two symbols: still a Latin square, but the first clue no longer holds
        other = next(x for x in e.meta["symbols"] if x != s)
        swap = {s: other, other: s}
        bad = ", ".join(" ".join(swap.get(x, x) for x in row) for row in rows)
        assert task.score(bad, e) == 0.0


def test_latin_square_generator():
    for e in T.get("latin_square").examples("eval", 30, seed=0):
        syms = e.meta["symbols"]
        assert len(set(syms)) == 4 and all(len(s) == 1 and s.isalnum() and s == s.upper() for s in syms)
        assert e.prompt == f"latin square: {', '.join(syms)}\n"
        assert e.meta["clues"] == []


SOLUTION = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]


def sudoku_ex(puzzle, solution) -> Example:
    return Example("sudoku", "sudoku/test", "", "", {"puzzle": puzzle, "solution": solution})


def test_sudoku_checker():
    puzzle = [[1, 0, 3, 4], [3, 4, 0, 2], [2, 1, 4, 3], [0, 3, 2, 0]]
    assert count_solutions(puzzle) == 1
    e = sudoku_ex(puzzle, SOLUTION)
    assert score("sudoku", "1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2 1", e) == 1.0
    assert score("sudoku", "1234, 3412, 2143, 4321", e) == 1.0
    assert score("sudoku", "[1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2 1].\nextra", e) == 1.0
    # a valid Sudoku grid, but not the unique solution of this puzzle
    other = "1 2 3 4, 3 4 1 2, 4 3 2 1, 2 1 4 3"
    assert is_sudoku_solution([[int(d) for d in r.split()] for r in other.split(", ")])
    assert score("sudoku", other, e) == 0.0
    assert score("sudoku", "1 2 3 4, 3 4 1 2, 2 1 4 3", e) == 0.0  # 3 rows
    assert score("sudoku", "1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2 1, 1 2 3 4", e) == 0.0
    assert score("sudoku", "1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2", e) == 0.0
    assert score("sudoku", "1 0 3 4, 3 4 0 2, 2 1 4 3, 0 3 2 0", e) == 0.0  # the puzzle itself
    assert score("sudoku", "1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2 x", e) == 0.0
    assert score("sudoku", "1 2 3 4\n3 4 1 2\n2 1 4 3\n4 3 2 1", e) == 0.0  # first line only


def _brute_force_count(puzzle) -> int:
    blanks = [(r, c) for r in range(4) for c in range(4) if puzzle[r][c] == 0]
    count = 0
    for digits in itertools.product((1, 2, 3, 4), repeat=len(blanks)):
        grid = [list(r) for r in puzzle]
        for (r, c), d in zip(blanks, digits):
            grid[r][c] = d
        count += is_sudoku_solution(grid)
    return count


def test_sudoku_generator_unique_solutions():
    assert len(all_sudoku_grids()) == 288
    exs = T.get("sudoku").examples("eval", 40, seed=0)
    for e in exs:
        puzzle, solution = e.meta["puzzle"], e.meta["solution"]
        assert sum(v != 0 for row in puzzle for v in row) == 12
        assert all(p in (0, s) for pr, sr in zip(puzzle, solution) for p, s in zip(pr, sr))
        assert is_sudoku_solution(solution)
        assert _brute_force_count(puzzle) == 1
    harder = Sudoku(name="sudoku_g9", givens=9)
    for e in harder.examples("train", 3, seed=0):
        assert sum(v != 0 for row in e.meta["puzzle"] for v in row) == 9
        assert _brute_force_count(e.meta["puzzle"]) == 1
    assert count_solutions([[0] * 4 for _ in range(4)], limit=300) == 288


# ----------------------------------------------------------------------------- checkers: math
def test_math_op_checker():
    e = Example("math_op", "m", "math: 959-820\n", "139", {"a": 959, "b": 820, "op": "-", "answer": 139})
    for good in ("139", " 139 ", "= 139.", "139\n140", "+139"):
        assert score("math_op", good, e) == 1.0, good
    for bad in ("138", "1 39", "139 140", "13", "1390", "", "answer: 139", "-139"):
        assert score("math_op", bad, e) == 0.0, bad
    neg = Example("math_op", "m", "math: 8-47\n", "-39", {"a": 8, "b": 47, "op": "-", "answer": -39})
    assert score("math_op", "-39", neg) == 1.0
    assert score("math_op", "- 39", neg) == 1.0
    assert score("math_op", "39", neg) == 0.0
    assert parse_int("1,024") is None
    for e in T.get("math_op").examples("train", 100, seed=0):
        a, b, op = e.meta["a"], e.meta["b"], e.meta["op"]
        assert e.prompt == f"math: {a}{op}{b}\n"
        assert int(e.target) == eval(f"{a}{op}{b}")
        assert 0 <= a <= 999 and 0 <= b <= 999


def test_cumsum_checker():
    e = Example(
        "cumsum",
        "c",
        "cumsum: 3, 1, 4, 1\n",
        "3, 4, 8, 9",
        {"items": [3, 1, 4, 1], "n": 4, "answer": [3, 4, 8, 9]},
    )
    assert score("cumsum", "3, 4, 8, 9", e) == 1.0
    assert score("cumsum", "[3,4,8,9].", e) == 1.0
    assert score("cumsum", "3, 4, 8, 10", e) == 0.0
    assert score("cumsum", "3, 1, 4, 1", e) == 0.0
    assert score("cumsum", "3, 4, 8", e) == 0.0
    assert score("cumsum", "3 4 8 9", e) == 0.0
    for e in T.get("cumsum").examples("train", 50, seed=0):
        assert all(1 <= v <= 9 for v in e.meta["items"])
        assert [int(x) for x in parse_list(e.target)] == list(itertools.accumulate(e.meta["items"]))
