"""Triton attention backend (``dllm/models/triton_attention.py``) vs the SDPA reference.

The kernel runs on CPU only under the Triton interpreter, and ``TRITON_INTERPRET=1`` has to
be in the environment before triton is imported, so the numerical checks live in
``tests/_triton_attention_checks.py`` and run in one child process (one interpreter start-up
for all cases, a few seconds); each case is reported as its own test here. The in-process
tests check the error paths (CPU without the interpreter, triton missing).
"""

import ast
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKS = os.path.join(ROOT, "tests", "_triton_attention_checks.py")
MODULE = os.path.join(ROOT, "dllm", "models", "triton_attention.py")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(
    not HAS_TRITON, reason="triton is not installed (pip install 'dllm[triton]')"
)
pytestmark = pytest.mark.triton


def _case_names():
    """``case_*`` functions of the checks script, read without importing it (no triton here)."""
    with open(CHECKS) as f:
        tree = ast.parse(f.read())
    fns = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
    return sorted(name[len("case_") :] for name in fns if name.startswith("case_"))


CASES = _case_names()


@pytest.fixture(scope="module")
def interpreter_results(request):
    # run only the cases this session selected (e.g. with -k), all of them in one child process
    selected = (
        sorted(
            {
                item.callspec.params["case"]
                for item in request.session.items
                if item.module is request.module
                and "case" in getattr(getattr(item, "callspec", None), "params", {})
            }
        )
        or CASES
    )
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    env.pop("DLLM_ATTENTION", None)
    proc = subprocess.run(
        [sys.executable, CHECKS, *selected], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            results[r["case"]] = r
    return results, proc


@needs_triton
@pytest.mark.parametrize("case", CASES)
def test_triton_matches_sdpa(case, interpreter_results, record_property):
    results, proc = interpreter_results
    if case not in results:
        pytest.fail(
            f"case {case!r} produced no result (exit {proc.returncode})\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-4000:]}"
        )
    r = results[case]
    record_property("max_abs_err", r["max_abs_err"])
    record_property("seconds", r["seconds"])
    assert r["ok"], f"{case} failed:\n{r['error']}\nerrors so far: {r['max_abs_err']}"


def test_case_list_is_not_empty():
    assert {"mha", "gqa_4_2", "gqa_6_1", "block_causal_4", "block_causal_8", "all_keys_invalid"} <= set(CASES)


@needs_triton
def test_cpu_without_interpreter_raises(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("DLLM_ATTENTION", raising=False)
    from dllm.models.attention import attend
    from dllm.models.triton_attention import triton_attend

    q, k, v = torch.randn(1, 2, 3, 8), torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        triton_attend(q, k, v)
    with pytest.raises(ValueError, match="interpreter"):
        attend(q, k, v, backend="triton")


@needs_triton
def test_bad_arguments(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from dllm.models.triton_attention import triton_attend

    q, k = torch.randn(1, 3, 4, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="multiple"):
        triton_attend(q, k, k)
    with pytest.raises(ValueError, match="dtype"):
        triton_attend(q.double(), k[:, :1].double(), k[:, :1].double())
    with pytest.raises(ValueError, match="q_pos and k_pos"):
        triton_attend(q, k[:, :1], k[:, :1], block_size=4)


def test_missing_triton_gives_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.setitem(sys.modules, "triton.language", None)
    spec = importlib.util.spec_from_file_location("_triton_attention_without_triton", MODULE)
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(ImportError, match=r"dllm\[triton\]"):
        spec.loader.exec_module(module)


def test_training_never_runs_the_forward_only_kernel(monkeypatch):
    """The kernel has no backward: with gradients needed, auto-selection picks SDPA even on CUDA, and
    forcing Triton is a clear error (a silent forward-only kernel would train without attention grads)."""
    monkeypatch.delenv("DLLM_ATTENTION", raising=False)
    from dllm.models.attention import _resolve_backend, attend

    cuda = torch.device("cuda")
    assert _resolve_backend(None, cuda, needs_grad=True) == "sdpa"
    q = torch.randn(1, 2, 3, 8, requires_grad=True)
    k, v = torch.randn(1, 1, 5, 8), torch.randn(1, 1, 5, 8)
    with pytest.raises(ValueError, match="forward-only"):
        attend(q, k, v, backend="triton")
    monkeypatch.setenv("DLLM_ATTENTION", "triton")
    with pytest.raises(ValueError, match="forward-only"):
        attend(q, k, v)
    attend(q, k, v, backend="sdpa").sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert _resolve_backend("triton", cuda, needs_grad=False) == "triton"  # decoding (no_grad) keeps it
