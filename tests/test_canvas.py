"""The canvas layout shared by decoding and training, its edits, and the logit rules."""

import torch

from dllm import canvas
from dllm import logits as logit_lib
from dllm.config import GenerationConfig
from dllm.state import Edit
from dllm.zoo.train import EOS_ID, layout_diffusion
from tests._models import EOS, MASK, PAD, random_model


def _state(prompts, **settings):
    model = random_model("llada")
    return canvas.new_state(model, prompts, GenerationConfig(**settings))


def test_a_rows_positions_do_not_depend_on_its_batch():
    alone = _state([[5, 6]], gen_length=4, block_length=4)
    batched = _state([[7, 8, 9, 10, 11], [5, 6]], gen_length=4, block_length=4)
    row = batched.positions[1][batched.valid[1]]
    assert torch.equal(row, alone.positions[0][alone.valid[0]])
    assert batched.gen_start == 5 and batched.pads.tolist() == [0, 3]
    assert batched.tokens[1, :3].tolist() == [PAD] * 3 and (batched.tokens[:, 5:] == MASK).all()


def test_the_trainer_lays_batches_out_like_decoding():
    prompts, targets = [[1, 10, 11], [1, 12]], [[20, 21], [22]]
    tokens, positions, valid, in_canvas = layout_diffusion(prompts, targets, [4, 4])
    state = _state(prompts, gen_length=4, block_length=4)
    assert torch.equal(positions, state.positions) and torch.equal(valid, state.valid)
    assert torch.equal(in_canvas, state.in_generation())
    assert tokens[0, 3:].tolist() == [20, 21, EOS_ID, EOS_ID]


def test_inserting_masks_shifts_the_rest_and_grows_the_block():
    state = _state([[5, 6], [7]], gen_length=4, block_length=2)
    state.tokens[0, 2:6] = torch.tensor([30, 31, 32, 33])
    relaid = canvas.apply_edits(state, None, [Edit(op="insert", row=0, col=3, n=2)])
    assert relaid and state.width == 8 and state.gen_end.tolist() == [8, 6]
    assert state.tokens[0, 2:8].tolist() == [30, MASK, MASK, 31, 32, 33]
    assert state.block_end.tolist() == [6, 4]  # the insert fell inside row 0's first block
    assert state.valid[1].tolist() == [False, True, True, True, True, True, False, False]


def test_insert_respects_the_context_limit():
    state = _state([[5, 6]], gen_length=4, block_length=4, max_length=7)
    canvas.insert_masks(state, 0, 2, 5)
    assert int(state.gen_end[0]) == 7  # only one column fitted


def test_finish_writes_eos_over_the_masks_left_behind():
    state = _state([[5, 6], [7, 8]], gen_length=3, block_length=3)
    state.tokens[0, 2] = 40
    canvas.finish(state, torch.tensor([True, False]))
    assert state.tokens[0, 2:].tolist() == [40, EOS, EOS] and state.active.tolist() == [False, True]
    assert (state.tokens[1, 2:] == MASK).all()


def test_region_pads_with_each_rows_last_column():
    state = _state([[5, 6], [7, 8]], gen_length=6, block_length=3)
    cols, valid = canvas.region(state, torch.tensor([2, 4]), torch.tensor([5, 6]))
    assert cols.tolist() == [[2, 3, 4], [4, 5, 5]] and valid.tolist() == [[True] * 3, [True, True, False]]


def test_logit_rules_stack_and_the_mask_is_never_proposed():
    state = _state([[5]], gen_length=2, block_length=2, logits_eos_inf=True)
    rules = logit_lib.logit_rules(state.config, state)
    assert [r.token_ids for r in rules] == [(MASK,), (EOS,)]
    logits = torch.zeros(1, 2, 64)
    logits[..., MASK] = 9.0
    logits[..., EOS] = 8.0
    logits[..., 11] = 1.0
    out = logit_lib.apply_rules(rules, logits, state)
    pred = logit_lib.propose(out, state, torch.tensor([[1, 2]]))
    assert pred.tolist() == [[11, 11]]
    assert torch.allclose(logit_lib.confidence(out, pred), torch.softmax(out, -1)[..., 11])


def test_eos_ranks_last_but_stays_proposable():
    state = _state([[5]], gen_length=2, block_length=2, confidence_eos_eot_inf=True)
    score = logit_lib.ranking_score(torch.tensor([[0.9, 0.1]]), torch.tensor([[EOS, 3]]), state)
    assert score[0, 0] < 0 < score[0, 1]
