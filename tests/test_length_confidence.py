"""The ``confidence`` draft-length controller (transformers' current assisted-generation default) and the
``ar`` drafter's confidence stop: the ROC rule on hand-made histories, the stop at the first
low-confidence token, greedy identity at batch 1 and 4, and bad parameters (round-for-round agreement with
transformers' assisted generation and the T = 1 test: ``test_speculate.py``)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
import torch

import dllm
from dllm import drafters
from dllm.drafters import length as lengths
from dllm.drafters.base import DraftRequest, Proposal, Sampling
from dllm.drafters.length import ConfidenceLength, roc_threshold

TASKS = ("copy", "reverse", "sort", "shuffle", "insert_index", "replace_random", "cumsum", "letters_sort")


def best_thresholds(matches, probs, miss_cost=3) -> set[float]:
    """The ROC rule computed directly and exactly: every threshold t (each probability, and +inf) passes
    the tokens with p >= t; cost = fpr + miss_cost·fnr in fractions; the thresholds of least cost (the
    rule takes the highest; in floating point a tie may fall either way, as it does in transformers)."""
    positives, negatives = matches.count(1), matches.count(0)
    costs = {}
    for t in set(probs) | {float("inf")}:
        fp = sum(1 for p, m in zip(probs, matches) if p >= t and m == 0)
        fn = sum(1 for p, m in zip(probs, matches) if p < t and m == 1)
        costs[t] = Fraction(fp, negatives) + miss_cost * Fraction(fn, positives)
    return {t for t, cost in costs.items() if cost == min(costs.values())}


def test_roc_threshold_on_hand_made_histories():
    # separable: every accepted token above every rejected one, so the lowest accepted probability
    assert roc_threshold([1, 1, 1, 1, 0, 0], [0.9, 0.8, 0.7, 0.6, 0.3, 0.2]) == 0.6
    # a rejected token at 0.8: passing it (fpr 1/2) is cheaper than missing the three below it
    assert roc_threshold([1, 0, 1, 1, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.5, 0.1]) == 0.5
    # misses cost 3 false passes: one accepted token at 0.05 is worth passing every rejected token
    assert roc_threshold([0, 0, 1, 1, 1, 0, 1], [0.95, 0.9, 0.85, 0.8, 0.7, 0.4, 0.05]) == 0.05
    # ties in probability are one point of the curve
    assert roc_threshold([1, 0, 1, 0, 1, 1], [0.5, 0.5, 0.5, 0.2, 0.9, 0.9]) == 0.5
    for seed in range(300):  # random histories, few distinct values (ties, collinear points)
        rng = random.Random(seed)
        values = [0.1, 0.25, 0.4, 0.5, 0.75, 0.9]
        probs = [rng.choice(values + [rng.random()]) for _ in range(rng.randint(2, 40))]
        matches = [int(rng.random() < p) for p in probs]
        if 0 in matches and 1 in matches:
            assert roc_threshold(matches, probs) in best_thresholds(matches, probs), (matches, probs)


def test_roc_threshold_is_transformers_sklearn_rule():
    """transformers calls ``sklearn.metrics.roc_curve`` and takes the argmin of fpr + 3·fnr."""
    roc_curve = pytest.importorskip("sklearn.metrics").roc_curve
    for seed in range(300):
        rng = random.Random(seed)
        probs = [round(rng.random(), rng.choice([1, 2, 7])) for _ in range(rng.randint(6, 60))]
        matches = [int(rng.random() < 1.2 * p) for p in probs]
        if 0 in matches and 1 in matches:
            fpr, tpr, thresholds = roc_curve(matches, probs)
            assert roc_threshold(matches, probs) == thresholds[(fpr + 3 * (1 - tpr)).argmin()]


def test_the_defaults_are_transformers_current_assisted_generation_defaults():
    from transformers import GenerationConfig

    defaults = GenerationConfig._get_default_generation_params()
    assert defaults["num_assistant_tokens_schedule"] == "constant"  # k does not move
    controller = ConfidenceLength()
    assert controller.k == defaults["num_assistant_tokens"]
    assert controller.threshold == defaults["assistant_confidence_threshold"] and controller.adaptive


def round_of(confidence, accepted):
    return Proposal(tokens=[5] * len(confidence), kind="deterministic", confidence=confidence), accepted


def test_the_controller_keeps_transformers_history_and_adapts_after_five_tokens():
    controller = lengths.get("confidence")
    state = controller.initial()
    assert controller.next_length(state) == 20 and controller.stop_below(state) == 0.4
    # round 1: two accepted, the third rejected, the fourth never verified (it leaves the history)
    state = controller.update(state, *round_of([0.9, 0.8, 0.3, 0.2], 2))
    assert state == (0.4, (0.9, 0.8, 0.3), (1, 1, 0))  # 3 tokens of history: too few to adapt
    # round 2: all four accepted: no miss is added
    state = controller.update(state, *round_of([0.95, 0.7, 0.35, 0.5], 4))
    probs, matches = (0.9, 0.8, 0.3, 0.95, 0.7, 0.35, 0.5), (1, 1, 0, 1, 1, 1, 1)
    assert state[1:] == (probs, matches)
    assert best_thresholds(list(matches), list(probs)) == {0.35} == {controller.stop_below(state)}
    assert controller.next_length(state) == 20
    # round 3: the first token rejected: only it joins the history, as a miss
    state = controller.update(state, *round_of([0.6, 0.1], 0))
    assert state[1:] == (probs + (0.6,), matches + (0,))
    [best] = best_thresholds(list(matches + (0,)), list(probs + (0.6,)))
    assert controller.stop_below(state) == best
    assert controller.initial() == (0.4, (), ())  # pure: the instance keeps no row state
    fixed = ConfidenceLength(k=7, threshold=0.3, adaptive=False)
    kept = fixed.update(fixed.initial(), *round_of([0.9] * 7 + [0.1], 1))
    assert fixed.stop_below(kept) == 0.3 and fixed.next_length(kept) == 7
    off = ConfidenceLength(threshold=0.0, adaptive=False)  # no confidence stop: a fixed k
    assert off.stop_below(off.initial()) == 0.0
    # an empty draft (k clipped to 0 by the budget) changes nothing
    assert controller.update(state, Proposal(tokens=[], kind="deterministic", confidence=[]), 0) == state


@pytest.fixture(scope="module")
def tiny_ar():
    return dllm.load("tiny-ar")


@pytest.fixture(scope="module")
def prompts():
    from dllm.eval import tasks

    return [e.prompt for name in TASKS for e in tasks.get(name).examples("eval", 1, seed=0)]


def test_the_draft_stops_at_the_first_low_confidence_token(tiny_ar, prompts):
    drafter = drafters.get("ar")
    run = drafter.start(tiny_ar, Sampling())
    cut_somewhere = False
    for row, prompt in enumerate(prompts):
        context = tiny_ar.encode(prompt)

        def propose(stop_below, row=row, context=context):
            request = DraftRequest(row, context, 12, torch.Generator(), stop_below=stop_below)
            return drafter.propose(run, [request])[0]

        full = propose(0.0)
        assert len(full.confidence) == len(full.tokens) and all(0 < c <= 1 for c in full.confidence)
        ranked = sorted(set(full.confidence))
        middles = [(a + b) / 2 for a, b in zip(ranked, ranked[1:]) if b - a > 1e-4]  # clear of float noise
        for threshold in [0.5, 0.9] + middles:
            low = next((i for i, c in enumerate(full.confidence) if c < threshold), None)
            cut = propose(threshold)
            expected = len(full.tokens) if low is None else low + 1  # the low-confidence token is kept
            assert cut.tokens == full.tokens[:expected]
            assert cut.confidence == pytest.approx(full.confidence[:expected], abs=1e-5)  # cached or not
            cut_somewhere |= expected < len(full.tokens)
    assert cut_somewhere


@pytest.mark.parametrize("batch", [1, 4])
def test_greedy_is_plain_greedy(tiny_ar, prompts, batch):
    plain = dllm.speculate(tiny_ar, prompts, None, max_new_tokens=40)
    ours = dllm.speculate(tiny_ar, prompts, "ar", length="confidence", max_new_tokens=40, max_batch=batch)
    assert [r.ids for r in ours] == [r.ids for r in plain]
    assert sum(r.gen_tokens for r in ours) > 2 * sum(r.verifier_forwards for r in ours)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(k=0), r"confidence.k=0 is out of range"),
        (dict(threshold=1.5), r"confidence.threshold=1.5 is out of range; allowed \[0.0, 1.0\]"),
        (dict(threshold=-0.1), r"confidence.threshold=-0.1 is out of range"),
        (dict(threshold=float("nan")), r"confidence.threshold=nan is not a finite number"),
        (dict(threshold=0.0), r"confidence.threshold=0 turns the confidence stop off"),
        (dict(adaptive="yes"), r"confidence.adaptive='yes' has the wrong type"),
        (dict(k=2.5), r"confidence.k=2.5 has the wrong type"),
    ],
)
def test_bad_parameters_are_refused_by_name(params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        lengths.get("confidence", **params)


def test_a_drafter_that_cannot_stop_on_confidence_is_refused(tiny_ar):
    with pytest.raises(ValueError, match="length controller 'confidence' .* drafter 'onepass' cannot"):
        dllm.speculate(tiny_ar, ["copy: a b\n"], "onepass", length="confidence")
