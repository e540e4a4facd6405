"""The engine: the one owner of a running batch, for every entry point and both kinds of step.

Requests wait in a thread-safe FIFO (``Waiting``: filled at once by ``dllm.generate`` /
``dllm.speculate``, one at a time by a ``Batcher``'s callers), join the running batch while a row
is free (after any step, when the step kind takes joiners and the request fits the batch's
layout), stream an event to their listener after every step, can be cancelled, and leave when
done; their results are assembled here and nowhere else. What one step does is a *step kind*
(``StepKind``): the denoising step (``dllm.generate.Denoising``) or the speculative round
(``dllm.drafters.loop.Speculative``). Rows never see each other, so every request's result is
its run alone, whatever joins or leaves beside it.

Timing (``dllm.metrics``): a result's ``seconds`` is its decoding time (from its row joining the
running batch to leaving it) and ``queue_seconds`` the wait before (from submission to joining).
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
from typing import Callable, Protocol

StepListener = Callable[[object, int], None]  # (the step's event, the request's row in it)


def check_max_batch(max_batch, none_ok: bool = True) -> None:
    """``max_batch``: a positive integer (or None where one batch of every prompt is meant)."""
    if max_batch is None and none_ok:
        return
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(
            f"max_batch={max_batch!r} must be a positive integer"
            + (" (or None: one batch of every prompt)" if none_ok else "")
        )


class Request:
    """One prompt handed to the engine: ``result()`` waits for it; ``cancel()`` stops it."""

    _numbers = itertools.count()

    def __init__(
        self, ids: list[int], on_step: StepListener | None = None, index: int | None = None, **extra
    ):
        self.ids, self.on_step = ids, on_step
        self.index = next(self._numbers) if index is None else index  # the prompt's place in its call
        self.extra = extra  # per-request settings a step kind reads (e.g. a speculative row's seed)
        self.submitted = time.perf_counter()
        self.started: float | None = None  # when its row joined the running batch
        self.reported = False  # the engine has settled it (result, cancel, or its listener's error)
        self.cancelled = threading.Event()
        self._future: concurrent.futures.Future = concurrent.futures.Future()

    def result(self, timeout: float | None = None):
        """The result (raises ``concurrent.futures.CancelledError`` after ``cancel``, or the error
        that ended the request or its batch)."""
        return self._future.result(timeout)

    def done(self) -> bool:
        return self._future.done()

    def when_done(self, callback: Callable[[Request], None]) -> None:
        """Call ``callback(request)`` once it has a result, an error or was cancelled (in the
        engine's thread, or at once if it is done already)."""
        self._future.add_done_callback(lambda _: callback(self))

    def cancel(self) -> None:
        """Stop this request: its row leaves the batch after the current step; a request still
        waiting for a row is settled (cancelled) at once, so nothing counts it as waiting."""
        self.cancelled.set()
        if self.started is None:
            self._future.cancel()

    def fail(self, error: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(error)


class Waiting:
    """The requests not yet in a running batch, in arrival order (thread-safe)."""

    def __init__(self, requests: list[Request] = ()):
        self._queue: collections.deque[Request] = collections.deque(requests)
        self._wake = threading.Condition()
        self.closed = False

    def put(self, request: Request) -> None:
        with self._wake:
            if self.closed:
                raise RuntimeError("this Batcher is closed")
            self._queue.append(request)
            self._wake.notify()

    def close(self) -> None:
        with self._wake:
            self.closed = True
            self._wake.notify_all()

    def wait(self) -> bool:
        """Block until a request waits (True) or the queue is closed and empty (False)."""
        with self._wake:
            while not self._queue and not self.closed:
                self._wake.wait()
            return bool(self._queue)

    def widest(self) -> int:
        """The longest prompt waiting now (0 when none)."""
        with self._wake:
            return max((len(r.ids) for r in self._queue), default=0)

    def take(self, room: int, fits: Callable[[Request], bool] | None = None) -> list[Request]:
        """Up to ``room`` waiting requests, in order, stopping at the first that does not ``fit``
        (it starts the next batch: no request is overtaken for ever); cancelled ones are dropped."""
        taken = []
        with self._wake:
            while self._queue and len(taken) < room:
                request = self._queue[0]
                if request.cancelled.is_set():
                    self._queue.popleft()._future.cancel()
                    continue
                if fits is not None and not fits(request):
                    break
                taken.append(self._queue.popleft())
        return taken


class StepKind(Protocol):
    """What one step of a running batch does. ``joins``: rows may join a running batch;
    ``keeps_finished``: finished rows stay in the batch until it ends (computed, ignored)."""

    joins: bool
    keeps_finished: bool
    vocabulary: str  # what prompt ids are checked against, named in messages (dllm.prompts)

    def request(
        self, ids: list[int], on_step: StepListener | None = None, index: int | None = None
    ) -> Request:
        """A request for ``ids``, checked against what this kind can decode (the context)."""

    def start(self, requests: list[Request], prompt_width: int | None) -> object:
        """A new running batch of ``requests`` (prompts laid out at least ``prompt_width`` wide)."""

    def active(self, batch) -> list[bool]:
        """The rows still decoding (read once, before the first step)."""

    def step(self, batch) -> list[bool]:
        """One step of every row; returns the rows still decoding."""

    def event(self, batch) -> object:
        """What the last step did, for listeners (``listener(event, row)``)."""

    def fits(self, batch, request: Request) -> bool:
        """Whether ``request`` can join ``batch`` now."""

    def join(self, batch, requests: list[Request]) -> None:
        """Append ``requests`` as new rows."""

    def stop(self, batch, rows: list[int]) -> None:
        """Stop decoding ``rows`` (cancelled)."""

    def leave(self, batch, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (in order)."""

    def result(self, batch, row: int, request: Request):
        """The finished row's result (counts filled; the engine sets the timing)."""

    def stalled(self, batch, steps: int) -> bool:
        """Whether ``steps`` steps of this batch are more than it can need (no progress)."""


class Engine:
    """Decodes requests with one step kind in a running batch of at most ``max_batch`` rows."""

    def __init__(self, kind: StepKind, max_batch: int | None, callback: Callable | None = None):
        self.kind, self.max_batch, self.callback = kind, max_batch, callback  # callback(event): every step

    def run(self, requests: list[Request]) -> list:
        """Decode a call's requests (all known now); their results in order. An error ends the call."""
        if not requests:
            return []
        waiting = Waiting(requests)
        waiting.close()
        while waiting.wait():
            self.decode(waiting, raise_errors=True)
        return [r.result() for r in requests]

    def decode(self, waiting: Waiting, raise_errors: bool = False) -> None:
        """Run one batch: take the first waiting requests, step until every row has left (taking
        joiners as rows free up). An error ends every request of the batch (raised with
        ``raise_errors``)."""
        size = self.max_batch or 1 << 62
        rows = waiting.take(size)
        if not rows:
            return
        kind = self.kind
        try:
            wider = waiting.widest() if kind.joins else 0
            batch = self._start(rows, max([wider] + [len(r.ids) for r in rows]) if wider else None)
            active, steps = kind.active(batch), 0
            while True:
                active = self._cancel(batch, rows, active)
                rows, active = self._retire(batch, rows, active)
                if kind.joins and len(rows) < size:
                    joining = waiting.take(size - len(rows), lambda r: kind.fits(batch, r))
                    if joining:
                        rows, active = rows + joining, active + [True] * len(joining)
                        self._join(batch, joining)
                if not any(active):
                    return
                steps += 1
                if kind.stalled(batch, steps):
                    raise RuntimeError("decoding made no progress; aborted")
                active = kind.step(batch)
                self._dispatch(kind.event(batch), rows)
        except BaseException as error:  # the batch's error is every unfinished request's
            for request in rows:
                request.fail(error)
            if raise_errors or not isinstance(error, Exception):
                raise

    def _start(self, rows: list[Request], prompt_width: int | None):
        now = time.perf_counter()
        for request in rows:
            request.started = now
        return self.kind.start(rows, prompt_width)

    def _join(self, batch, joining: list[Request]) -> None:
        now = time.perf_counter()
        for request in joining:
            request.started = now
        self.kind.join(batch, joining)

    def _cancel(self, batch, rows: list[Request], active: list[bool]) -> list[bool]:
        stopping = [i for i, (on, r) in enumerate(zip(active, rows)) if on and r.cancelled.is_set()]
        if stopping:
            self.kind.stop(batch, stopping)
            active = [on and i not in stopping for i, on in enumerate(active)]
        return active

    def _retire(self, batch, rows: list[Request], active: list[bool]):
        """Report the rows that finished; they leave the batch (unless the kind keeps them).
        ``Request.reported``, not a set of ids: a request that left and was freed may share its id
        with one that joins later."""
        now = time.perf_counter()
        for row, request in enumerate(rows):
            if active[row] or request.reported:
                continue
            request.reported = True
            if request.done():  # its listener failed
                continue
            if request.cancelled.is_set():
                request._future.cancel()
                continue
            result = self.kind.result(batch, row, request)
            result.seconds, result.queue_seconds = now - request.started, request.started - request.submitted
            request._future.set_result(result)
        if all(active) or self.kind.keeps_finished:
            return rows, active
        keep = [i for i, on in enumerate(active) if on]
        self.kind.leave(batch, keep)
        return [rows[i] for i in keep], [True] * len(keep)

    def _dispatch(self, event, rows: list[Request]) -> None:
        """The step's event to the call's callback and to each running request's listener."""
        if self.callback is not None:
            self.callback(event)
        for row, request in enumerate(rows):
            if request.on_step is None or request.done() or request.cancelled.is_set():
                continue
            try:
                request.on_step(event, row)
            except Exception as exc:  # noqa: BLE001 — a listener's error ends its request only
                request.cancelled.set()
                request.fail(exc)


class Batcher:
    """A worker thread serving arriving requests with one engine (``dllm.serving``)."""

    def __init__(self, engine: Engine, encode: Callable[..., Request]):
        self.engine, self._encode = engine, encode
        self._waiting = Waiting()
        self._worker = threading.Thread(target=self._work, name="dllm-batcher", daemon=True)
        self._worker.start()

    def submit(self, prompt, *, on_step: StepListener | None = None, **options) -> Request:
        """Queue one prompt; it is checked here, so a bad prompt raises at once."""
        if self._waiting.closed:
            raise RuntimeError("this Batcher is closed")
        request = self._encode(prompt, on_step=on_step, **options)
        self._waiting.put(request)
        return request

    def close(self, timeout: float | None = None) -> None:
        """Finish the queued and running requests, then stop the worker."""
        self._waiting.close()
        self._worker.join(timeout)

    def _work(self) -> None:
        while self._waiting.wait():
            self.engine.decode(self._waiting)
