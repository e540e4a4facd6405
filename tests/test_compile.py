"""``compile=True`` (torch.compile of the model step) decodes the same tokens as eager mode."""

import pytest
import torch

import dllm
from dllm.eval import tasks

PROMPTS = [e.prompt for t in ("copy", "reverse", "sort") for e in tasks.get(t).examples("eval", 3)]


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny tensors: intra-op threads only add synchronisation on a busy CPU."""


@pytest.mark.slow
def test_compiled_step_equals_eager_and_does_not_recompile_per_shape():
    from torch._dynamo.utils import counters

    model = dllm.load("tiny-llada")
    cases = [("fast-dllm", "dual", 64, 9), ("llada", "none", 32, 9), ("fast-dllm", "prefix", 96, 9)]
    for sampler, cache, gen, batch in cases:
        settings = dict(sampler=sampler, cache=cache, gen_length=gen, block_length=32)
        eager = dllm.generate(model, PROMPTS[:batch], **settings)
        fast = dllm.generate(model, PROMPTS[:batch], compile=True, **settings)
        assert [r.canvas for r in fast] == [r.canvas for r in eager]
        assert [r.nfe for r in fast] == [r.nfe for r in eager]
    # the same policy at other canvas widths, query sets and batch sizes reuses the compiled graphs
    graphs = counters["stats"]["unique_graphs"]
    for gen, batch in [(96, 9), (128, 5), (64, 3)]:
        dllm.generate(
            model,
            PROMPTS[:batch],
            sampler="fast-dllm",
            cache="dual",
            gen_length=gen,
            block_length=32,
            compile=True,
        )
    assert counters["stats"]["unique_graphs"] <= graphs + 2  # slack: a size-1 specialisation or two


def test_compile_must_be_a_flag():
    model = dllm.load("tiny-llada")
    with pytest.raises(TypeError, match="compile"):
        dllm.generate(model, PROMPTS[:1], gen_length=8, block_length=8, compile="yes")
    assert torch.is_grad_enabled()
