"""Closed forms (dllm.eval.theory) and the framework's samplers on the ideal-marginal oracle model."""

from __future__ import annotations

import math
import random

import pytest
import torch

import dllm
from dllm.eval import theory
from dllm.eval.oracle import IdealMarginalModel, default_items
from dllm.samplers.llada import uniform_schedule

LETTERS = [chr(ord("A") + i) for i in range(26)]


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------- closed forms
@pytest.mark.parametrize(
    "n, c_shuffle, l_half, acc2, acc3, acc4, accn, c_replace, acc_sampled",
    [
        (4, 3.415, 1.415, 0.375, 0.375, 0.0938, 0.0938, 1.245, 0.4219),
        (6, 6.018, 1.678, 0.3125, 0.1235, 0.1389, 0.0154, 1.315, 0.4019),
        (8, 8.701, 1.871, 0.2734, 0.1575, 0.0385, 0.0024, 1.349, 0.3927),
        (10, 11.428, 2.023, 0.2461, 0.1653, 0.0700, 0.0004, 1.368, 0.3874),
    ],
)
def test_closed_forms_match_the_spec_table(
    n, c_shuffle, l_half, acc2, acc3, acc4, accn, c_replace, acc_sampled
):
    assert theory.total_correlation("shuffle", n) == pytest.approx(c_shuffle, abs=1e-3)
    assert theory.shuffle_two_per_step_floor(n) == pytest.approx(l_half, abs=1e-3)
    assert theory.shuffle_step_floor(theory.topk_schedule(n, 2)) == pytest.approx(
        theory.shuffle_two_per_step_floor(n)
    )
    for k, want in ((2, acc2), (3, acc3), (4, acc4), (n, accn)):
        assert theory.shuffle_topk_accuracy(theory.topk_schedule(n, k)) == pytest.approx(want, abs=1e-4)
    assert theory.total_correlation("replace_random", n) == pytest.approx(c_replace, abs=1e-3)
    assert theory.replace_random_sampled_one_step_accuracy(n) == pytest.approx(acc_sampled, abs=1e-4)


def test_limits_and_simple_cases():
    assert theory.total_correlation("copy", 8) == 0 == theory.total_correlation("replace_index", 5)
    assert theory.total_correlation("replace_random", 10_000) == pytest.approx(math.log2(math.e), abs=1e-3)
    assert theory.replace_random_sampled_one_step_accuracy(10_000) == pytest.approx(1 / math.e, abs=1e-3)
    assert theory.shuffle_step_floor([1] * 7) == 0.0
    assert theory.shuffle_step_floor([7]) == pytest.approx(theory.total_correlation("shuffle", 7))
    # greedy top-k on replace_random: 1 at k = 1, 0.5 at k = 2, 0 at k > 2 (k | n)
    assert theory.replace_random_topk_accuracy(theory.topk_schedule(6, 1)) == 1.0
    assert theory.replace_random_topk_accuracy(theory.topk_schedule(6, 2)) == 0.5
    assert theory.replace_random_topk_accuracy(theory.topk_schedule(6, 3)) == 0.0
    # threshold: shuffle is exact above 1/2; replace_random is exact iff threshold > (n-1)/n
    assert theory.shuffle_threshold_accuracy(6, 0.51) == 1.0
    assert theory.shuffle_threshold_accuracy(6, 0.3) == pytest.approx(math.factorial(3) / 27)
    assert theory.replace_random_threshold_accuracy(6, 0.84) == 1.0
    assert theory.replace_random_threshold_accuracy(6, 5 / 6) == 0.0  # ">= threshold" commits: boundary fails
    with pytest.raises(ValueError, match="threshold"):
        theory.shuffle_threshold_accuracy(4, 0.0)
    with pytest.raises(ValueError, match="commits 5 slots"):
        theory.expected_accuracy("shuffle", 6, schedule=[5])


# ------------------------------------------------------------------------------------- oracle model
def _prompts(op: str, n: int, trials: int, rng: random.Random, items=LETTERS) -> list[tuple[str, list[str]]]:
    out = []
    for _ in range(trials):
        xs = rng.sample(items, n + 1)
        header = f"replace any with {xs[-1]}" if op == "replace_random" else op
        out.append((f"{header}: {', '.join(xs[:n])}\n", xs))
    return out


def _correct(op: str, text: str, xs: list[str], n: int) -> bool:
    pred = text.split(", ")
    if op == "shuffle":  # any arrangement of the items (the identity included, as in the closed form)
        return sorted(pred) == sorted(xs[:n])
    diff = [i for i, (a, b) in enumerate(zip(pred, xs[:n])) if a != b]
    return len(pred) == n and len(diff) == 1 and pred[diff[0]] == xs[-1]


def _check(rate: float, p: float, trials: int) -> None:
    tol = 4 * math.sqrt(p * (1 - p) / trials)
    assert abs(rate - p) <= tol + 1e-12, f"measured {rate:.4f}, closed form {p:.4f} (4 sigma = {tol:.4f})"


TRIALS = 1000


@pytest.mark.parametrize(
    "op, n, steps, remasking",
    [
        ("shuffle", 6, 3, "low_confidence"),
        ("shuffle", 6, 2, "low_confidence"),
        ("shuffle", 6, 1, "low_confidence"),
        ("shuffle", 8, 4, "random"),
        ("replace_random", 6, 6, "low_confidence"),
        ("replace_random", 6, 3, "low_confidence"),
        ("replace_random", 6, 2, "low_confidence"),
        ("replace_random", 5, 3, "low_confidence"),
    ],
)
def test_llada_topk_matches_closed_form(op, n, steps, remasking):
    model = IdealMarginalModel(items=LETTERS, seed=steps)
    cases = _prompts(op, n, TRIALS, random.Random(n * 100 + steps))
    results = dllm.generate(
        model,
        [p for p, _ in cases],
        sampler=dllm.samplers.get("llada", remasking=remasking),
        gen_length=n,
        block_length=n,
        steps=steps,
    )
    rate = sum(_correct(op, r.text, xs, n) for r, (_, xs) in zip(results, cases)) / TRIALS
    schedule = uniform_schedule(torch.tensor([n]), steps)[
        0
    ].tolist()  # what the llada sampler commits per step
    want = theory.expected_accuracy(op, n, schedule=schedule)
    _check(rate, want, TRIALS)
    assert all(r.steps == steps for r in results)


@pytest.mark.parametrize(
    "op, n, threshold",
    [
        ("shuffle", 6, 0.6),
        ("shuffle", 6, 0.3),
        ("shuffle", 6, 0.15),
        ("replace_random", 6, 0.9),
        ("replace_random", 6, 0.8),
        ("replace_random", 2, 0.4),
    ],
)
def test_fast_dllm_threshold_matches_closed_form(op, n, threshold):
    model = IdealMarginalModel(items=LETTERS, seed=7)
    cases = _prompts(op, n, TRIALS, random.Random(int(threshold * 1000) + n))
    results = dllm.generate(
        model,
        [p for p, _ in cases],
        sampler=dllm.samplers.get("fast-dllm", threshold=threshold),
        gen_length=n,
        block_length=n,
    )
    rate = sum(_correct(op, r.text, xs, n) for r, (_, xs) in zip(results, cases)) / TRIALS
    _check(rate, theory.expected_accuracy(op, n, threshold=threshold), TRIALS)


def test_sampled_one_step_replace_random_is_about_one_over_e():
    """Temperature 1, all slots in one step: ((n-1)/n)^(n-1). Rows of one call use disjoint items and
    calls use different seeds, so every trial draws independent noise."""
    n, rows, calls = 6, 50, 16
    model = IdealMarginalModel(seed=3)
    names = default_items()[:3600]
    rng = random.Random(11)
    hits = 0
    for call in range(calls):
        pool = rng.sample(names, rows * (n + 1))
        cases = []
        for r in range(rows):
            xs = pool[r * (n + 1) : (r + 1) * (n + 1)]
            cases.append((f"replace any with {xs[-1]}: {', '.join(xs[:n])}\n", xs))
        results = dllm.generate(
            model,
            [p for p, _ in cases],
            sampler="llada",
            gen_length=n,
            block_length=n,
            steps=1,
            temperature=1.0,
            seed=call,
        )
        hits += sum(_correct("replace_random", r.text, xs, n) for r, (_, xs) in zip(results, cases))
    _check(hits / (rows * calls), theory.replace_random_sampled_one_step_accuracy(n), rows * calls)


def test_oracle_model_tokenises_and_decodes_real_task_prompts():
    from dllm.eval import tasks

    model = IdealMarginalModel()
    for name in ("copy", "reverse", "sort", "replace_index", "insert_index", "remove_index", "letters_sort"):
        task = tasks.get(name)
        examples = task.examples("eval", 3, seed=1)
        n = max(len(ex.target.split(", ")) for ex in examples)
        results = dllm.generate(
            model, [ex.prompt for ex in examples], sampler="fast-dllm", gen_length=n + 2, block_length=n + 2
        )
        assert [task.score(r.text, ex) for r, ex in zip(results, examples)] == [1.0, 1.0, 1.0], name
    with pytest.raises(ValueError, match="does not know the task header"):
        model.encode("sudoku: 1 2 3 4\n")
    with pytest.raises(ValueError, match="not an item"):
        model.encode("copy: Emma Stone, not-a-name\n")
