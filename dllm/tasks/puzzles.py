"""Puzzles: 4x4 Latin square (validity checker) and 4x4 Sudoku (unique solution, exact match).

Grids are written on one line: rows separated by ``", "``, cells inside a row by one space.

* ``latin_square``: ``"latin square: A, 7, Q, C\\n"`` -> e.g. ``"7 Q C A, A 7 Q C, C A 7 Q, Q C A 7"``.
  Four distinct symbols drawn from A-Z and 0-9, as in ParallelBench.  Any Latin square over the
  symbols is right.  The stored target is the cyclic square over the symbols with rows and columns
  shuffled.  Optional clues (``clues > 0``; not used by the registered task, like ParallelBench)
  are appended as a grid with ``.`` for free cells:
  ``"latin square: A, 7, Q, C | A . . ., . . . ., . . Q ., . . . .\\n"``.
* ``sudoku``: ``"sudoku: 1 0 3 4, 3 4 0 2, 2 1 4 3, 0 3 2 1\\n"`` -> ``"1 2 3 4, 3 4 1 2, 2 1 4 3, 4 3 2 1"``.
  ``0`` marks a blank.  Every row, column and 2x2 box must hold 1-4.  The generator draws a uniform
  random complete grid (out of all 288) and blanks cells in random order, keeping a blank only if the
  puzzle still has exactly one solution, until ``16 - givens`` cells are blank (default 12 givens,
  ParallelBench's ``sudoku_n4_12``).
"""

from __future__ import annotations

import itertools
import random
import re
from functools import lru_cache

from .base import Example, Task, answer_list, join_items
from .names import LATIN_SYMBOLS

Grid = list[list[int]]


def render_grid(grid) -> str:
    """``[[1, 2], [2, 1]] -> "1 2, 2 1"``."""
    return join_items(" ".join(str(c) for c in row) for row in grid)


def parse_grid_rows(prediction: str) -> list[list[str]]:
    """Rows of cells from the first line of a prediction.

    Rows are the items of :func:`parse_list`; a row is split on whitespace, or into characters when
    it is one run without spaces (``"ABCD"``).
    """
    rows = []
    for row in answer_list(prediction):
        cells = row.split()
        if len(cells) == 1:
            cells = list(cells[0])
        rows.append(cells)
    return rows


# ------------------------------------------------------------------ Latin square
def is_latin_square(rows: list[list[str]], symbols, clues=()) -> bool:
    """Every row and column is a permutation of ``symbols`` and every clue ``(r, c, s)`` holds."""
    n = len(symbols)
    want = sorted(symbols)
    if len(rows) != n or any(len(r) != n for r in rows):
        return False
    if any(sorted(r) != want for r in rows):
        return False
    if any(sorted(col) != want for col in zip(*rows)):
        return False
    return all(rows[r][c] == s for r, c, s in clues)


class LatinSquare(Task):
    family = "puzzle"
    deterministic = False

    def __init__(self, name: str = "latin_square", size: int = 4, clues: int = 0, max_new_tokens: int = 40):
        self.name = name
        self.size = size
        self.clues = clues
        self.max_new_tokens = max_new_tokens

    def make(self, rng: random.Random, length: int | None) -> tuple[str, str, dict]:
        n = self.size
        symbols = rng.sample(LATIN_SYMBOLS, n)
        row_perm = rng.sample(range(n), n)
        col_perm = rng.sample(range(n), n)
        square = [[symbols[(row_perm[i] + col_perm[j]) % n] for j in range(n)] for i in range(n)]
        cells = sorted(rng.sample(range(n * n), self.clues))
        clues = [[k // n, k % n, square[k // n][k % n]] for k in cells]
        prompt = f"latin square: {join_items(symbols)}"
        if clues:
            given = {(r, c): s for r, c, s in clues}
            prompt += " | " + render_grid([[given.get((i, j), ".") for j in range(n)] for i in range(n)])
        meta = {"symbols": symbols, "size": n, "clues": clues}
        return prompt + "\n", render_grid(square), meta

    def score(self, prediction: str, example: Example) -> float:
        """1.0 iff the first line is exactly ``size`` rows, each row and column a permutation of the
        symbols, and the clues (if any) respected.  Lenient row parsing as in :func:`parse_grid_rows`."""
        rows = parse_grid_rows(prediction)
        m = example.meta
        return float(is_latin_square(rows, m["symbols"], [tuple(c) for c in m.get("clues", [])]))


# ------------------------------------------------------------------ Sudoku 4x4
_BOXES = [[(r, c) for r in range(br, br + 2) for c in range(bc, bc + 2)] for br in (0, 2) for bc in (0, 2)]


def is_sudoku_solution(grid: Grid) -> bool:
    want = [1, 2, 3, 4]
    if len(grid) != 4 or any(len(r) != 4 for r in grid):
        return False
    units = [list(r) for r in grid] + [list(c) for c in zip(*grid)]
    units += [[grid[r][c] for r, c in box] for box in _BOXES]
    return all(sorted(u) == want for u in units)


@lru_cache(maxsize=1)
def all_sudoku_grids() -> tuple[tuple[tuple[int, ...], ...], ...]:
    """Every complete 4x4 Sudoku grid (there are 288), in lexicographic order."""
    perms = list(itertools.permutations((1, 2, 3, 4)))
    out = []

    def ok(rows) -> bool:  # columns and completed boxes still free of repeats
        if any(len(set(col)) != len(col) for col in zip(*rows)):
            return False
        if len(rows) % 2 == 0:
            a, b = rows[-2], rows[-1]
            if len({a[0], a[1], b[0], b[1]}) != 4 or len({a[2], a[3], b[2], b[3]}) != 4:
                return False
        return True

    def extend(rows) -> None:
        if len(rows) == 4:
            out.append(tuple(rows))
            return
        for p in perms:
            if ok(rows + [p]):
                extend(rows + [p])

    extend([])
    return tuple(out)


def _candidates(grid: Grid, r: int, c: int) -> list[int]:
    used = set(grid[r]) | {grid[i][c] for i in range(4)}
    br, bc = 2 * (r // 2), 2 * (c // 2)
    used |= {grid[i][j] for i in (br, br + 1) for j in (bc, bc + 1)}
    return [d for d in (1, 2, 3, 4) if d not in used]


def count_solutions(puzzle: Grid, limit: int = 2) -> int:
    """Number of completions of ``puzzle`` (0 = blank), counting at most ``limit`` (backtracking)."""
    grid = [list(r) for r in puzzle]
    blanks = [(r, c) for r in range(4) for c in range(4) if grid[r][c] == 0]
    count = 0

    def solve(k: int) -> None:
        nonlocal count
        if count >= limit:
            return
        if k == len(blanks):
            count += 1
            return
        r, c = blanks[k]
        for d in _candidates(grid, r, c):
            grid[r][c] = d
            solve(k + 1)
            grid[r][c] = 0
            if count >= limit:
                return

    solve(0)
    return count


def make_sudoku(rng: random.Random, givens: int = 12) -> tuple[Grid, Grid]:
    """A ``(puzzle, solution)`` pair with exactly ``givens`` filled cells and a unique solution."""
    if not 4 <= givens <= 16:
        raise ValueError("givens must be in 4..16")
    grids = all_sudoku_grids()
    while True:
        solution = [list(r) for r in rng.choice(grids)]
        puzzle = [list(r) for r in solution]
        blanks = 0
        for k in rng.sample(range(16), 16):
            if blanks == 16 - givens:
                break
            r, c = divmod(k, 4)
            puzzle[r][c] = 0
            if count_solutions(puzzle) == 1:
                blanks += 1
            else:
                puzzle[r][c] = solution[r][c]
        if blanks == 16 - givens:
            return puzzle, solution


class Sudoku(Task):
    family = "puzzle"
    deterministic = True

    def __init__(self, name: str = "sudoku", givens: int = 12, max_new_tokens: int = 40):
        self.name = name
        self.givens = givens
        self.max_new_tokens = max_new_tokens

    def make(self, rng: random.Random, length: int | None) -> tuple[str, str, dict]:
        puzzle, solution = make_sudoku(rng, self.givens)
        meta = {"puzzle": puzzle, "solution": solution, "givens": self.givens}
        return f"sudoku: {render_grid(puzzle)}\n", render_grid(solution), meta

    def score(self, prediction: str, example: Example) -> float:
        """1.0 iff the first line holds exactly 4 rows of exactly 4 digits equal to the unique
        solution (spaces inside a row are optional: ``"1234, 3412, ..."`` also counts)."""
        rows = []
        for row in answer_list(prediction):
            if not re.fullmatch(r"[\d\s]+", row):
                return 0.0
            rows.append([int(d) for d in re.findall(r"\d", row)])
        return float(rows == example.meta["solution"])
