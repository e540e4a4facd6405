"""``dllm serve --ray-replicas``: the app as a Ray Serve deployment. A local Ray (2 CPUs, no dashboard)
runs 2 CPU replicas of tiny-llada on 127.0.0.1 (a free port); 20 concurrent completions are answered
by both replicas (``X-DLLM-Replica``) with the texts of ``dllm.generate`` at the same settings, and a
streamed one too. ``dllm serve --ray-replicas 1`` (a Ray of its own) answers and exits 0 on SIGTERM.
Without Ray, ``run`` says how to install it."""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import _server
import pytest

from dllm.server import ray_serve
from dllm.server.service import ServeOptions

try:
    import fastapi  # noqa: F401
    import httpx
    import ray
    from ray import serve
except ImportError:
    ray = serve = httpx = None

needs_ray = pytest.mark.skipif(
    ray is None, reason='Ray Serve (or FastAPI, httpx) is not installed: pip install -e ".[ray]"'
)

GEN = 32
OPTIONS = ServeOptions(model="tiny-llada", sampler="fast-dllm", cache="dual", generation={"gen_length": GEN})
REQUEST_TIMEOUT = 120.0  # s, each HTTP request
DEPLOY_TIMEOUT = 180.0  # s, Ray up and both replicas loaded


def test_without_ray_run_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ValueError) as error:
        ray_serve.run(OPTIONS, replicas=2)
    assert str(error.value) == 'dllm serve --ray-replicas needs Ray Serve: pip install -e ".[ray]"'
    with pytest.raises(ValueError, match="needs Ray Serve"):
        ray_serve.app_builder({"model": "tiny-llada"})


@needs_ray
def test_app_builder_takes_serve_run_arguments():
    app = ray_serve.app_builder(
        {
            "model": "tiny-llada",
            "sampler": "fast-dllm",
            "cache": "dual",
            "gen_length": "32",
            "seed": "3",
            "sampler_args": '{"threshold": 0.8}',
            "replicas": "2",
            "num_cpus": "0.5",
        }
    )
    bound = app._bound_deployment
    assert bound.num_replicas == 2 and bound.ray_actor_options["num_cpus"] == 0.5
    assert bound.max_ongoing_requests == OPTIONS.max_batch + OPTIONS.max_queue
    [options] = bound.init_args
    assert options == ServeOptions(
        model="tiny-llada",
        sampler="fast-dllm",
        cache="dual",
        generation={"gen_length": 32},
        seed=3,
        sampler_args={"threshold": 0.8},
    )
    with pytest.raises(ValueError, match="unknown argument 'replica'"):
        ray_serve.app_builder({"model": "tiny-llada", "replica": "2"})
    with pytest.raises(ValueError, match="positive integer"):
        ray_serve.app_builder({"model": "tiny-llada", "replicas": "0"})
    with pytest.raises(ValueError, match="needs model=NAME"):
        ray_serve.app_builder({"sampler": "fast-dllm"})
    with pytest.raises(ValueError, match="--ray-replicas=0 must be a positive integer"):
        ray_serve.run(OPTIONS, replicas=0)  # refused before a Ray starts
    with pytest.raises(ValueError, match="num_cpus=-1 must be a number"):
        ray_serve.run(OPTIONS, replicas=1, num_cpus=-1)
    assert not ray.is_initialized()


# ---- a local Ray with 2 replicas ------------------------------------------------------------------


@pytest.fixture(scope="module")
def prompts():
    from dllm.eval import tasks

    return [e.prompt for e in tasks.get("copy").examples("eval", 20)]


@pytest.fixture(scope="module")
def references(prompts):
    """``dllm.generate`` in this process, before Ray takes the CPUs."""
    import dllm

    model = dllm.load("tiny-llada")
    settings = {"sampler": "fast-dllm", "cache": "dual", "gen_length": GEN}
    return [dllm.generate(model, p, **settings)[0].text for p in prompts]


def complete(url: str, prompt: str) -> tuple[str, str]:
    response = httpx.post(
        url + "/v1/completions",
        json={"model": "tiny-llada", "prompt": prompt, "max_tokens": GEN},
        timeout=REQUEST_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-dllm-replica"], response.json()["choices"][0]["text"]


@needs_ray
@pytest.mark.slow
def test_dllm_serve_ray_replicas_answers_and_exits_0_on_sigterm(prompts, references):
    """The CLI path (``run``): a Ray of its own (``RAY_ADDRESS`` unset), 1 replica (1 CPU: fits any
    machine), one completion equal to ``dllm.generate``, SIGTERM -> Ray taken down, exit code 0."""
    flags = [
        "--sampler",
        "fast-dllm",
        "--cache",
        "dual",
        "--gen-length",
        str(GEN),
        "--ray-replicas",
        "1",
        "--ray-num-cpus",
        "0.5",
    ]
    server = _server.start("tiny-llada", *flags, ready_timeout=DEPLOY_TIMEOUT, env={"RAY_ADDRESS": ""})
    try:
        replica, text = complete(server.url, prompts[0])
        assert replica and text == references[0]
    finally:
        code = server.stop(timeout=90)
    assert code == 0, server.output()[-4000:]
    assert "stopping: taking the replicas down" in server.output()


@pytest.fixture(scope="module")
def ray_url(references):
    port = _server.free_port()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        deployed: dict = {}

        def deploy():
            try:
                ray_serve.start(OPTIONS, 2, _server.HOST, port, num_cpus=0.5)
                deployed["ok"] = True
            except BaseException as exc:  # noqa: BLE001 — reported by the fixture
                deployed["error"] = exc

        started = time.monotonic()
        thread = threading.Thread(target=deploy, daemon=True)
        thread.start()
        thread.join(DEPLOY_TIMEOUT)
        if "ok" not in deployed:
            pytest.fail(f"the Ray deployment was not up in {DEPLOY_TIMEOUT} s: {deployed.get('error')!r}")
        print(f"Ray Serve up with 2 replicas in {time.monotonic() - started:.1f} s")
        yield f"http://{_server.HOST}:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@needs_ray
@pytest.mark.slow
def test_health_and_models_through_ray(ray_url):
    health = httpx.get(ray_url + "/health", timeout=REQUEST_TIMEOUT)
    assert health.status_code == 200 and health.json()["status"] == "ready"
    assert health.headers["x-dllm-replica"]
    models = httpx.get(ray_url + "/v1/models", timeout=REQUEST_TIMEOUT)
    assert [m["id"] for m in models.json()["data"]] == ["tiny-llada"]
    missing = httpx.get(ray_url + "/nowhere", timeout=REQUEST_TIMEOUT)
    assert missing.status_code == 404 and missing.headers["x-dllm-replica"]


@needs_ray
@pytest.mark.slow
def test_concurrent_completions_spread_over_replicas_and_equal_generate(ray_url, prompts, references):
    started = time.monotonic()
    with ThreadPoolExecutor(len(prompts)) as pool:
        answers = list(pool.map(lambda p: complete(ray_url, p), prompts))
    print(f"{len(prompts)} concurrent completions through Ray in {time.monotonic() - started:.1f} s")
    replicas = [replica for replica, _ in answers]
    assert len(set(replicas)) == 2, replicas
    assert [text for _, text in answers] == references


@needs_ray
@pytest.mark.slow
def test_streamed_completion_through_ray_equals_generate(ray_url, prompts, references):
    body = {"model": "tiny-llada", "prompt": prompts[0], "max_tokens": GEN, "stream": True}
    parts, done = [], False
    with httpx.stream("POST", ray_url + "/v1/completions", json=body, timeout=REQUEST_TIMEOUT) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-dllm-replica"]
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            parts.append(json.loads(line[len("data: ") :])["choices"][0]["text"] or "")
    assert done and "".join(parts) == references[0]
