"""``dllm serve``: an OpenAI-compatible HTTP server on the engine (FastAPI + uvicorn).

    dllm serve tiny-llada --sampler fast-dllm --cache dual --gen-length 64 --max-batch 16
    curl -s 127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \\
        -d '{"model": "tiny-llada", "prompt": "Q: 2+3=?", "max_tokens": 32}'

``service``: the served model, each request's settings (resolved by the Python API's code) and
the running batches; ``protocol``: OpenAI's bodies, errors, responses and chunks; ``app``: the
routes, streaming, the API key, health; ``stats``: ``/metrics``; ``ray_serve``: the same app as
a Ray Serve deployment (replicas, each its own engine).
"""

from __future__ import annotations

from .service import ServeOptions, Service

__all__ = ["ServeOptions", "Service", "create_app", "serve"]


def create_app(options: ServeOptions, *, load: bool = True):
    from .app import create_app as make

    return make(options, load=load)


def serve(
    options: ServeOptions, host: str = "127.0.0.1", port: int = 8000, shutdown_timeout: float = 30.0
) -> int:
    """Serve until SIGINT / SIGTERM: then stop accepting connections, let running requests finish
    for up to ``shutdown_timeout`` s (then cancel them: their rows leave), stop the engines, return 0.
    A model that fails to load stops the server: returns 2 (the error is logged)."""
    import contextlib
    import signal
    import threading

    import uvicorn

    app = create_app(options, load=False)
    service = app.state.service
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        timeout_graceful_shutdown=shutdown_timeout,
        log_level="info",
        access_log=False,
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):  # a shutdown signal: refuse new requests at once
            service.accepting = False
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self):
            """uvicorn's, except after the shutdown: uvicorn raises a caught SIGTERM again (exit
            -15) and restores the default handler (a second SIGTERM during the last clean-up kills
            the process); a SIGTERM'd server that shut down gracefully exits 0, and SIGINT still
            ends in KeyboardInterrupt."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = (signal.SIGINT, signal.SIGTERM)
            original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, original[signal.SIGINT])
                signal.signal(signal.SIGTERM, signal.SIG_IGN)  # shutting down already
            if signal.SIGINT in self._captured_signals:
                signal.raise_signal(signal.SIGINT)

    server = Server(config)

    def load():
        try:
            service.load()
        except Exception as exc:  # noqa: BLE001 — reported, then the server stops
            import sys

            print(f"error: cannot serve {options.model!r}: {exc}", file=sys.stderr)
            server.should_exit = True

    threading.Thread(target=load, name="dllm-load", daemon=True).start()
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        server.run()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
    return 2 if service.state == "failed" else 0
