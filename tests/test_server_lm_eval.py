"""lm-eval's own ``local-completions`` model (``LocalCompletionsAPI``) against a ``dllm serve`` process gives
the scores and the per-document generations of the in-process adapter (``--model dllm``) at the same
settings: sampler, cache, canvas length (lm-eval's ``max_gen_toks`` -> ``max_tokens`` = gen_length),
block length (sent per request: lm-eval puts the task's leftover ``gen_kwargs`` into the body), seed.

What lm-eval sends (``_create_payload``; ``tokenized_requests=False``, ``tokenizer_backend=None``: text
prompts, no EOS string appended to the stops), one body per ``batch_size`` documents::

    {"prompt": [text, ...] (a lone text at batch_size 1), "model": "tiny-llada", "max_tokens": 32,
     "temperature": 0.0, "stop": <the task's until>, "seed": 1234, "block_length": 16}

and it reads ``choices[i]["text"]`` by ``index`` (``parse_generations``), cut at the stops by the server.

Tasks: the shipped ``dllm_gsm8k`` on its 6-row offline fixture (tiny-llada scores 0 there), and a task
that includes that YAML with ``doc_to_text: "{{question}}\\n"`` over 14 ``cumsum`` problems in GSM8K's
schema, the answer the total (tiny-llada's own prompt format: it answers with numbers, 2 of 14 totals right).
``dllm_humaneval`` sends 5 stop strings (more than OpenAI's limit of 4; the server takes up to 16).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")
for _module in ("aiohttp", "tenacity", "requests"):  # lm-eval's API models need lm-eval[api]
    pytest.importorskip(_module, reason=f"lm-eval's local-completions model needs {_module} (lm-eval[api])")
for _module in ("fastapi", "uvicorn", "prometheus_client"):
    pytest.importorskip(_module, reason="the serve extra is not installed")

import _server  # noqa: E402
import torch  # noqa: E402
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from dllm import tasks  # noqa: E402
from dllm.eval.lm_eval_adapter import TASKS_DIR, DLLMEvalLM  # noqa: E402

GEN, BLOCK, SEED, BATCH = 32, 16, 1234, 4
SETTINGS = ("tiny-llada", "--sampler", "fast-dllm", "--cache", "dual", "--gen-length", str(GEN))
SERVER_BLOCK = 32  # the server's --block-length; BLOCK reaches it per request, through lm-eval's gen_kwargs
CUMSUM_TASK = "dllm_gsm8k_cumsum"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def server():
    flags = ("--block-length", str(SERVER_BLOCK), "--max-batch", str(BATCH), "--threads", "1")
    with _server.running(*SETTINGS, *flags) as running:
        yield running


@pytest.fixture(scope="module")
def task_manager(tmp_path_factory):
    """The shipped task folder, plus a folder with a cumsum variant of the shipped dllm_gsm8k."""
    folder = tmp_path_factory.mktemp("lm_eval_tasks")
    rows = [
        {"question": e.prompt.rstrip("\n"), "answer": f"#### {e.target.split(', ')[-1]}"}  # the total
        for e in tasks.get("cumsum").examples("eval", 14)
    ]
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = {split: str(folder / f"{split}.jsonl") for split in ("train", "test")}
    (folder / f"{CUMSUM_TASK}.yaml").write_text(
        f"include: {Path(TASKS_DIR) / 'dllm_gsm8k.yaml'}\n"
        f"task: {CUMSUM_TASK}\n"
        "tag: []\n"
        'doc_to_text: "{{question}}\\n"\n'
        f"dataset_kwargs:\n  data_files: {json.dumps(files)}\n"
    )
    only_ours = (  # lm-eval's own tasks are not indexed, where this lm-eval can leave them out
        {"include_defaults": False} if "include_defaults" in inspect.signature(TaskManager).parameters else {}
    )
    return TaskManager(include_path=[str(TASKS_DIR), str(folder)], **only_ours)


def _evaluate(model, task_manager, names, **kwargs) -> dict:
    threads = torch.get_num_threads()
    try:
        return simple_evaluate(
            model=model,
            tasks=names,
            task_manager=task_manager,
            batch_size=BATCH,
            log_samples=True,
            **kwargs,
        )
    finally:
        torch.set_num_threads(threads)


def _both(server, task_manager, names, **kwargs) -> tuple[dict, dict]:
    """(lm-eval's local-completions against the server, the in-process adapter) on the same tasks."""
    remote = _evaluate(
        "local-completions",
        task_manager,
        names,
        model_args=(
            f"model=tiny-llada,base_url={server.url}/v1/completions,tokenized_requests=False,"
            f"tokenizer_backend=None,max_gen_toks={GEN},seed={SEED},max_retries=1"
        ),
        gen_kwargs={"block_length": BLOCK},  # rides in each request body (dllm's own field)
        **kwargs,
    )
    return remote, _in_process(task_manager, names, BLOCK, **kwargs)


def _in_process(task_manager, names, block_length, **kwargs) -> dict:
    lm = DLLMEvalLM(
        model="tiny-llada",
        sampler="fast-dllm",
        cache="dual",
        gen_length=GEN,
        block_length=block_length,
        seed=SEED,
        batch_size=BATCH,
        threads=1,
    )
    return _evaluate(lm, task_manager, names, **kwargs)


def _scores(results: dict, name: str) -> dict:
    return {k: v for k, v in results["results"][name].items() if "," in k}


def _generations(results: dict, name: str) -> dict:
    """(doc_id, filter) -> (raw generation, filtered answer), from lm-eval's log_samples."""
    return {
        (s["doc_id"], s.get("filter")): (s["resps"], s["filtered_resps"]) for s in results["samples"][name]
    }


@pytest.mark.slow
def test_local_completions_against_the_server_scores_like_the_in_process_adapter(server, task_manager):
    remote, local = _both(server, task_manager, ["dllm_gsm8k", CUMSUM_TASK])
    for name, docs in (("dllm_gsm8k", 6), (CUMSUM_TASK, 14)):
        assert remote["results"][name]["sample_len"] == local["results"][name]["sample_len"] == docs
        assert _generations(remote, name) == _generations(local, name), name
        assert _scores(remote, name) == _scores(local, name), name
    # not a comparison of empty texts: tiny-llada answers every cumsum prompt with numbers
    answers = [resps[0][0] for resps, _ in _generations(remote, CUMSUM_TASK).values()]
    assert all(any(c.isdigit() for c in a) for a in answers), answers
    # the request's block_length reached the server: its own --block-length gives other texts
    server_blocks = _in_process(task_manager, [CUMSUM_TASK], SERVER_BLOCK)
    assert _generations(server_blocks, CUMSUM_TASK) != _generations(local, CUMSUM_TASK)


@pytest.mark.slow
def test_humaneval_through_the_server(server, task_manager):
    remote, local = _both(server, task_manager, ["dllm_humaneval"], confirm_run_unsafe_code=True)
    assert _generations(remote, "dllm_humaneval") == _generations(local, "dllm_humaneval")
    assert _scores(remote, "dllm_humaneval") == _scores(local, "dllm_humaneval")
