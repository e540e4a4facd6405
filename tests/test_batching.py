"""Finished rows leave the batch: no later forward computes them, and every row equals its run alone."""

import traceback

import pytest
import torch

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


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: intra-op threads only add synchronisation on a busy CPU."""


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


PROMPTS_40 = [
    e.prompt for t in ("copy", "sort", "sudoku", "latin_square") for e in tasks.get(t).examples("eval", 10)
]
JOIN_CASES = [(s, c) for s in ("llada", "fast-dllm", "learn2pd") for c in ("none", "dual", "elastic")]


@pytest.mark.slow
@pytest.mark.parametrize("sampler, cache", JOIN_CASES, ids=[f"{s}-{c}" for s, c in JOIN_CASES])
def test_continuous_batching_equals_every_prompt_alone(model, sampler, cache):
    settings = dict(gen_length=64, block_length=32, stop_at_eos=sampler != "llada")
    seen = []
    joined = dllm.generate(
        model,
        PROMPTS_40,
        sampler=sampler,
        cache=cache,
        max_batch=8,
        callback=lambda e: seen.append(list(e.rows)),
        **settings,
    )
    alone = [dllm.generate(model, [p], sampler=sampler, cache=cache, **settings)[0] for p in PROMPTS_40]
    assert [r.canvas for r in joined] == [r.canvas for r in alone]
    assert [(r.nfe, r.steps) for r in joined] == [(r.nfe, r.steps) for r in alone]
    assert max(len(rows) for rows in seen) == 8 and sorted({r for rows in seen for r in rows}) == list(
        range(40)
    )
    assert joined[0].batch_row_forwards == sum(r.nfe for r in alone)
    if sampler != "llada":  # rows finish at different steps: prompts of later batches join running ones
        assert any(max(rows) // 8 != min(rows) // 8 for rows in seen)


@pytest.mark.parametrize(
    "settings",
    [dict(sampler="daedal"), dict(sampler="eotp", cfg_scale=0.5)],
    ids=["daedal-waves", "cfg-waves"],
)
def test_samplers_that_change_the_width_and_cfg_run_in_waves(model, settings):
    settings = dict(gen_length=32, block_length=32, **settings)
    prompts = PROMPTS_40[:5]
    waves = dllm.generate(model, prompts, max_batch=2, **settings)
    alone = [dllm.generate(model, [p], **settings)[0] for p in prompts]
    assert [r.canvas for r in waves] == [r.canvas for r in alone]


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "8"])
def test_max_batch_must_be_a_positive_integer(model, bad):
    with pytest.raises(ValueError, match="max_batch"):
        dllm.generate(model, PROMPTS[:2], gen_length=8, block_length=8, max_batch=bad)


def test_cli_max_batch_gives_the_same_answers(capsys):
    import json

    from dllm.cli import main

    args = [
        "generate",
        "tiny-llada",
        "copy: Ava Cole\\n",
        "reverse: Max Hill, Zoe Ward\\n",
        "sort: 3, 1, 2\\n",
    ]
    args += [
        "--sampler",
        "fast-dllm",
        "--gen-length",
        "32",
        "--block-length",
        "32",
        "--stop-at-eos",
        "--json",
    ]
    assert main(args) == 0
    together = json.loads(capsys.readouterr().out)
    assert main([*args, "--max-batch", "1"]) == 0
    one_at_a_time = json.loads(capsys.readouterr().out)
    assert [r["text"] for r in one_at_a_time] == [r["text"] for r in together] and len(together) == 3


@pytest.mark.parametrize("cache, bound", [("none", 1.1), ("dual", 2.1)])
def test_one_host_sync_per_step(model, cache, bound):
    """Every operation after which the host waits for the device (``count_host_syncs``: scalar
    reads, ``tolist``, ``nonzero``, boolean-mask indexing) made while a llada batch decodes, per step.

    One decision point per step (``Loop.decide``), plus one for an incremental cache's plan (the
    shape of its forward). What a call does once per row (its canvas, its result) is left out;
    the first step's read of its logit region is the 0.1 of slack over 64 steps."""
    from dllm.metrics import count_host_syncs

    prompts = [e.prompt for e in tasks.get("sudoku").examples("eval", 4)]
    steps = []

    def phase(kind):
        once = {"start", "_result", "encode_prompts"}
        return "call" if any(f.name in once for f in traceback.extract_stack()) else "step"

    with count_host_syncs(phase) as counts:
        dllm.generate(
            model,
            prompts,
            sampler="llada",
            cache=cache,
            gen_length=64,
            block_length=32,
            callback=lambda e: steps.append(1),
        )
    assert len(steps) == 64 and counts["step"] / len(steps) <= bound, counts


def test_host_sync_counter_sees_every_kind():
    from dllm.metrics import count_host_syncs

    x = torch.arange(6)
    with count_host_syncs() as counts:
        bool((x > 2).any()), x.tolist(), x.nonzero(), x[x > 2], int(x.sum())
        x[x > 4] = 0
        x.masked_fill(x > 3, 1), torch.where(x > 1, x, 0)  # no sync
    assert counts == {"scalar": 2, "tolist": 1, "nonzero": 1, "bool-index": 2}


def test_rope_tables_of_the_layout_give_the_same_logits(model):
    """The loop builds the canvas's RoPE tables once per layout and the model gathers the queried
    columns' from them: the logits are bit for bit those of tables built per forward."""
    from dllm.models.transformer import KVStore

    state = dllm.canvas.new_state(
        model, [model.encode("copy: a b c ->"), model.encode("x")], dllm.GenerationConfig()
    )
    net, query = model.net, torch.tensor([[20, 21, 22, 22], [30, 31, 32, 33]])
    kv = KVStore.empty(model.config, 2, state.width, model.dtype, model.device)
    with torch.no_grad():
        net(state.tokens, state.positions, state.valid, kv=kv)
        plain = net(state.tokens, state.positions, state.valid, query=query, kv=kv)
        tables = net(
            state.tokens,
            state.positions,
            state.valid,
            query=query,
            kv=kv,
            rope=net.rope_tables(state.positions),
        )
    assert torch.equal(plain, tables)


@pytest.mark.parametrize("cache", ["none", "dual"])
def test_row_chunks_on_a_cpu_change_no_token(model, cache, monkeypatch):
    """A batch too large for one CPU forward runs in row chunks (``CPU_CHUNK_TOKENS``); forcing
    chunks of a row or two gives the tokens and counts of the one-forward batch."""
    import sys

    loop_module = sys.modules["dllm.generate"]  # the module (dllm.generate is also the function)

    prompts = [e.prompt for e in tasks.get("copy").examples("eval", 3)] + ["reverse: a b c ->"]
    settings = dict(sampler="fast-dllm", cache=cache, gen_length=64, block_length=32)
    whole = dllm.generate(model, prompts, **settings)
    monkeypatch.setattr(loop_module, "CPU_CHUNK_TOKENS", 100)
    chunked = dllm.generate(model, prompts, **settings)
    assert [(r.canvas, r.nfe, r.steps) for r in chunked] == [(r.canvas, r.nfe, r.steps) for r in whole]
    assert chunked[0].batch_row_forwards == whole[0].batch_row_forwards


def test_kv_written_by_a_slice_equals_the_scatter(model):
    """When every row queries the same contiguous columns (a plan's ``query_span``), the model
    writes their K/V by a slice copy: the store and the logits equal the scatter's."""
    from dllm.caches.base import shared_span
    from dllm.models.transformer import KVStore

    state = dllm.canvas.new_state(model, [model.encode("copy: a b c ->")] * 2, dllm.GenerationConfig())
    need = torch.zeros_like(state.valid)
    need[:, 20:36] = True
    assert [int(t) for t in shared_span(need)] == [20, 16]
    need[1, 36] = True
    assert [int(t) for t in shared_span(need)] == [0, 0]  # rows differ: no shared span
    query = torch.arange(20, 36).expand(2, -1)
    stores, logits = [], []
    for span in (None, (20, 36)):
        kv = KVStore.empty(model.config, 2, state.width, model.dtype, model.device)
        with torch.no_grad():
            model.net(state.tokens, state.positions, state.valid, kv=kv)
            logits.append(
                model.net(state.tokens, state.positions, state.valid, query=query, kv=kv, query_span=span)
            )
        stores.append(kv)
    assert torch.equal(*logits)
    assert all(torch.equal(a, b) for a, b in zip(stores[0].k + stores[0].v, stores[1].k + stores[1].v))
