"""Finished rows leave the batch: no later forward computes them, and every row equals its run alone."""

import pytest

import dllm
from dllm.eval import tasks

PROMPTS = [e.prompt for t in ("copy", "reverse", "sort", "sudoku") for e in tasks.get(t).examples("eval", 2)]
CASES = [
    ("eotp", "none", {}),
    ("prophet", "none", {}),
    ("fast-dllm", "dual", {"stop_at_eos": True}),
    ("localleap", "elastic", {"stop_at_eos": True}),
    ("fast-dllm", "prefix", {"stop_at_eos": True}),
    ("learn2pd", "dual", {}),
    ("daedal", "none", {}),
]


@pytest.fixture(scope="module")
def model():
    return dllm.load("tiny-llada")


@pytest.mark.parametrize("sampler, cache, settings", CASES, ids=[f"{s}-{c}" for s, c, _ in CASES])
def test_rows_leave_when_done_and_equal_their_runs_alone(model, sampler, cache, settings):
    settings = dict(gen_length=64, block_length=32, **settings)
    batch = dllm.generate(model, PROMPTS, sampler=sampler, cache=cache, **settings)
    alone = [dllm.generate(model, [p], sampler=sampler, cache=cache, **settings)[0] for p in PROMPTS]
    for row, single in zip(batch, alone):
        assert row.canvas == single.canvas and row.nfe == single.nfe and row.steps == single.steps
    nfes = [r.nfe for r in alone]
    assert len(set(nfes)) > 1, "the case should have rows that finish at different steps"
    # every forward computed only rows still decoding: exactly the NFE the prompts need alone
    assert batch[0].batch_row_forwards == sum(nfes) < len(PROMPTS) * max(nfes)
    assert all(r.batch_row_forwards == batch[0].batch_row_forwards for r in batch)


def test_the_stream_names_the_rows_still_in_the_batch(model):
    seen = []
    dllm.generate(
        model,
        PROMPTS[:4],
        sampler="eotp",
        gen_length=64,
        block_length=32,
        callback=lambda e: seen.append((list(e.rows), e.state.batch)),
    )
    assert seen[0][0] == [0, 1, 2, 3]
    assert all(len(rows) == batch for rows, batch in seen)
    assert len(seen[-1][0]) < 4  # some rows left before the last step


def test_classifier_free_guidance_keeps_every_row(model):
    [a, b] = dllm.generate(model, PROMPTS[:2], sampler="eotp", gen_length=32, block_length=32, cfg_scale=0.5)
    alone = dllm.generate(model, PROMPTS[:1], sampler="eotp", gen_length=32, block_length=32, cfg_scale=0.5)[
        0
    ]
    assert a.canvas == alone.canvas
    assert a.batch_row_forwards == 2 * max(a.nfe, b.nfe)
