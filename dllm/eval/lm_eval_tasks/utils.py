"""Helpers of the offline lm-eval task configs in this folder.

Importing this module also registers ``--model dllm`` with lm-eval, so that
``lm_eval --model dllm --tasks <this folder>/dllm_gsm8k.yaml ...`` works with the stock CLI
(lm-eval resolves a task file's ``!function`` entries before it looks the model up).
"""

from dllm.eval import (
    benchmarks,
    lm_eval_adapter,  # noqa: F401  (registers the "dllm" model)
)


def gsm8k_dataset(**kwargs):
    return benchmarks.dataset_dict("gsm8k", ("train", "test"), **kwargs)


def humaneval_dataset(**kwargs):
    return benchmarks.dataset_dict("humaneval", ("test",), **kwargs)


def build_predictions(resps, docs):
    """Each completion appended to its prompt: a full function definition to test."""
    return [[doc["prompt"] + r for r in resp] for resp, doc in zip(resps, docs)]


def pass_at_1(references, predictions, **kwargs):
    """Fraction of problems whose first completion passes its tests (run in a subprocess)."""
    passed = [
        benchmarks.run_program(preds[0] + "\n\n" + ref + "\n") for ref, preds in zip(references, predictions)
    ]
    return sum(passed) / len(passed)
