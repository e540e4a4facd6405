"""dllm.serving.Batcher: prompts that arrive while others decode share one batch, each with the
tokens of its run alone; cancelled requests leave; bad prompts are refused at submit."""

import concurrent.futures
import threading

import pytest
import torch

import dllm
from dllm.eval import tasks
from dllm.serving import Batcher

GEN = {"gen_length": 64, "block_length": 32}


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return dllm.load("tiny-llada")


@pytest.fixture(scope="module")
def texts():
    copy = [e.prompt for e in tasks.get("copy").examples("eval", 5)]
    return copy + [e.prompt for e in tasks.get("sudoku").examples("eval", 5)]


def alone(model, text, sampler, cache, **extra):
    [result] = dllm.generate(model, [text], sampler=sampler, cache=cache, **GEN, **extra)
    return result


class Gate:
    """Holds the batcher's worker inside its first step until every prompt is queued, so the
    first prompt provably decodes before the others arrive (they join it)."""

    def __init__(self):
        self.started, self.open, self.rows = threading.Event(), threading.Event(), []

    def __call__(self, event, row):
        self.rows.append(len(event.rows))
        self.started.set()
        self.open.wait(30)


@pytest.mark.parametrize(
    "sampler, cache, extra",
    [
        ("fast-dllm", "dual", {}),
        ("llada", "none", {"temperature": 0.7}),
        ("learn2pd", "elastic", {}),
        ("daedal", "none", {}),  # changes the canvas width: batches of the waiting prompts
        ("llada", "prefix", {"cfg_scale": 1.0}),  # CFG: the same
    ],
)
def test_every_request_equals_its_run_alone(model, texts, sampler, cache, extra):
    gate = Gate()
    batcher = Batcher(model, sampler, cache, max_batch=4, **GEN, **extra)
    try:
        requests = [batcher.submit(texts[0], on_step=gate)]
        assert gate.started.wait(30)
        requests += [batcher.submit(text, on_step=gate) for text in texts[1:]]
        gate.open.set()
        results = [request.result(120) for request in requests]
    finally:
        batcher.close()
    for text, result in zip(texts, results):
        expected = alone(model, text, sampler, cache, **extra)
        assert (result.canvas, result.nfe, result.steps) == (expected.canvas, expected.nfe, expected.steps)
    assert max(gate.rows) == 4  # the batch was full
    assert gate.rows[0] == 1  # the first prompt started alone: the others joined


def test_a_wider_prompt_waits_for_the_next_batch(model, texts):
    short, wide = "copy: a b ->", texts[5]
    gate = Gate()
    batcher = Batcher(model, "fast-dllm", "dual", max_batch=4, **GEN)
    try:
        first = batcher.submit(short, on_step=gate)
        assert gate.started.wait(30)
        second = batcher.submit(wide, on_step=gate)
        gate.open.set()
        results = first.result(60), second.result(60)
    finally:
        batcher.close()
    assert [r.canvas for r in results] == [alone(model, t, "fast-dllm", "dual").canvas for t in (short, wide)]
    assert max(gate.rows) == 1  # the wide prompt could not join the narrow batch


def test_cancel_leaves_the_others_unchanged(model, texts):
    batcher = Batcher(model, "llada", "none", max_batch=4, **GEN)
    steps = []

    def cancel_after_two(event, row):
        steps.append(int(event.state.steps[row]))
        if len(steps) == 2:
            doomed.cancel()

    try:
        doomed = batcher.submit(texts[0], on_step=cancel_after_two)
        kept = batcher.submit(texts[1])
        with pytest.raises(concurrent.futures.CancelledError):
            doomed.result(60)
        assert kept.result(60).canvas == alone(model, texts[1], "llada", "none").canvas
    finally:
        batcher.close()
    assert len(steps) == 2  # no step of the cancelled row after it was cancelled


def test_a_failing_listener_ends_its_own_request_only(model, texts):
    def boom(event, row):
        raise RuntimeError("listener broke")

    batcher = Batcher(model, "fast-dllm", "none", max_batch=4, **GEN)
    try:
        broken, fine = batcher.submit(texts[0], on_step=boom), batcher.submit(texts[1])
        with pytest.raises(RuntimeError, match="listener broke"):
            broken.result(60)
        assert fine.result(60).canvas == alone(model, texts[1], "fast-dllm", "none").canvas
    finally:
        batcher.close()


def test_bad_input_is_refused_at_submit(model):
    with pytest.raises(ValueError, match="max_batch"):
        Batcher(model, max_batch=0)
    with pytest.raises(ValueError, match="unknown sampler"):
        Batcher(model, sampler="nope")
    batcher = Batcher(model, **GEN)
    with pytest.raises(ValueError, match="empty prompt"):
        batcher.submit("   ")
    with pytest.raises(ValueError, match="exceeds the context"):
        batcher.submit([5] * 1200)
    with pytest.raises(TypeError, match="prompts must be text, token ids or a list of them, got int"):
        batcher.submit(5)  # dllm.generate(model, 5) refuses it too
    with pytest.raises(TypeError, match="one prompt expected"):
        batcher.submit(["copy: a ->", "copy: b ->"])
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit("copy: a ->")
