"""The installed package works like the checkout: build a wheel, install it into a fresh virtual
environment and, from a folder outside the repository, run one generation per shipped diffusion
model and per sampler that needs shipped data (Learn2PD's filters), plus one AR verifier call.

Every other test runs against the editable install, where a relative filesystem walk into the
checkout still works; this one fails if any code finds shipped data that way, or if
``pyproject.toml``'s package data misses a shipped file.

The venv sees the *running* interpreter's packages (torch is not installed again): a ``.pth`` file
in its site-packages lists the running interpreter's site-packages folders, which works the same
when the tests run in the system interpreter, in a virtual environment or in a conda environment
(``--system-site-packages`` would show the *base* interpreter's packages, which a venv's torch is
not among). The listed folders are plain path entries, so their own ``.pth`` files, among them the
editable install's finder, are not run; the wheel goes in with ``pip install --no-deps``, and the
script checks that ``dllm`` is imported from the venv and torch from the running interpreter's
packages.
"""

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import dllm
from dllm.zoo import FILTERS, MODELS, TOKENIZER, shipped_filters, shipped_models, shipped_path

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
_SKIP_NAMES = shutil.ignore_patterns(
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


def SKIP(folder: str, names: list[str]) -> set[str]:
    """What the wheel's source copy leaves out: the names above and any virtual environment (a folder
    with pyvenv.cfg, whatever its name: CI's .venv-ci, a user's venv/)."""
    return set(_SKIP_NAMES(folder, names)) | {n for n in names if Path(folder, n, "pyvenv.cfg").is_file()}


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
import torch
running = [Path(p).resolve() for p in RUNNING_SITE_DIRS]
assert any(p in Path(torch.__file__).resolve().parents for p in running), (
    f"torch imported from {torch.__file__}, not from the running interpreter's {running}"
)
finders = [type(f).__module__ for f in sys.meta_path]
assert not any("__editable__" in name for name in finders), f"an editable finder leaked in: {finders}"
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


def running_site_dirs() -> list[str]:
    """The running interpreter's site-packages folders (its own, the base's when it is a venv with
    system site-packages, the user's when enabled), in its ``sys.path`` order."""
    paths = sysconfig.get_paths()
    found = [*site.getsitepackages(), paths["purelib"], paths["platlib"]]
    if site.ENABLE_USER_SITE:
        found.append(site.getusersitepackages())
    unique = [d for i, d in enumerate(found) if d not in found[:i] and os.path.isdir(d)]
    order = {entry: i for i, entry in enumerate(sys.path)}
    return sorted(unique, key=lambda d: order.get(d, len(order)))


def make_venv(folder: Path) -> Path:
    """A fresh venv (its own site-packages first) that also imports the running interpreter's
    packages; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    python = folder / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "_running_interpreter.pth").write_text("".join(d + "\n" for d in running_site_dirs()))
    return python


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
    python = make_venv(tmp_path / "venv")
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
        [
            str(python),
            "-c",
            SCRIPT.replace("PROMPT", repr(PROMPT)).replace("RUNNING_SITE_DIRS", repr(running_site_dirs())),
        ],
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
