"""A ``dllm serve`` process for tests and benchmarks: bound to 127.0.0.1 on a free port, waited for
until ``/health`` says ready (bounded in time), stopped by its process id (SIGTERM, then SIGKILL)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Server:
    process: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, timeout: float = 10.0, headers: dict | None = None) -> tuple[int, bytes]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM by pid, wait; SIGKILL if it does not exit in ``timeout`` s. Its exit code."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(10)
        return self.process.returncode


def start(*args: str, ready_timeout: float = 180.0, env: dict | None = None) -> Server:
    """``dllm serve ARGS --host 127.0.0.1 --port P``, returned once ``/health`` is 200."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="dllm-serve-", suffix=".log")[1])
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "dllm", "serve", *args, "--host", HOST, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
    server = Server(process, port, log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dllm serve exited with {process.returncode}:\n{server.output()}")
        try:
            status, _ = server.get("/health", timeout=2)
        except OSError:
            status = None
        if status == 200:
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"dllm serve was not ready in {ready_timeout} s:\n{server.output()}")


@contextlib.contextmanager
def running(*args: str, **options):
    server = start(*args, **options)
    try:
        yield server
    finally:
        server.stop()
