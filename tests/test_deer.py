"""DEER: the alignment recipe's weighting and losses, and the deer drafter (lossless, greedy identity)."""

from __future__ import annotations

import random

import pytest
import torch
from test_speculate import SAMPLED_DRAFTERS, random_dllm  # noqa: F401  (shared small models)

import dllm
from dllm.zoo import deer


def test_stage2_weights_are_alpha_to_the_distance_from_the_block_end():
    w = deer.stage2_weights(4, 1.01)
    assert torch.allclose(w, torch.tensor([1.01**3, 1.01**2, 1.01, 1.0], dtype=torch.float64))
    assert deer.stage2_weights(96, 1.01)[0] == pytest.approx(1.01**95)  # ~2.6 at R = 96, as the paper says


PAIRS = [
    ([1, 10, 11, 12], [20, 21, 22, 23, 2]),
    ([1, 13, 14], [24, 25, 2]),
    ([1, 15, 16, 17, 18], [26, 2]),
] * 8


def test_stage2_batch_masks_exactly_the_last_r_answer_tokens_with_decaying_weights():
    recipe = deer.DeerRecipe(batch_size=6, r_max=3)
    tokens, positions, valid, masked, weights, block = deer.stage2_batch(PAIRS, recipe, random.Random(0))
    assert torch.equal(masked, block)
    for row in range(6):
        w = weights[row][block[row]]
        assert torch.allclose(w.double(), deer.stage2_weights(len(w), 1.01))


def test_stage1_batch_masks_only_inside_the_block():
    recipe = deer.DeerRecipe(batch_size=12, blocks=(4,))
    tokens, positions, valid, masked, weights, block = deer.stage1_batch(
        PAIRS, recipe, random.Random(0), torch.Generator().manual_seed(0)
    )
    assert not (masked & ~block).any() and masked.any()
    assert (block.sum(1) == 4).all()
    assert (weights[masked] >= 1).all()  # 1/t with t <= 1


def test_alignment_loss_decreases_on_a_fixed_batch():
    net = random_dllm(0).net.train()
    pairs = [([1, 2, 3], [4, 5, 2]), ([1, 3, 2], [5, 4, 2])] * 4
    recipe = deer.DeerRecipe(batch_size=8, r_max=3)
    batch = deer.stage2_batch(pairs, recipe, random.Random(0))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = deer.masked_loss(net, *batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_bad_recipe_values_are_clear_errors():
    with pytest.raises(ValueError, match="alpha"):
        deer.DeerRecipe(alpha=0.9)
    with pytest.raises(ValueError, match="stages"):
        deer.DeerRecipe(stages=(3,))
    with pytest.raises(ValueError, match="deer.k=0"):
        dllm.drafters.get("deer", k=0)


def test_deer_sampling_is_lossless():
    SAMPLED_DRAFTERS["independent (deer)"] = (
        lambda: dllm.drafters.get("deer", model=random_dllm(3), k=3),
        dict(temperature=1.0),
    )
    from test_speculate import test_speculative_sampling_matches_the_verifier_distribution as check

    check("independent (deer)")


@pytest.mark.skipif("tiny-deer" not in dllm.zoo.shipped_models(), reason="tiny-deer not shipped")
def test_greedy_deer_is_tiny_ars_greedy_output_batch_and_alone():
    from dllm.eval import tasks
    from dllm.metrics import answer_length

    verifier = dllm.load("tiny-ar")
    prompts = [
        e.prompt
        for name in ("copy", "sort", "shuffle", "cumsum")
        for e in tasks.get(name).examples("eval", 2)
    ]
    batch = dllm.speculate(verifier, prompts, "deer", max_new_tokens=48)
    for prompt, row in zip(prompts, batch):
        ids = torch.tensor([verifier.encode(prompt)])
        with torch.no_grad():
            out = verifier.net.generate(
                ids,
                max_new_tokens=48,
                do_sample=False,
                eos_token_id=verifier.eos_ids,
                pad_token_id=verifier.pad_id,
            )[0, ids.shape[1] :].tolist()
        assert row.ids == out[: answer_length(out, verifier.eos_ids)]
    [alone] = dllm.speculate(verifier, prompts[:1], "deer", max_new_tokens=48)
    assert alone.ids == batch[0].ids and alone.rounds == batch[0].rounds
