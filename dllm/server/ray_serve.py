"""``dllm serve MODEL --ray-replicas N``: the same app (``create_app``) as a Ray Serve deployment.

Each replica is a Ray actor that builds its own app and so loads its own model and runs its own
engine (continuous batching within the replica); Ray's HTTP proxy spreads the requests over the
replicas. The replica loads the model before it reports itself started, so Ray only routes to
replicas whose model is ready (``serve.run`` returns once all are). Every response carries
``X-DLLM-Replica`` (Ray's replica id) so a client can see which replica answered.

Two ways in: ``run`` (what ``dllm serve --ray-replicas`` calls: a Ray of its own, or the cluster at
``RAY_ADDRESS``; blocks until SIGINT / SIGTERM) and ``app_builder`` (a ``serve run`` target:
``serve run dllm.server.ray_serve:app_builder model=tiny-llada replicas=2``). Ray is imported only
when one of them is called; see docs/serve_ray.md.
"""

from __future__ import annotations

import dataclasses
import json

from .service import ServeOptions

APP_NAME = "dllm"
HEADER = "x-dllm-replica"
CONSTRUCTOR_RETRIES = 3  # a replica whose model fails to load is retried this often, then the deploy fails
MISSING_RAY = 'dllm serve --ray-replicas needs Ray Serve: pip install -e ".[ray]"'


def _serve():
    """``ray.serve``, or the ValueError that says how to install it."""
    try:
        from ray import serve
    except ImportError:
        raise ValueError(MISSING_RAY) from None
    return serve


class ReplicaHeader:
    """ASGI wrapper: ``X-DLLM-Replica: ID`` on every HTTP response of ``app`` (its error pages too,
    which a middleware inside FastAPI would miss); lifespan events pass through unchanged."""

    def __init__(self, app, replica: str):
        self.app, self.replica = app, replica.encode("latin-1")

    @property
    def state(self):  # the FastAPI app's state (``state.service``)
        return self.app.state

    def add_exception_handler(self, *args, **kwargs):  # Ray registers its back-pressure errors here
        return self.app.add_exception_handler(*args, **kwargs)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def sending(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER.encode()]
                message = {**message, "headers": [*headers, (HEADER.encode(), self.replica)]}
            await send(message)

        await self.app(scope, receive, sending)


def _replica_id() -> str:
    import os

    from ray import serve

    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # noqa: BLE001 — not in a replica (should not happen): the process id still tells
        return f"pid-{os.getpid()}"


def deployment(
    options: ServeOptions,
    replicas: int = 1,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    max_ongoing_requests: int | None = None,
):
    """The bound Ray Serve application: ``replicas`` copies of ``create_app(options)``.

    ``num_cpus`` / ``num_gpus``: Ray resources each replica reserves (``ray_actor_options``; Ray's
    default is one CPU, no GPU). A replica given a GPU sees only that one (Ray sets
    ``CUDA_VISIBLE_DEVICES``), so ``device="cuda"`` is its own GPU. ``max_ongoing_requests``: requests
    Ray hands one replica at once (default ``max_batch + max_queue``: the replica's own queue, which
    answers 429 beyond it, does the admission; Ray's default of 5 would starve a batch of 8)."""
    serve = _serve()
    _check(replicas, num_cpus, num_gpus)
    options.check()  # the flags' errors here, not in a replica that Ray restarts

    actor = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus)) if v is not None}
    return (
        _replica_class(serve)
        .options(
            num_replicas=replicas,
            ray_actor_options=actor,
            max_ongoing_requests=max_ongoing_requests or options.max_batch + options.max_queue,
            max_constructor_retry_count=CONSTRUCTOR_RETRIES,
        )
        .bind(options)
    )


def _check(replicas, num_cpus, num_gpus) -> None:
    """The deployment's numbers, checked before anything starts (a ValueError naming the setting)."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ValueError(f"--ray-replicas={replicas!r} must be a positive integer")
    for flag, value in (("num_cpus", num_cpus), ("num_gpus", num_gpus)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if value is not None and (not number or value < 0):
            raise ValueError(f"{flag}={value!r} must be a number of at least 0")


def _replica_class(serve):
    """The deployment class (built on first use, so importing this module needs no Ray)."""

    try:
        ingress = serve.ingress()  # late-bound: the class builds its app in the replica
    except TypeError:  # a Ray Serve before ``__serve_build_asgi_app__``
        import ray

        raise ValueError(
            f"dllm serve --ray-replicas needs a Ray Serve whose serve.ingress() takes no app (tested with"
            f' 2.60); this is Ray {ray.__version__}: pip install -U "ray[serve]"'
        ) from None

    @ingress
    class DllmReplica:
        """One replica: its own ``create_app(options)``, model loaded before the replica is up."""

        def __init__(self, options: ServeOptions):
            self.options = options

        async def __serve_build_asgi_app__(self):
            import asyncio

            from . import create_app

            app = create_app(self.options, load=False)  # the lifespan still closes the engines
            await asyncio.to_thread(app.state.service.load)  # fails the replica if it cannot load
            return ReplicaHeader(app, _replica_id())

    return serve.deployment(DllmReplica, name="dllm")


def start(options: ServeOptions, replicas: int, host: str = "127.0.0.1", port: int = 8000, **resources):
    """Deploy on the Ray this process is connected to, HTTP on ``host:port``; returns once every
    replica has loaded its model. ``resources``: ``deployment``'s keywords. (Serve's HTTP address is
    fixed when Serve first starts on a cluster: one already running keeps its own.)"""
    serve = _serve()
    app = deployment(options, replicas, **resources)
    serve.start(http_options={"host": host, "port": port})
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)


def run(
    options: ServeOptions,
    replicas: int,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
) -> int:
    """Serve until SIGINT / SIGTERM, then take the deployment down; returns 0. A model that a replica
    cannot load (Ray retries it ``CONSTRUCTOR_RETRIES`` times) fails the deployment: returns 2.

    Without ``RAY_ADDRESS`` this starts a Ray of its own on this machine (and shuts it down at the
    end); with ``RAY_ADDRESS`` (``auto``: the cluster ``ray start`` made on this machine, or a head's
    ``IP:6379``) it joins that cluster and at the end deletes only its application, leaving Ray and
    Serve running there."""
    import concurrent.futures
    import os
    import signal
    import sys
    import threading

    _serve()
    import ray
    from ray import serve

    _check(replicas, num_cpus, num_gpus)  # before a Ray starts
    options.check()
    address = os.environ.get("RAY_ADDRESS") or None
    own = address is None and not ray.is_initialized()  # a Ray of our own: shut down at the end
    if own:
        ray.init(address="local", include_dashboard=False)
    elif not ray.is_initialized():
        ray.init(address=address)
    stop, deployed = threading.Event(), concurrent.futures.Future()
    # our handlers from the start: a signal while the replicas load (Ray's own handler would abort the
    # process then) stops the deployment too
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:

        def deploy():  # serve.run waits for every replica: in a thread, so a signal is seen meanwhile
            try:
                start(options, replicas, host, port, num_cpus=num_cpus, num_gpus=num_gpus)
                deployed.set_result(None)
            except BaseException as exc:  # noqa: BLE001 — raised in the main thread
                deployed.set_exception(exc)

        threading.Thread(target=deploy, name="dllm-ray-deploy", daemon=True).start()
        while not stop.is_set() and not deployed.done():
            stop.wait(0.2)
        if deployed.done() and deployed.exception() is not None:
            exc = deployed.exception()
            if not isinstance(exc, RuntimeError):
                raise exc
            # Ray's "Deploying application dllm failed": a replica could not load the model
            print(
                f"error: cannot serve {options.model!r} with Ray Serve: {exc} (the replicas' errors are"
                " in Ray's log above)",
                file=sys.stderr,
            )
            return 2
        if not stop.is_set():
            print(
                f"serving {options.served_name!r} on http://{host}:{port} with {replicas} Ray Serve"
                " replica(s)",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(0.5):
                pass
        print("stopping: taking the replicas down", file=sys.stderr, flush=True)
    finally:
        try:
            if own:
                serve.shutdown()
            else:
                serve.delete(APP_NAME)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if own:
                ray.shutdown()
    return 0


# ---- serve run dllm.server.ray_serve:app_builder KEY=VALUE ... ------------------------------------

DEPLOYMENT_ARGS = {"replicas": int, "num_cpus": float, "num_gpus": float, "max_ongoing_requests": int}


def app_builder(args: dict):
    """``serve run`` target: ``serve run dllm.server.ray_serve:app_builder model=tiny-llada
    sampler=fast-dllm cache=dual gen_length=32 replicas=2 num_cpus=1``.

    Keys (``serve run`` passes every value as text): a ``ServeOptions`` field (``model`` is required;
    a dict field such as ``sampler_args`` / ``generation`` as JSON); a ``GenerationConfig`` field
    (``gen_length=32``: added to ``generation``); ``replicas``, ``num_cpus``, ``num_gpus``,
    ``max_ongoing_requests`` (the deployment's). HTTP host / port are Serve's (``serve run``
    uses 127.0.0.1:8000; ``serve start --http-host 0.0.0.0`` or a config file changes them)."""
    from dllm.config import GenerationConfig

    _serve()
    fields = {f.name: str(f.type) for f in dataclasses.fields(ServeOptions)}
    generation_fields = {f.name for f in dataclasses.fields(GenerationConfig)}
    values, generation, extra = {}, {}, {}
    for key, text in dict(args).items():
        if key in DEPLOYMENT_ARGS:
            extra[key] = _parse(key, text, DEPLOYMENT_ARGS[key])
        elif key in fields:
            kind = fields[key]
            values[key] = _parse(key, text, dict if "dict" in kind else str if "str" in kind else None)
        elif key in generation_fields:
            generation[key] = _parse(key, text, None)
        else:
            known = sorted({*fields, *generation_fields, *DEPLOYMENT_ARGS})
            raise ValueError(f"unknown argument {key!r}; the arguments are: {', '.join(known)}")
    if "model" not in values:
        raise ValueError("app_builder needs model=NAME (a zoo name, hub id or local folder)")
    if generation:
        values["generation"] = {**values.get("generation", {}), **generation}
    replicas = extra.pop("replicas", 1)
    return deployment(ServeOptions(**values), replicas, **extra)


def _parse(key: str, value, kind):
    """``value`` (text from ``serve run``, or already a value) as ``kind``: str and dict as such, int
    / float converted, ``None``: JSON (a number, true, null), else the text itself."""
    if not isinstance(value, str):
        return value
    try:
        if kind is str:
            return value
        if kind is dict:
            parsed = json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError("not a JSON object")
            return parsed
        if kind is not None:
            return kind(value)
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    except ValueError as exc:
        raise ValueError(f"{key}={value!r}: {exc}") from None
