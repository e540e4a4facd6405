"""``dllm serve`` through the official ``openai`` client: a server process on 127.0.0.1 (a free port,
stopped by its pid) answers completions and chat, streaming or not, with the texts of
``dllm.generate`` / ``dllm.speculate`` at the same settings; every error of the issue is answered in
OpenAI's shape; a client that goes away frees its row; SIGTERM ends the server with exit 0."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import pytest

openai = pytest.importorskip("openai", reason="the serve extra (openai client) is not installed")
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("prometheus_client", reason="the serve extra is not installed")

import _server  # noqa: E402

import dllm  # noqa: E402
from dllm.eval import tasks  # noqa: E402
from dllm.prompts import encode_chat  # noqa: E402

KEY = "test-key-123"
GEN = 32
TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
PROMPTS = [e.prompt for e in tasks.get("copy").examples("eval", 6)]


@pytest.fixture(scope="module")
def template_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "chat.jinja"
    path.write_text(TEMPLATE)
    return path


@pytest.fixture(scope="module")
def server(template_file):
    with _server.running(
        "tiny-llada",
        "--sampler",
        "fast-dllm",
        "--cache",
        "dual",
        "--gen-length",
        str(GEN),
        "--max-batch",
        "4",
        "--api-key",
        KEY,
        "--chat-template",
        str(template_file),
        "--threads",
        "1",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model():
    model = dllm.load("tiny-llada")
    model.tokenizer.chat_template = TEMPLATE
    return model


def reference(model, prompt, sampler="fast-dllm", cache="dual", **settings):
    settings = {"gen_length": GEN, **settings}
    return dllm.generate(model, prompt, sampler=sampler, cache=cache, **settings)[0]


def streamed(stream) -> tuple[str, list]:
    chunks = list(stream)
    parts = []
    for chunk in chunks:
        for choice in chunk.choices:
            text = choice.delta.content if hasattr(choice, "delta") else choice.text
            parts.append(text or "")
    return "".join(parts), chunks


def metric(server, name: str, labels: str = "") -> float:
    _, body = server.get("/metrics")
    found = re.search(rf"^{re.escape(name + labels)} (\S+)$", body.decode(), re.M)
    return float(found.group(1)) if found else 0.0


# ---- results equal the Python API ----------------------------------------------------------


def test_completion_equals_generate(client, model):
    prompt = PROMPTS[0]
    out = client.completions.create(model="tiny-llada", prompt=prompt, max_tokens=GEN)
    ref = reference(model, prompt)
    [choice] = out.choices
    assert ref.text and choice.text == ref.text
    assert choice.finish_reason == ("stop" if ref.gen_tokens < GEN else "length")
    stats = choice.model_dump()["dllm"]
    assert stats["nfe"] == ref.nfe and stats["steps"] == ref.steps and stats["gen_tokens"] == ref.gen_tokens
    assert stats["tokens_per_forward"] == round(ref.tokens_per_forward, 4)
    assert (
        out.usage.prompt_tokens == len(model.encode(prompt)) and out.usage.completion_tokens == ref.gen_tokens
    )
    assert out.object == "text_completion" and out.model == "tiny-llada"


def test_streamed_completion_equals_generate(client, model):
    prompt = PROMPTS[1]
    stream = client.completions.create(
        model="tiny-llada", prompt=prompt, max_tokens=GEN, stream=True, stream_options={"include_usage": True}
    )
    text, chunks = streamed(stream)
    ref = reference(model, prompt)
    assert text == ref.text
    finals = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].model_dump()["dllm"]["nfe"] == ref.nfe
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == ref.gen_tokens


def test_stream_is_server_sent_events_ending_with_done(server):
    body = {"prompt": PROMPTS[2], "max_tokens": GEN, "stream": True}
    with httpx.stream(
        "POST",
        server.url + "/v1/completions",
        json=body,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    for line in lines[:-1]:
        assert json.loads(line[6:])["object"] == "text_completion"


def test_a_one_token_per_step_sampler_streams_the_growing_prefix(client, model):
    """llada commits one token per step: after every step the text sent so far is the decided
    left-to-right prefix of that step's canvas (dllm_canvas sends each step's whole canvas)."""
    prompt = PROMPTS[3]
    stream = client.completions.create(
        model="tiny-llada",
        prompt=prompt,
        max_tokens=GEN,
        stream=True,
        extra_body={"sampler": "llada", "cache": "none", "dllm_canvas": True},
    )
    text, chunks = streamed(stream)
    ref = reference(model, prompt, sampler="llada", cache="none")
    assert text == ref.text
    assert len([c for c in chunks if c.choices and c.choices[0].text]) >= 2
    sent, steps = "", []
    for chunk in chunks:
        if not chunk.choices:
            continue
        sent += chunk.choices[0].text
        state = chunk.choices[0].model_dump().get("dllm") or {}
        if "canvas" not in state:
            continue
        steps.append(state["step"])
        canvas = state["canvas"]
        decided = canvas.index(None) if None in canvas else len(canvas)
        prefix = canvas[:decided]
        prefix = prefix[: prefix.index(model.eos_ids[0])] if model.eos_ids[0] in prefix else prefix
        assert sent == model.decode(prefix).rstrip("\ufffd")
        assert sum(t is not None for t in canvas) == state["step"]  # one token decided per step
    assert steps == list(range(1, ref.steps + 1)) and canvas == ref.canvas


def test_per_request_settings_are_the_python_apis(client, model):
    prompt = PROMPTS[4]
    out = client.completions.create(
        model="tiny-llada",
        prompt=prompt,
        max_tokens=64,
        extra_body={"sampler": "llada", "cache": "prefix", "block_length": 16, "steps": 32},
    )
    ref = reference(model, prompt, sampler="llada", cache="prefix", gen_length=64, block_length=16, steps=32)
    assert out.choices[0].text == ref.text and out.choices[0].model_dump()["dllm"]["steps"] == ref.steps
    threshold = client.completions.create(
        model="tiny-llada", prompt=prompt, max_tokens=GEN, extra_body={"sampler_args": {"threshold": 0.5}}
    )
    sampler = dllm.samplers.get("fast-dllm", threshold=0.5)
    assert threshold.choices[0].text == reference(model, prompt, sampler=sampler).text


def test_a_batch_of_prompts_with_n_choices(client, model):
    out = client.completions.create(
        model="tiny-llada", prompt=PROMPTS[:2], max_tokens=GEN, n=2, temperature=0.7, seed=5
    )
    assert [c.index for c in out.choices] == [0, 1, 2, 3]
    for choice in out.choices:
        prompt, j = PROMPTS[choice.index // 2], choice.index % 2
        assert choice.text == reference(model, prompt, temperature=0.7, seed=5 + j).text
    assert out.usage.prompt_tokens == sum(len(model.encode(p)) for p in PROMPTS[:2])


def test_stop_strings_cut_the_text(client, model):
    prompt = PROMPTS[0]
    ref = reference(model, prompt)
    stop = ref.text[3:5]
    out = client.completions.create(model="tiny-llada", prompt=prompt, max_tokens=GEN, stop=[stop])
    assert out.choices[0].text == ref.text[: ref.text.index(stop)]
    assert out.choices[0].finish_reason == "stop"
    text, _ = streamed(
        client.completions.create(model="tiny-llada", prompt=prompt, max_tokens=GEN, stop=stop, stream=True)
    )
    assert text == out.choices[0].text


def test_chat_uses_the_chat_template(client, model):
    messages = [
        {"role": "system", "content": "Copy the list."},
        {"role": "user", "content": PROMPTS[5]},
    ]
    ids = encode_chat(model, messages)
    ref = dllm.generate(model, [ids], sampler="fast-dllm", cache="dual", gen_length=GEN)[0]
    out = client.chat.completions.create(model="tiny-llada", messages=messages, max_tokens=GEN)
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant" and out.choices[0].message.content == ref.text
    assert out.usage.prompt_tokens == len(ids)
    text, chunks = streamed(
        client.chat.completions.create(model="tiny-llada", messages=messages, max_tokens=GEN, stream=True)
    )
    assert text == ref.text and chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].object == "chat.completion.chunk"


def test_models_route(client):
    [card] = client.models.list().data
    assert card.id == "tiny-llada" and card.object == "model"
    assert client.models.retrieve("tiny-llada").id == "tiny-llada"


# ---- errors, in OpenAI's shape ---------------------------------------------------------------


def _post(server, body, key=KEY, path="/v1/completions", **kw):
    """``body``: an object, or JSON text (NaN and Infinity, which clients do not send, but can)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if isinstance(body, str):
        headers["Content-Type"] = "application/json"
        return httpx.post(server.url + path, content=body, headers=headers, timeout=60, **kw)
    return httpx.post(server.url + path, json=body, headers=headers, timeout=60, **kw)


@pytest.mark.parametrize(
    "body, param, words",
    [
        ({"prompt": "x", "max_tokens": "many"}, "max_tokens", "valid integer"),
        ({"prompt": "x", "temperature": -1}, "temperature", "out of range"),
        ('{"prompt": "x", "temperature": NaN}', "temperature", "not a finite number"),  # Python's JSON
        ('{"prompt": "x", "cfg_scale": Infinity}', "cfg_scale", "not a finite number"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens", "out of range"),
        ({"prompt": "x", "sampler": "nope"}, "sampler", "unknown sampler 'nope'"),
        ({"prompt": "x", "sampler_args": {"threshold": 2}}, "sampler_args", "threshold=2 is out of range"),
        ({"prompt": "x", "cache": "nope"}, "cache", "unknown cache"),
        ({"prompt": "x", "max_tokens": 20}, "block_length", "block_length"),
        ({"prompt": "x", "logprobs": 3}, "logprobs", "not returned"),
        ({"prompt": "x", "presence_penalty": 0.5}, "presence_penalty", "not supported"),
        ({"prompt": "x", "n": 0}, "n", "out of range"),
        ({"prompt": "x", "stop": [str(i) for i in range(17)]}, "stop", "up to 16"),
        ({"prompt": "x", "colour": "red"}, "colour", "unknown field 'colour'"),
        ({"prompt": ""}, "prompt", "empty prompt"),
        ({"prompt": [[]]}, "prompt", "empty prompt: the prompt has no tokens"),
        ({"prompt": "a <|mask|> b"}, "prompt", "mask token"),
        ({"prompt": [1, 2, 10**9]}, "prompt", "outside the vocabulary"),
        ({"prompt": "x", "top_k": 5}, "top_k", "speculative"),
        ({"max_tokens": 8}, "prompt", "required"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(server, body, param, words):
    response = _post(server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert error["type"] == "invalid_request_error"


def test_the_openai_client_raises_its_errors(client):
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.completions.create(model="tiny-llada", prompt="x", max_tokens=-4)
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.completions.create(model="gpt-5", prompt="x")
    long = "word " * 2000  # the context of tiny-llada is 1024 positions
    with pytest.raises(openai.BadRequestError, match="context"):
        client.completions.create(model="tiny-llada", prompt=long, max_tokens=GEN)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="tiny-llada", messages=[{"role": "tool", "content": "x"}])


def test_api_key_body_size_json_and_routes(server):
    missing = _post(server, {"prompt": "x"}, key=None)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
    assert _post(server, {"prompt": "x"}, key="wrong").status_code == 401
    assert httpx.get(server.url + "/v1/models", timeout=10).status_code == 401
    big = _post(server, {"prompt": "x" * (2 << 20)})
    assert big.status_code == 413 and "bytes" in big.json()["error"]["message"]
    broken = httpx.post(
        server.url + "/v1/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["error"]["message"]
    nowhere = httpx.get(server.url + "/v2/anything", timeout=10)
    assert nowhere.status_code == 404 and "error" in nowhere.json()
    assert httpx.get(server.url + "/v1/completions", timeout=10).status_code == 405


def test_health_and_metrics(server, client):
    status, body = server.get("/health")
    assert status == 200 and json.loads(body)["status"] == "ready"
    client.completions.create(model="tiny-llada", prompt=PROMPTS[0], max_tokens=GEN)
    _, text = server.get("/metrics")
    text = text.decode()
    for name in (
        "dllm_http_requests_total",
        "dllm_queue_depth",
        "dllm_running_rows",
        "dllm_generated_tokens_total",
        "dllm_tokens_per_second",
        "dllm_nfe_bucket",
        "dllm_tokens_per_forward_bucket",
        "dllm_acceptance_rate_bucket",
    ):
        assert name in text, name
    assert metric(server, "dllm_http_requests_total", '{route="/v1/completions",status="200"}') >= 1
    assert metric(server, "dllm_nfe_count") >= 1


# ---- a client that goes away -----------------------------------------------------------------


def test_a_client_that_disconnects_frees_its_row(server, client, model):
    """A long stream is dropped while another runs beside it: its row leaves at once, the other
    stream finishes with its text, and no row is left running."""
    slow = {"sampler": "llada", "cache": "none"}  # one token per step: hundreds of steps
    cancelled = metric(server, "dllm_rows_total", '{outcome="cancelled"}')
    other_result = {}

    def other():
        text, _ = streamed(
            client.completions.create(
                model="tiny-llada", prompt=PROMPTS[1], max_tokens=256, stream=True, extra_body=slow
            )
        )
        other_result["text"] = text

    body = {"prompt": PROMPTS[0], "max_tokens": 896, "stream": True, "dllm_canvas": True, **slow}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream(
        "POST", server.url + "/v1/completions", json=body, headers=headers, timeout=60
    ) as response:
        lines = response.iter_lines()
        next(line for line in lines if line.startswith("data: {"))  # decoding
        thread = threading.Thread(target=other)
        thread.start()
        deadline = time.monotonic() + 30
        while metric(server, "dllm_running_rows") < 2:
            assert time.monotonic() < deadline, "the second stream never ran beside the first"
            time.sleep(0.02)
    left_at = time.monotonic()  # the client closed its connection
    while metric(server, "dllm_rows_total", '{outcome="cancelled"}') < cancelled + 1:
        assert time.monotonic() - left_at < 10, "the dropped stream's row did not leave"
        time.sleep(0.02)
    if thread.is_alive():
        assert metric(server, "dllm_running_rows") <= 1
    thread.join(120)
    ref = reference(model, PROMPTS[1], sampler="llada", cache="none", gen_length=256)
    assert other_result["text"] == ref.text
    assert metric(server, "dllm_running_rows") == 0 and metric(server, "dllm_queue_depth") == 0


# ---- a full queue ----------------------------------------------------------------------------


def test_a_full_queue_is_a_429_with_retry_after():
    """One row, one place in the queue: a third request is refused with 429 and Retry-After. The
    waiting request's client then gives up: a non-streaming request's disconnect cancels it too."""
    with _server.running(
        "tiny-llada", "--gen-length", "896", "--max-batch", "1", "--max-queue", "1", "--threads", "1"
    ) as server:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
        running = client.completions.create(
            model="tiny-llada", prompt=PROMPTS[0], stream=True, extra_body={"dllm_canvas": True}
        )
        next(iter(running))  # the first request holds the only row
        gave_up = []

        def wait_then_give_up():
            try:
                httpx.post(server.url + "/v1/completions", json={"prompt": PROMPTS[1]}, timeout=4)
            except httpx.TimeoutException:
                gave_up.append(True)

        waiting = threading.Thread(target=wait_then_give_up)
        waiting.start()
        deadline = time.monotonic() + 30
        while json.loads(server.get("/health")[1])["waiting"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        full = httpx.post(server.url + "/v1/completions", json={"prompt": PROMPTS[2]}, timeout=30)
        assert full.status_code == 429 and full.headers["retry-after"] == "1"
        assert full.json()["error"]["code"] == "queue_full"
        waiting.join(30)
        assert gave_up
        deadline = time.monotonic() + 10
        while json.loads(server.get("/health")[1])["waiting"]:  # its request left the queue
            assert time.monotonic() < deadline
            time.sleep(0.05)
        running.close()
        deadline = time.monotonic() + 10
        while json.loads(server.get("/health")[1])["running"]:
            assert time.monotonic() < deadline, "the closed stream's row is still running"
            time.sleep(0.05)


# ---- speculative decoding --------------------------------------------------------------------


@pytest.fixture(scope="module")
def speculative_server():
    with _server.running(
        "tiny-ar",
        "--drafter",
        "deer",
        "--drafter-model",
        "tiny-deer",
        "--max-new-tokens",
        "24",
        "--threads",
        "1",
    ) as server:
        yield server


def test_speculative_serving_equals_speculate(speculative_server):
    client = openai.OpenAI(
        base_url=speculative_server.url + "/v1", api_key="none", max_retries=0, timeout=120
    )
    verifier = dllm.load("tiny-ar")
    results = {}

    def ask(prompt, max_tokens):
        results[prompt, max_tokens] = client.completions.create(
            model="tiny-ar", prompt=prompt, max_tokens=max_tokens
        )

    threads = [threading.Thread(target=ask, args=(p, m)) for p, m in zip(PROMPTS[:4], (8, 24, 16, 24))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for (prompt, max_tokens), out in results.items():
        ref = dllm.speculate(verifier, prompt, drafter="deer", max_new_tokens=max_tokens)[0]
        assert out.choices[0].text == ref.text
        stats = out.choices[0].model_dump()["dllm"]
        assert stats["tau"] == round(ref.tau, 4) and stats["verifier_forwards"] == ref.verifier_forwards
        assert "tokens_per_verifier_forward" in stats
    text, _ = streamed(client.completions.create(model="tiny-ar", prompt=PROMPTS[4], stream=True))
    assert text == dllm.speculate(verifier, PROMPTS[4], drafter="deer", max_new_tokens=24)[0].text
    sampled = client.completions.create(model="tiny-ar", prompt=PROMPTS[0], temperature=0.8, seed=3, n=2)
    for j, choice in enumerate(sampled.choices):
        ref = dllm.speculate(
            verifier, PROMPTS[0], drafter="deer", max_new_tokens=24, temperature=0.8, seed=3 + j
        )
        assert choice.text == ref[0].text
    with pytest.raises(openai.BadRequestError, match="diffusion"):
        client.completions.create(model="tiny-ar", prompt="x", extra_body={"sampler": "llada"})
    with pytest.raises(openai.BadRequestError, match=r"max_tokens \(dllm's max_new_tokens\).*out of range"):
        client.completions.create(model="tiny-ar", prompt="x", max_tokens=0)  # 0 is not "not given"
    nan = _post(speculative_server, '{"prompt": "x", "top_p": NaN}', key=None)
    assert nan.status_code == 400 and "not a finite number" in nan.json()["error"]["message"]
    assert metric(speculative_server, "dllm_acceptance_rate_count") >= 1


# ---- loading, shutdown, the command line -----------------------------------------------------


def test_health_is_503_until_the_model_is_loaded():
    from fastapi.testclient import TestClient

    from dllm.server import ServeOptions, create_app

    app = create_app(ServeOptions(model="tiny-llada", generation={"gen_length": GEN}), load=False)
    with TestClient(app) as http:
        assert http.get("/health").status_code == 503 and http.get("/health").json()["status"] == "loading"
        early = http.post("/v1/completions", json={"prompt": "x"})
        assert early.status_code == 503 and "loading" in early.json()["error"]["message"]
        app.state.service.load()
        assert http.get("/health").status_code == 200
        assert http.post("/v1/completions", json={"prompt": PROMPTS[0]}).status_code == 200


def test_sigterm_finishes_the_running_stream_and_exits_0():
    server = _server.start("tiny-llada", "--gen-length", "128", "--max-batch", "2", "--threads", "1")
    try:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
        stream = client.completions.create(
            model="tiny-llada", prompt=PROMPTS[0], stream=True, extra_body={"sampler": "llada"}
        )
        chunks = iter(stream)
        next(chunks)
        server.process.send_signal(subprocess.signal.SIGTERM)
        rest = list(chunks)  # the running request is finished, not cut
        assert rest and rest[-1].choices[0].finish_reason in ("stop", "length")
        assert server.process.wait(60) == 0
    finally:
        server.stop()
    assert "Traceback" not in server.output()


@pytest.mark.parametrize(
    "args, words",
    [
        (["tiny-llada", "--drafter", "deer", "--sampler", "llada"], "--drafter serves an autoregressive"),
        (["tiny-llada", "--max-batch", "0"], "--max-batch=0 must be a positive integer"),
        (["tiny-llada", "--sampler", "nope"], "unknown sampler 'nope'"),
        (["tiny-llada", "--gen-length", "20"], "block_length"),
        (["tiny-llada", "--port", "0"], "--port 0 is not a port number"),
    ],
)
def test_bad_flags_end_with_one_line(args, words):
    done = subprocess.run(
        [sys.executable, "-m", "dllm", "serve", *args], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_model_that_cannot_load_stops_the_server(tmp_path):
    port = str(_server.free_port())
    done = subprocess.run(
        [sys.executable, "-m", "dllm", "serve", str(tmp_path / "missing"), "--port", port],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "cannot serve" in done.stderr, done.stderr


def test_an_unexpected_error_is_a_500_in_openais_shape_and_counted():
    from fastapi.testclient import TestClient

    from dllm.server import ServeOptions, create_app

    app = create_app(ServeOptions(model="tiny-llada", generation={"gen_length": GEN}), load=False)
    app.state.service.load()

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    app.state.service.jobs = broken
    with TestClient(app, raise_server_exceptions=False) as http:
        response = http.post("/v1/completions", json={"prompt": PROMPTS[0]})
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["type"] == "server_error" and "RuntimeError" in error["message"]
        assert "Traceback" not in response.text and "boom" not in response.text
        metrics = http.get("/metrics").text
    assert 'dllm_http_requests_total{route="/v1/completions",status="500"} 1.0' in metrics
