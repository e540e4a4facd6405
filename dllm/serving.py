"""Continuous batching for prompts that arrive while others decode: a server's requests.

``dllm.generate(prompts, max_batch=N)`` keeps a batch full from a list known in advance. A
``Batcher`` does the same for requests that come and go: one worker thread decodes a running batch
of at most ``max_batch`` rows for one model and one sampler / cache / generation setting; a
submitted prompt joins it after the next step when it fits (its prompt no wider than the running
batch's prompt region and a row free), or starts the next batch. Every result equals the prompt's
run alone (``dllm.generate``), since rows never see each other. A request can stream its row after
every step (``on_step``) and can be cancelled; its row then leaves the batch at the next step.

    batcher = Batcher(model, sampler="fast-dllm", cache="dual", max_batch=8, gen_length=64)
    request = batcher.submit("Q: 2+3=?", on_step=lambda event, row: ...)
    print(request.result().text)
    batcher.close()

Samplers that change the canvas width (DAEDAL) and classifier-free guidance cannot take rows
mid-run (``Scheduler``): their requests are decoded in consecutive batches of the waiting ones.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Callable

from dllm import caches as cache_registry
from dllm import canvas
from dllm import samplers as sampler_registry
from dllm.config import GenerationConfig
from dllm.generate import Loop, Scheduler, StepEvent
from dllm.metrics import GenerationResult
from dllm.prompts import encode_prompts

StepListener = Callable[[StepEvent, int], None]  # (event, the request's row in event.state)


class Request:
    """One submitted prompt: ``result()`` waits for its ``GenerationResult``; ``cancel()`` stops it."""

    def __init__(self, ids: list[int], on_step: StepListener | None):
        self.ids, self.on_step = ids, on_step
        self.submitted = time.perf_counter()
        self.cancelled = threading.Event()
        self._future: concurrent.futures.Future = concurrent.futures.Future()

    def result(self, timeout: float | None = None) -> GenerationResult:
        """The result (raises ``concurrent.futures.CancelledError`` after ``cancel``, or the error
        that ended the request's batch)."""
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def when_done(self, callback: Callable[[Request], None]) -> None:
        """Call ``callback(request)`` once the request has a result, an error or was cancelled (in
        the batcher's thread, or at once if it is done already)."""
        self._future.add_done_callback(lambda _: callback(self))

    def cancel(self) -> None:
        """Stop decoding this prompt: its row leaves the batch after the current step."""
        self.cancelled.set()


class _Serving(Scheduler):
    """The worker's scheduler: joiners come from the batcher's queue; rows report as they finish."""

    def __init__(self, batcher: Batcher, requests: list[Request]):
        loop = Loop(
            batcher.model,
            batcher.sampler,
            batcher.cache,
            batcher.config,
            self.dispatch,
            batcher.attention_backend,
        )
        super().__init__(loop, [r.ids for r in requests], batcher.max_batch)
        self.size = batcher.max_batch  # room for the requests still to come
        self.batcher, self.requests = batcher, requests

    def dispatch(self, event: StepEvent) -> None:
        """The step's event to each running request's listener, with its row."""
        for row, index in enumerate(event.rows):
            request = self.requests[index]
            if request.on_step is None or request.cancelled.is_set():
                continue
            try:
                request.on_step(event, row)
            except Exception as exc:  # noqa: BLE001 — a listener's error ends its request only
                request.cancelled.set()
                request._future.set_exception(exc)

    def arrivals(self, room: int, prompt_width: int) -> list[int]:
        if not self.joins:
            return []
        joining = self.batcher._take(room, prompt_width)
        start = len(self.requests)
        self.requests += joining
        self.prompts += [r.ids for r in joining]
        return list(range(start, start + len(joining)))

    def is_cancelled(self, index: int) -> bool:
        return self.requests[index].cancelled.is_set()

    def finish(self, index: int, result: GenerationResult | None) -> None:
        request = self.requests[index]
        if request.done():  # its listener failed
            return
        if result is None:
            request._future.cancel()
            return
        result.seconds = time.perf_counter() - request.submitted
        result.batch_row_forwards = self.loop.model_step.row_forwards
        request._future.set_result(result)


class Batcher:
    """A worker thread decoding submitted prompts with continuous batching (module docstring)."""

    def __init__(
        self,
        model,
        sampler="llada",
        cache="none",
        config: GenerationConfig | None = None,
        *,
        max_batch: int = 8,
        attention_backend: str | None = None,
        **settings,
    ):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch={max_batch!r} must be a positive integer")
        config = config or GenerationConfig()
        self.config = dataclasses.replace(config, **settings) if settings else config
        self.model, self.max_batch, self.attention_backend = model, max_batch, attention_backend
        self.sampler = sampler_registry.get(sampler)
        self.cache = cache_registry.get(cache)
        self._waiting: collections.deque[Request] = collections.deque()
        self._wake = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="dllm-batcher", daemon=True)
        self._worker.start()

    def submit(
        self,
        prompt,
        *,
        on_step: StepListener | None = None,
        chat: bool = False,
        allow_special: bool = False,
    ) -> Request:
        """Queue one prompt (text or token ids); checked here, so a bad prompt raises at once."""
        [ids] = encode_prompts(self.model, [prompt], chat, allow_special)
        canvas.check_prompts(self.model, [ids], self.config)
        request = Request(ids, on_step)
        with self._wake:
            if self._closed:
                raise RuntimeError("this Batcher is closed")
            self._waiting.append(request)
            self._wake.notify()
        return request

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued and running requests, then stop the worker."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        self._worker.join(timeout)

    def _take(self, room: int, prompt_width: int | None) -> list[Request]:
        """Up to ``room`` waiting requests, in order, stopping at the first whose prompt is wider
        than ``prompt_width`` (it starts the next batch: no request is overtaken for ever)."""
        taken = []
        with self._wake:
            while self._waiting and len(taken) < room:
                request = self._waiting[0]
                if request.cancelled.is_set():
                    self._waiting.popleft()._future.cancel()
                    continue
                if prompt_width is not None and len(request.ids) > prompt_width:
                    break
                taken.append(self._waiting.popleft())
        return taken

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._waiting and not self._closed:
                    self._wake.wait()
                if not self._waiting and self._closed:
                    return
            requests = self._take(self.max_batch, None)
            if requests:
                self._decode(requests)

    def _decode(self, requests: list[Request]) -> None:
        serving = _Serving(self, requests)
        try:
            serving.decode(list(range(len(requests))))
        except Exception as exc:  # noqa: BLE001 — the batch's error is every unfinished request's
            for request in serving.requests:
                if not request.done():
                    request._future.set_exception(exc)
