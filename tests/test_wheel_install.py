"""The installed package works like the checkout: build a wheel, install it into a fresh virtual
environment and, from a folder outside the repository, run one generation per shipped diffusion
model and per sampler that needs shipped data (Learn2PD's filters), plus one AR verifier call.

Every other test runs against the editable install, where a relative filesystem walk into the
checkout still works; this one fails if any code finds shipped data that way, or if
``pyproject.toml``'s package data misses a shipped file. The venv sees the system site-packages
(torch is not installed again) and gets the wheel with ``pip install --no-deps``; the script checks
that ``dllm`` is imported from the venv, not through the editable install's mapping.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dllm
from dllm.zoo import FILTERS, MODELS, TOKENIZER, shipped_filters, shipped_models, shipped_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".pytest_cache",
    ".hypothesis",
    ".venv",
    "tests",
    "benchmarks",
    "docs",
    "runs",
    "out",
    "results",
)
PROMPT = "reverse: Emma, Liam, Noah\n"

SCRIPT = r"""
import json, sys
from pathlib import Path
import dllm, dllm.samplers, dllm.caches, dllm.zoo

venv = Path(sys.prefix).resolve()
for module in (dllm, dllm.samplers, dllm.caches, dllm.zoo):
    assert venv in Path(module.__file__).resolve().parents, (
        f"{module.__name__} imported from {module.__file__}"
    )
out = {"models": sorted(dllm.zoo.shipped_models()), "filters": sorted(dllm.zoo.shipped_filters()), "runs": {}}
for name in out["models"]:
    model = dllm.load(name)
    if not isinstance(model, dllm.DiffusionModel):  # an AR model: the verifier path
        [result] = dllm.speculate(model, [PROMPT], drafter=None, max_new_tokens=4)
        out["runs"][f"{name}/ar"] = result.ids
        continue
    samplers = ["fast-dllm"] + (["learn2pd"] if name in out["filters"] else [])
    for sampler in samplers:
        [result] = dllm.generate(model, PROMPT, sampler=sampler, gen_length=32, block_length=32)
        out["runs"][f"{name}/{sampler}"] = result.ids
print(json.dumps(out))
"""


def _expected(models: dict, filters: dict) -> dict:
    runs = {}
    for name in sorted(models):
        model = dllm.load(name)
        if not isinstance(model, dllm.DiffusionModel):
            [result] = dllm.speculate(model, [PROMPT], drafter=None, max_new_tokens=4)
            runs[f"{name}/ar"] = result.ids
            continue
        for sampler in ["fast-dllm"] + (["learn2pd"] if name in filters else []):
            [result] = dllm.generate(model, PROMPT, sampler=sampler, gen_length=32, block_length=32)
            runs[f"{name}/{sampler}"] = result.ids
    return runs


def _build_wheel(tmp_path: Path) -> Path:
    source = (
        tmp_path / "source"
    )  # a copy: an in-tree build would leave build/ (and stale files) in the checkout
    shutil.copytree(ROOT, source, ignore=SKIP)
    wheels = tmp_path / "wheels"
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", str(source), "-w", str(wheels)]
    spec = importlib.util.find_spec("setuptools")
    if spec is not None:
        import setuptools

        if tuple(int(p) for p in setuptools.__version__.split(".")[:2]) >= (70, 1):  # has bdist_wheel itself
            command.insert(4, "--no-build-isolation")
    subprocess.run(command, check=True, capture_output=True, text=True)
    [wheel] = wheels.glob("dllm-*.whl")
    return wheel


def _shipped_files() -> set[str]:
    files = set()
    for part in (MODELS, FILTERS, TOKENIZER):
        files |= {
            f"dllm/zoo/{p.relative_to(shipped_path()).as_posix()}"
            for p in shipped_path(part).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
    return files


def test_wheel_install_generates_like_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as archive:
        missing = sorted(_shipped_files() - set(archive.namelist()))
    assert not missing, f"pyproject.toml's package data leaves shipped files out of the wheel: {missing[:8]}"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        text=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(python), "-c", SCRIPT.replace("PROMPT", repr(PROMPT))],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    installed = json.loads(done.stdout.strip().splitlines()[-1])
    models, filters = shipped_models(), shipped_filters()
    assert installed["models"] == sorted(models) and installed["filters"] == sorted(filters)
    assert {"tiny-llada/learn2pd", "tiny-dream/learn2pd"} <= set(installed["runs"])
    assert installed["runs"] == _expected(models, filters)
