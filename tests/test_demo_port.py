"""``dllm demo --port P`` with P taken: one line naming the port, exit status 2, no traceback (issue 26)."""

import socket
import subprocess
import sys

import pytest

from dllm import cli

pytest.importorskip("gradio")


def _demo(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dllm.cli", "demo", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("listen", [True, False], ids=["listening", "bound"])
def test_a_port_in_use_is_named_without_a_traceback(listen):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        if listen:
            taken.listen()
        port = taken.getsockname()[1]
        done = _demo("--port", str(port))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Cannot find empty port" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"error: --port {port}: port {port} is already in use on 127.0.0.1 (another program serves there);"
        " stop it or choose another --port"
    ]


def test_a_port_out_of_range_is_named():
    done = _demo("--port", "70000")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == "error: --port 70000 is not a port number (1 to 65535)"


def test_a_port_taken_while_the_models_load_is_named(monkeypatch, capsys):
    """The check runs before the models load; a port taken after it still ends in one line, not
    Gradio's traceback."""
    import dllm.demo

    def launch(**kwargs):
        raise OSError(
            f"Cannot find empty port in range: {kwargs['port']}-{kwargs['port']}. You can specify ..."
        )

    monkeypatch.setattr(dllm.demo, "launch", launch)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    assert cli.main(["demo", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"error: --port {port}: the demo cannot serve on 127.0.0.1:{port} (Cannot find empty"
    )
    assert err.rstrip().endswith("choose another --port")
