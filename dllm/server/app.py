"""The FastAPI app: OpenAI's routes over a ``Service``, streaming, errors, health and metrics.

Routes: ``POST /v1/completions``, ``POST /v1/chat/completions``, ``GET /v1/models`` (the API key,
when set, guards these), ``GET /health`` (503 until the model is loaded), ``GET /metrics``.

Streaming (``stream: true``) sends server-sent events in OpenAI's chunk format and ends with
``data: [DONE]``. A diffusion model's chunk is sent when the left-to-right prefix of decided tokens
grows (what a client can show; positions decided further right wait for the gap before them);
with ``dllm_canvas: true`` every step also sends the whole canvas (``choices[0].dllm.canvas``,
``null`` for a masked position) for visualisers. A client that disconnects cancels its rows:
they leave their batch after the current step.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from dllm.metrics import answer_length, cut_at_stop

from .protocol import (
    APIError,
    ChatBody,
    CompletionBody,
    Reply,
    parse_body,
    prompts_of,
    stop_strings,
    usage,
)
from .service import Job, ServeOptions, Service
from .stats import ServerMetrics

log = logging.getLogger("dllm.server")

ROUTES = ("/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics")


def create_app(options: ServeOptions, *, load: bool = True):
    """The app serving ``options.model``; it loads the model in a background thread at startup
    (``load=False``: the caller calls ``app.state.service.load()``)."""
    service = Service(options)
    metrics = ServerMetrics(service)

    @asynccontextmanager
    async def lifespan(app):
        if load:
            threading.Thread(target=_load, args=(service,), name="dllm-load", daemon=True).start()
        yield
        # uvicorn has waited for the running requests (its graceful-shutdown timeout); rows whose
        # handlers it cancelled were cancelled by them; stop the Batchers
        await asyncio.to_thread(service.close, True, 30.0)

    app = FastAPI(title="dllm", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service, app.state.metrics = service, metrics

    def error_response(error: APIError):
        return JSONResponse(error.body(), status_code=error.status, headers=error.headers)

    @app.exception_handler(APIError)
    async def _api_error(request, error: APIError):
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(request, error: HTTPException):
        message = {
            404: f"no route {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}",
        }
        return error_response(APIError(error.status_code, message.get(error.status_code, str(error.detail))))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request, error):
        return error_response(APIError(400, str(error)))

    @app.exception_handler(Exception)
    async def _internal_error(request, error: Exception):
        log.exception("internal error on %s", request.url.path)
        return error_response(APIError(500, f"internal error ({type(error).__name__}); see the server's log"))

    def authorize(request: Request) -> None:
        if options.api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise APIError(
                401,
                "missing API key: send it as 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not hmac.compare_digest(key.encode(), options.api_key.encode()):
            raise APIError(
                401, "incorrect API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}
            )

    def ready() -> None:
        if service.state == "loading":
            raise APIError(
                503, f"the model {options.served_name!r} is still loading", headers={"Retry-After": "5"}
            )
        if service.state == "failed":
            raise APIError(503, f"the model {options.served_name!r} failed to load: {service.error}")

    @app.get("/health")
    async def health():
        waiting, running = service.counts()
        body = {"status": service.state, "model": options.served_name, "waiting": waiting, "running": running}
        if service.error is not None:
            body["error"] = str(service.error)
        ok = service.state == "ready" and service.accepting
        return JSONResponse(body if service.accepting else {**body, "status": "stopping"}, 200 if ok else 503)

    @app.get("/metrics")
    async def prometheus():
        data, content_type = metrics.exposition()
        return Response(data, media_type=content_type)

    def model_card() -> dict:
        kind = "speculative" if service.speculative else "diffusion"
        return {
            "id": options.served_name,
            "object": "model",
            "created": 0,
            "owned_by": "dllm",
            "dllm": {"kind": kind},
        }

    @app.get("/v1/models")
    async def models(request: Request):
        authorize(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{name:path}")
    async def model(request: Request, name: str):
        authorize(request)
        if name != options.served_name:
            raise _unknown_model(name, options)
        return model_card()

    async def complete(request: Request, chat: bool):
        authorize(request)
        ready()
        body = parse_body(
            ChatBody if chat else CompletionBody, await _read_json(request, options.max_body_bytes)
        )
        if body.model is not None and body.model != options.served_name:
            raise _unknown_model(body.model, options)
        if chat:
            prompts = [service.encode(body.messages, body.allow_special, chat=True)]
        else:
            prompts = [service.encode(p, body.allow_special, chat=False) for p in prompts_of(body)]
        jobs = service.jobs(body, prompts)
        run = _Run(service, metrics, jobs, Reply(chat, options.served_name), body, asyncio.get_running_loop())
        if body.stream:
            run.submit(streaming=True)
            return StreamingResponse(
                run.events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        run.submit(streaming=False)
        return await run.response(request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await complete(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await complete(request, chat=True)

    app.add_middleware(_CountRequests, metrics=metrics)
    return app


class _CountRequests:
    """ASGI middleware: count every answered request by route and status (``dllm_http_requests``)."""

    def __init__(self, app, metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = {"code": "disconnected"}

        async def sending(message):
            if message["type"] == "http.response.start":
                status["code"] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:  # answered by the app's 500 handler outside this middleware
            if status["code"] == "disconnected":
                status["code"] = "500"
            raise
        finally:
            path = scope.get("path", "")
            route = (
                path
                if path in ROUTES
                else ("/v1/models/{name}" if path.startswith("/v1/models/") else "other")
            )
            self.metrics.requests.labels(route=route, status=status["code"]).inc()


def _load(service: Service) -> None:
    try:
        service.load()
    except Exception:  # noqa: BLE001 — /health reports it; the CLI exits
        log.exception("loading %r failed", service.options.model)


def _unknown_model(name: str, options: ServeOptions) -> APIError:
    return APIError(
        404,
        f"model {name!r} not found; this server serves {options.served_name!r}",
        param="model",
        code="model_not_found",
    )


async def _read_json(request, limit: int):
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise APIError(413, f"the request body is {int(length)} bytes; at most {limit} are accepted")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise APIError(413, f"the request body is over {limit} bytes; at most {limit} are accepted")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the request body is not valid JSON ({exc})") from None


class _Choice:
    """One choice as the client sees it: the text sent so far, cut at the request's stop strings."""

    def __init__(self, job: Job, decode, stops: list[str]):
        self.job, self.decode, self.stops = job, decode, stops
        self.holdback = max((len(s) for s in stops), default=1) - 1  # a stop string may be starting
        self.sent, self.stopped, self.shown = "", False, 0

    def update(self, tokens: list[int]) -> str:
        """The new text to send for the decided prefix ``tokens`` ('' when none is safe yet)."""
        if self.stopped or len(tokens) <= self.shown:
            return ""
        self.shown = len(tokens)
        text = self.decode(tokens).rstrip("\ufffd")  # an incomplete UTF-8 sequence waits
        text, stop = cut_at_stop(text, self.stops)
        self.stopped = stop is not None
        if not self.stopped and self.holdback:
            text = text[: len(text) - self.holdback]
        if len(text) <= len(self.sent) or not text.startswith(self.sent):
            return ""
        new, self.sent = text[len(self.sent) :], text
        return new

    def final(self, result) -> tuple[str, str, str]:
        """(the whole text, what is left to send, finish_reason) of the finished row."""
        text, stop = cut_at_stop(result.text, self.stops)
        rest = text[len(self.sent) :] if text.startswith(self.sent) else ""
        reason = "stop" if stop is not None or result.gen_tokens < self.job.max_tokens else "length"
        return text, rest, reason


class _Run:
    """One HTTP request's choices in the engine: submitted together, followed until all are done."""

    def __init__(self, service: Service, metrics: ServerMetrics, jobs: list[Job], reply: Reply, body, loop):
        self.service, self.metrics, self.jobs, self.reply, self.body, self.loop = (
            service,
            metrics,
            jobs,
            reply,
            body,
            loop,
        )
        model = service.model
        self.choices = [_Choice(job, model.decode, stop_strings(body)) for job in jobs]
        self.updates: asyncio.Queue = asyncio.Queue()
        self.requests: list = []
        self.started = time.perf_counter()
        self.canvas = bool(body.dllm_canvas)
        self.mask_id = getattr(model, "mask_id", None)
        self.eos_ids = model.eos_ids

    def _post(self, item) -> None:  # from the engine's thread
        try:
            self.loop.call_soon_threadsafe(self.updates.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server stopped): nobody listens
            pass

    def _listener(self, index: int):
        eos_ids = self.eos_ids
        if self.service.speculative:

            def on_round(event, row):
                out = event.out[row]
                self._post((index, "tokens", out[: answer_length(out, eos_ids)], None))

            return on_round

        mask_id, canvas = self.mask_id, self.canvas

        def on_step(event, row):
            host = event.host
            tokens = host.canvas[row]
            decided = tokens.index(mask_id) if mask_id in tokens else len(tokens)
            prefix = answer_length(tokens[:decided], eos_ids)
            state = None
            if canvas:
                state = {
                    "step": host.steps[row],
                    "nfe": host.nfe[row],
                    "canvas": [None if t == mask_id else t for t in tokens],
                }
            self._post((index, "tokens", tokens[:prefix], state))

        return on_step

    def submit(self, streaming: bool) -> None:
        listeners = [self._listener(i) if streaming else None for i in range(len(self.jobs))]
        self.requests = self.service.submit(self.jobs, listeners)
        for i, request in enumerate(self.requests):
            request.when_done(lambda _, i=i: self._post((i, "done", None, None)))

    def cancel(self) -> None:
        for request in self.requests:
            request.cancel()

    def _usage(self, results) -> dict:
        prompt = sum(len(job.ids) for job in self.jobs if job.index % self.body.n == 0)
        return usage(prompt, sum(r.gen_tokens for r in results))

    async def response(self, request):
        """The non-streaming answer, once every choice is done (a disconnect cancels them)."""
        left = len(self.requests)
        try:
            while left:
                try:
                    _, kind, _, _ = await asyncio.wait_for(self.updates.get(), timeout=0.5)
                    left -= kind == "done"
                except asyncio.TimeoutError:
                    if await request.is_disconnected():  # the rows are cancelled below
                        return JSONResponse({}, status_code=499)
        finally:
            if left:
                self.cancel()
        results = [_outcome(r) for r in self.requests]
        choices = []
        for choice, result in zip(self.choices, results):
            text, _, reason = choice.final(result)
            choices.append(
                {"index": choice.job.index, "text": text, "finish_reason": reason, "dllm": result.stats()}
            )
        choices.sort(key=lambda c: c["index"])
        return JSONResponse(self.reply.response(choices, self._usage(results)))

    async def events(self):
        """Server-sent events until every choice is done, then ``[DONE]``; closing cancels the rows."""
        left, results, first = len(self.requests), [None] * len(self.requests), True
        try:
            if self.reply.chat:
                for choice in self.choices:
                    yield _sse(self.reply.chunk(choice.job.index, "", role=True))
            while left:
                index, kind, tokens, state = await self.updates.get()
                choice = self.choices[index]
                if kind == "tokens":
                    text = choice.update(tokens)
                    if text and first:
                        self.metrics.first_chunk.observe(time.perf_counter() - self.started)
                        first = False
                    if text or state is not None:
                        extra = {"dllm": state} if state is not None else {}
                        yield _sse(self.reply.chunk(choice.job.index, text, **extra))
                    continue
                left -= 1
                try:
                    results[index] = result = _outcome(self.requests[index])
                except APIError as error:
                    yield _sse(error.body())
                    self.cancel()
                    break
                _, rest, reason = choice.final(result)
                if rest:
                    yield _sse(self.reply.chunk(choice.job.index, rest))
                yield _sse(self.reply.chunk(choice.job.index, None, reason, dllm=result.stats()))
            else:
                if (self.body.stream_options or {}).get("include_usage"):
                    yield _sse(self.reply.usage_chunk(self._usage(results)))
            yield "data: [DONE]\n\n"
        finally:
            if left:
                self.cancel()  # the client went away (or the server stops): the rows leave their batches


def _outcome(request):
    """A finished request's result; its failure as an APIError."""
    import concurrent.futures

    try:
        return request.result(timeout=0)
    except concurrent.futures.CancelledError:
        raise APIError(503, "the request was cancelled (the server is shutting down)") from None
    except (ValueError, TypeError) as exc:
        raise APIError(400, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 — answered as a server error, logged with its traceback
        log.error("a request failed", exc_info=exc)
        raise APIError(500, f"decoding failed ({type(exc).__name__}: {exc})") from None


def _sse(payload: dict) -> str:
    return f"data: {json.dumps(payload)}\n\n"
