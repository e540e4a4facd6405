"""The README's test command inside a fresh virtual environment (issue 26).

``python -m venv``, then the README's install (``pip install torch==2.13.0`` and the project, editable,
with its dev extra), then ``tests/test_wheel_install.py`` run by that venv's python: the wheel test must
find the running venv's packages (torch among them), which ``--system-site-packages`` did not give it.
The eval and demo extras are left out (the wheel test needs neither); CI runs the whole command in a
fresh venv (``.ci/run``). A few minutes: torch is a local wheel here, the rest comes from pip's index.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_test_passes_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")  # activated

    def run(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
        return subprocess.run(
            [python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )

    for install in (["torch==2.13.0"], ["-e", ".[dev]"]):
        done = run("-m", "pip", "install", "--quiet", *install)
        assert done.returncode == 0, f"pip install {' '.join(install)}: {done.stderr[-3000:]}"
    where = run("-c", "import sys, torch, dllm; print(sys.prefix); print(torch.__file__)").stdout.split()
    assert where[0] == str(venv) and where[1].startswith(str(venv)), where  # the venv's own torch
    done = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_wheel_install.py")
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.fullmatch(r"1 passed in [\d.]+s( \(\d+:\d+:\d+\))?", summary), summary
