"""What a column and the speculative tab run: settings -> a validated generation, streamed step by step.

No Gradio here. Columns with the same settings share one continuous batch, whoever runs them: each
distinct setting (model, sampler, cache, their parameters, generation) has a ``dllm.serving.Batcher``
(at most ``MAX_BATCH`` rows; the ``MAX_BATCHERS`` most recently used are kept), so concurrent users'
prompts decode in one batch, joining and leaving it as they come and finish, each with the tokens of
its run alone. ``stream`` submits the prompt and yields ``Frame``s built from its row's per-step
events (``StepEvent``); counts come from ``dllm.metrics`` only. ``run`` is the same generation without
streaming (the API endpoint and the tests compare it with ``dllm.generate``).

The speculative tab goes the same way: each distinct setting (verifier, drafter, length controller,
their parameters, max_new_tokens, temperature, seed) has a speculative ``Batcher`` in the same LRU, and
its plain-AR baseline (``SpeculativeSettings.plain()``) one with no drafter, so both runs of the
speedup take the same path. ``speculative_stream`` yields a ``SpeculativeFrame`` after every round
(from its ``RoundEvent``); the prompt is checked by the Batcher's ``submit`` (``dllm.encode_prompts``
and the verifier's context). Both kinds of run are followed by ``follow``: one listener, the Stop
button (``should_stop``), throttling and the last outcome in one place.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from dllm import metrics
from dllm.config import check_fields, resolve_generation
from dllm.prompts import check_text
from dllm.serving import BatcherPool

from . import examples, models
from .render import Canvas

MAX_PROMPT_CHARS = 2000
DEFAULT_GENERATION = {"gen_length": 64, "block_length": 32}
MAX_BATCH = 8  # rows of one setting's running batch
MAX_BATCHERS = 8  # settings whose batch worker is kept
MIN_INTERVAL = 0.05  # seconds between two streamed updates of a column (the steps between are coalesced)
# ... and of the speculative tab: its rounds take milliseconds, and a page re-rendering its status, texts
# and rounds 20 times a second on a busy CPU lags by seconds (the Stop button with it)
SPECULATIVE_INTERVAL = 0.2


@dataclass
class ColumnSettings:
    model: str = "tiny-llada"
    sampler: str = "llada"
    sampler_params: dict = field(default_factory=dict)
    cache: str = "none"
    cache_params: dict = field(default_factory=dict)
    generation: dict = field(default_factory=lambda: dict(DEFAULT_GENERATION))

    def __post_init__(self):
        check_fields(self, "column")  # e.g. sampler_params given as text: TypeError naming the field

    def label(self) -> str:
        def named(name, params):
            return name + (f"({', '.join(f'{k}={v!r}' for k, v in params.items())})" if params else "")

        gen = self.generation
        extra = {k: v for k, v in gen.items() if k not in ("gen_length", "block_length")}
        tail = f" {', '.join(f'{k}={v}' for k, v in extra.items())}" if extra else ""
        return (
            f"{named(self.sampler, self.sampler_params)} · cache {named(self.cache, self.cache_params)}"
            f" · gen {gen.get('gen_length')}/{gen.get('block_length')}{tail}"
        )


@dataclass
class Prepared:
    model: object
    sampler: object
    cache: object
    config: object
    prompt_ids: list[int]


@dataclass
class Frame:
    """One update of a column."""

    status: str  # running | done | error | stopped
    canvas: Canvas | None = None
    counters: dict = field(default_factory=dict)
    result: object = None  # GenerationResult when done
    message: str = ""
    score: float | None = None


def check_prompt(prompt, limit: int = MAX_PROMPT_CHARS) -> None:
    """The demo takes prompt text: ``dllm.prompts``' text rules plus the demo's length limit (what
    depends on the model is checked by ``dllm.encode_prompts`` in ``prepare``)."""
    if not isinstance(prompt, str):  # token ids are the library's business, not the page's
        raise TypeError(f"the prompt is {type(prompt).__name__}, not text; this demo takes a string")
    check_text(prompt)
    if len(prompt) > limit:
        raise ValueError(f"the prompt is {len(prompt)} characters long; this demo accepts at most {limit}")


def prepare(settings: ColumnSettings, prompt: str) -> Prepared:
    """Validate everything a column needs with the library's own checks (the plugins' fields,
    ``resolve_generation``, ``dllm.encode_prompts``, ``canvas.check_prompts``): ``ValueError`` /
    ``TypeError`` naming the field when something is wrong."""
    import dllm
    from dllm import canvas

    check_prompt(prompt)
    sampler = dllm.samplers.get(settings.sampler, **settings.sampler_params)
    cache = dllm.caches.get(settings.cache, **settings.cache_params)
    model = models.diffusion(settings.model)
    # dllm's one settings resolution (steps follow gen_length; the live colouring reads the trace)
    config = resolve_generation(None, model, **{**settings.generation, "trace": True})
    [ids] = dllm.encode_prompts(model, [prompt])
    canvas.check_prompts(model, [ids], config)
    return Prepared(model, sampler, cache, config, ids)


_batchers = BatcherPool(MAX_BATCHERS)


def shared_batcher(settings, make: Callable[[], object]):
    """The running batch of ``settings`` (a column's or the speculative tab's), made by ``make()`` on
    first use; the least recently used beyond ``MAX_BATCHERS`` is closed once its requests are done."""
    key = type(settings).__name__ + json.dumps(dataclasses.asdict(settings), sort_keys=True, default=repr)
    return _batchers.get(key, make)


def batcher(settings: ColumnSettings, p: Prepared):
    """The denoising ``Batcher`` of a column's settings (``shared_batcher``)."""
    from dllm.serving import Batcher

    return shared_batcher(
        settings, lambda: Batcher(p.model, p.sampler, p.cache, p.config, max_batch=MAX_BATCH)
    )


def run(settings: ColumnSettings, prompt: str):
    """The column's generation without streaming: a ``GenerationResult``."""
    p = prepare(settings, prompt)
    return batcher(settings, p).submit(p.prompt_ids).result()


def decoded_tokens(canvas: list[int], eos_ids, mask_id: int) -> int:
    """Answer tokens decoded so far: committed positions before the first EOS (the final value is
    ``GenerationResult.gen_tokens``)."""
    n = metrics.answer_length(canvas, eos_ids)
    return sum(t != mask_id for t in canvas[:n])


def live_counters(step: int, nfe: int, tokens: int, seconds: float) -> dict:
    return {
        "step": step,
        "nfe": nfe,
        "tokens": tokens,
        "tpf": metrics.tokens_per_forward(tokens, nfe),
        "tps": metrics.throughput(tokens, seconds),
        "seconds": seconds,
    }


def result_counters(result) -> dict:
    return {
        "step": result.steps,
        "nfe": result.nfe,
        "tokens": result.gen_tokens,
        "tpf": result.tokens_per_forward,
        "tps": result.tokens_per_second,
        "seconds": result.seconds,
    }


class _Texts:
    """Per-token display text, cached per run."""

    def __init__(self, model):
        self.model, self.cache = model, {}

    def __call__(self, tok: int) -> str:
        if tok not in self.cache:
            self.cache[tok] = self.model.decode([tok])
        return self.cache[tok]


def _kinds(tokens, steps, mask_id, eos_ids):
    eos = set(eos_ids)
    return [
        "mask" if t == mask_id else ("fill" if s is None else ("eos" if t in eos else "token"))
        for t, s in zip(tokens, steps)
    ]


def final_canvas(model, result) -> Canvas:
    """The finished canvas from the result and its trace (the authoritative step of every position)."""
    text = _Texts(model)
    n = len(result.canvas)
    steps, confs = [None] * n, [None] * n
    for record in result.trace:
        for pos, conf in zip(record.positions, record.confidences):
            if 0 <= pos < n:
                steps[pos], confs[pos] = record.step + 1, conf  # the trace counts steps from 0
    tokens = result.canvas
    return Canvas(
        tokens=[text(t) for t in tokens],
        kinds=_kinds(tokens, steps, model.mask_id, model.eos_ids),
        steps=steps,
        confs=confs,
        block=None,
        max_step=max(1, result.steps),
    )


def empty_canvas(config) -> Canvas:
    n = config.gen_length
    return Canvas(
        tokens=[""] * n,
        kinds=["mask"] * n,
        steps=[None] * n,
        confs=[None] * n,
        block=(0, min(config.block_length, n)),
        max_step=1,
    )


@dataclass
class Outcome:
    """What ``follow`` yields: the snapshots taken since the last outcome and, last, how it ended."""

    snapshots: list
    status: str = "running"  # running | done | stopped | error
    result: object = None
    error: Exception | None = None


_END = object()


def follow(
    submit: Callable[[Callable], object],
    snapshot: Callable[[object, int], object],
    should_stop: Callable[[], bool],
    min_interval: float,
) -> Iterator[Outcome]:
    """Submit one request (``submit(on_step)`` returns it) and follow its row.

    ``snapshot(event, row)`` runs in the engine's thread after every step (it copies what the page
    needs, and should be cheap: it is inside the request's timed decoding); a ``running`` outcome with
    the new snapshots is yielded at most every ``min_interval`` s, then one last outcome (``done`` with
    the result, ``stopped``, or ``error``) with the snapshots not yielded yet. Once ``should_stop()``
    (the Stop button: read after every step and while waiting) is true the request is cancelled, its row
    leaves the batch after the current step, and only the last outcome follows. A refused submission is
    an ``error`` outcome; a consumer that goes away (page closed, generator closed) cancels the request."""
    updates: queue.Queue = queue.Queue()
    stopping = threading.Event()
    submitted: list = []

    def stop():
        stopping.set()
        for request in submitted:
            request.cancel()

    def on_step(event, row):
        if stopping.is_set() or should_stop():
            stop()
            return
        updates.put(snapshot(event, row))

    try:
        request = submit(on_step)
    except Exception as exc:  # noqa: BLE001 — a refused prompt or setting is this run's error
        yield Outcome([], "error", error=exc)
        return
    submitted.append(request)
    request.when_done(lambda _: updates.put(_END))
    pending: list = []
    last_sent = 0.0
    try:
        while True:
            if not stopping.is_set() and should_stop():
                stop()
            try:
                item = updates.get(timeout=0.05)
            except queue.Empty:
                item = None
            if item is _END:
                try:
                    result = request.result()
                except concurrent.futures.CancelledError:
                    yield Outcome(pending, "stopped")
                except Exception as exc:  # noqa: BLE001 — any failure is this run's error, not the app's
                    yield Outcome(pending, "error", error=exc)
                else:
                    yield Outcome(pending, "done", result=result)
                return
            if item is not None:
                pending.append(item)
            now = time.perf_counter()
            if pending and not stopping.is_set() and now - last_sent >= min_interval:
                yield Outcome(pending)
                pending, last_sent = [], now
    finally:
        stop()  # the page went away or the handler was cancelled: the row leaves its batch


def stream(
    settings: ColumnSettings,
    prompt: str,
    should_stop: Callable[[], bool] = lambda: False,
    min_interval: float | None = None,
    with_score: bool = True,
) -> Iterator[Frame]:
    """Frames of one column: the empty canvas, one per step (at most every ``min_interval`` s, default
    ``MIN_INTERVAL``), then the final frame (``done`` with the result, ``error`` or ``stopped`` with the
    partial canvas)."""
    min_interval = MIN_INTERVAL if min_interval is None else min_interval

    try:
        p = prepare(settings, prompt)
    except Exception as exc:  # noqa: BLE001 — any failure is this column's error, not the app's
        yield Frame("error", message=error_message(exc))
        return
    model, config = p.model, p.config
    shown = Frame("running", canvas=empty_canvas(config), counters=live_counters(0, 0, 0, 0.0))
    yield shown

    text = _Texts(model)
    steps_at: list = []
    confs_at: list = []
    started = time.perf_counter()

    def snapshot(event, row) -> Frame:
        st, view = event.state, event.view
        g0, g1 = st.gen_start, int(st.gen_end[row])
        tokens = st.tokens[row, g0:g1].tolist()
        while len(steps_at) < len(tokens):
            steps_at.append(None)
            confs_at.append(None)
        conf = dict(zip(view.cols[row].tolist(), view.conf[row].tolist()))
        step = int(st.steps[row])
        width = event.committed.shape[1]
        for col in event.committed[row, g0 : min(g1, width)].nonzero()[:, 0].tolist():
            steps_at[col] = step
            confs_at[col] = conf.get(col + g0)
        steps = steps_at[: len(tokens)]
        block = (int(st.block_start[row]) - g0, int(st.block_end[row]) - g0) if bool(st.active[row]) else None
        canvas = Canvas(
            tokens=[text(t) for t in tokens],
            kinds=_kinds(tokens, steps, model.mask_id, model.eos_ids),
            steps=list(steps),
            confs=list(confs_at[: len(tokens)]),
            block=block,
            max_step=max(1, step),
        )
        seconds = time.perf_counter() - started
        counters = live_counters(
            step, int(st.nfe[row]), decoded_tokens(tokens, model.eos_ids, model.mask_id), seconds
        )
        return Frame("running", canvas=canvas, counters=counters)

    def submit(on_step):
        return batcher(settings, p).submit(p.prompt_ids, on_step=on_step)

    for out in follow(submit, snapshot, should_stop, min_interval):
        if out.snapshots:
            shown = out.snapshots[-1]
        if out.status == "running":
            yield shown
        elif out.status == "stopped":  # the partial canvas stays on screen
            yield dataclasses.replace(shown, status="stopped", message="stopped by the user")
        elif out.status == "error":
            yield Frame("error", message=error_message(out.error))
        else:
            result = out.result
            yield Frame(
                "done",
                canvas=final_canvas(model, result),
                counters=result_counters(result),
                result=result,
                score=examples.score(prompt, result.text) if with_score else None,
            )


def error_message(exc: Exception) -> str:
    """What a column, the speculative tab and the API show for a failure: the library's own message for
    a refused input (it names the field, file or model), the exception's type too for anything else."""
    if isinstance(exc, (ValueError, TypeError, FileNotFoundError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ---- speculative tab ------------------------------------------------------------------------


@dataclass
class SpeculativeSettings:
    verifier: str = "tiny-ar"
    drafter: str | None = "diffuspec"  # None: plain AR decoding (the baseline)
    drafter_params: dict = field(default_factory=dict)
    length: str | None = None  # None: the drafter's own controller
    length_params: dict = field(default_factory=dict)
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0

    def plain(self) -> SpeculativeSettings:
        """The plain-AR baseline of these settings: the same verifier and generation, no drafter."""
        return dataclasses.replace(self, drafter=None, drafter_params={}, length=None, length_params={})


@dataclass
class SpeculativePrepared:
    verifier: object
    drafter: object  # None: plain AR
    controller: object  # the draft-length controller (None without a drafter)
    config: object  # SpeculativeConfig


def prepare_speculative(settings: SpeculativeSettings) -> SpeculativePrepared:
    """The verifier, drafter, length controller and ``SpeculativeConfig`` of the settings, built with
    the library's own checks (the prompt is checked by the ``Batcher``'s ``submit``)."""
    import dllm
    from dllm.drafters import SpeculativeConfig
    from dllm.drafters import length as lengths
    from dllm.drafters.loop import as_verifier

    config = SpeculativeConfig(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
        trace=True,
    )
    verifier = as_verifier(models.get(settings.verifier))
    if settings.drafter is None:
        if settings.length is not None or settings.length_params or settings.drafter_params:
            raise ValueError("drafter or length-controller parameters given without a drafter")
        return SpeculativePrepared(verifier, None, None, config)
    params = dict(settings.drafter_params)
    if isinstance(params.get("model"), str):  # the shared, loaded-once model
        params["model"] = models.get(params["model"])
    elif "model" not in params:
        default = dllm.drafters._registry.cls(settings.drafter)
        field_default = {f.name: f.default for f in dataclasses.fields(default)}.get("model")
        if isinstance(field_default, str):
            params["model"] = models.get(field_default)
    drafter = dllm.drafters.get(settings.drafter, **params)
    if settings.length is not None:
        controller = lengths.get(settings.length, **settings.length_params)
    elif settings.length_params:
        raise ValueError(f"length_params {settings.length_params} given without a draft-length controller")
    else:  # the drafter's own, as dllm.speculate picks it (DEER's follows its k)
        controller = drafter.default_length()
    return SpeculativePrepared(verifier, drafter, controller, config)


def speculative_batcher(settings: SpeculativeSettings, p: SpeculativePrepared | None = None):
    """The speculative ``Batcher`` of these settings (``shared_batcher``: the columns' LRU), shared by
    every tab run with the same settings; ``settings.plain()`` gives the plain-AR baseline's."""
    from dllm.serving import Batcher

    p = prepare_speculative(settings) if p is None else p
    return shared_batcher(
        settings,
        lambda: Batcher(
            p.verifier, drafter=p.drafter, length=p.controller, config=p.config, max_batch=MAX_BATCH
        ),
    )


def speculative(settings: SpeculativeSettings, prompt: str) -> dict:
    """The tab's two runs without streaming, through the same Batchers: speculative decoding, then
    plain AR decoding with the same verifier: ``{"plain", "spec", "speedup", "identical", "verifier",
    "controller"}``."""
    check_prompt(prompt)
    p = prepare_speculative(settings)
    spec = speculative_batcher(settings, p).submit(prompt).result()
    plain = speculative_batcher(settings.plain()).submit(prompt).result()
    return {
        "plain": plain,
        "spec": spec,
        "verifier": p.verifier,
        "controller": p.controller.name if p.controller is not None else "",
        "speedup": speedup(plain, spec),
        "identical": plain.ids == spec.ids,
    }


def speedup(plain, spec) -> float:
    """Plain AR decoding's seconds over speculative decoding's (0 when there is no time)."""
    return plain.seconds / spec.seconds if spec.seconds > 0 else 0.0


@dataclass
class Round:
    """One round of a row, as its ``RoundEvent`` tells it (copied in the engine's thread)."""

    new: list[int]  # the tokens it committed: accepted draft tokens, then the verifier's own one
    out: list[int]  # the row's output so far (verifier ids)
    accepted: int  # draft tokens accepted
    drafted: int  # draft tokens proposed
    at: float  # perf_counter when the round ended


def _round(event, row) -> Round:
    return Round(event.new[row], event.out[row], event.accepted[row], event.drafted[row], time.perf_counter())


def speculative_live_counters(rounds: list[Round], eos_ids, seconds: float) -> dict:
    """The counters of a run so far, by ``dllm.metrics``' definitions: a round is one verifier forward,
    τ the accepted draft tokens per round, generated tokens those before the first EOS (the final values
    are ``speculative_counters(result)``)."""
    tokens = metrics.answer_length(rounds[-1].out, eos_ids) if rounds else 0
    forwards = len(rounds)
    return {
        "rounds": len(rounds),
        "tau": metrics.mean_accepted_length(sum(r.accepted for r in rounds), len(rounds)),
        "tpvf": metrics.tokens_per_forward(tokens, forwards),
        "tokens": tokens,
        "tps": metrics.throughput(tokens, seconds),
        "seconds": seconds,
    }


def speculative_counters(result) -> dict:
    return {
        "rounds": result.rounds,
        "tau": result.tau,
        "tpvf": result.tokens_per_verifier_forward,
        "tokens": result.gen_tokens,
        "tps": result.tokens_per_second,
        "seconds": result.seconds,
    }


@dataclass(frozen=True)
class Progress:
    """One of the tab's runs as far as it got (a new one per update)."""

    name: str  # "speculative" | "plain AR"
    status: str = "waiting"  # waiting | running | done | stopped | error
    rounds: tuple = ()  # Round per round streamed
    text: str = ""  # the output so far (before the first EOS), decoded with the verifier's tokenizer
    counters: dict = field(default_factory=dict)
    result: object = None  # SpeculativeResult when done
    message: str = ""


@dataclass
class SpeculativeFrame:
    """One update of the speculative tab: both runs as far as they got."""

    status: str  # running | done | error | stopped
    spec: Progress | None = None
    plain: Progress | None = None
    verifier: object = None
    controller: str = ""
    message: str = ""

    @property
    def current(self) -> Progress | None:
        """The run the status is about: the one running, stopped or failed (else the last)."""
        started = [r for r in (self.spec, self.plain) if r is not None and r.status != "waiting"]
        return next((r for r in started if r.status != "done"), started[-1] if started else None)

    @property
    def speedup(self) -> float | None:
        if self.spec is None or self.plain is None or self.plain.result is None or self.spec.result is None:
            return None
        return speedup(self.plain.result, self.spec.result)


def _follow_rounds(
    progress: Progress, batch, prompt: str, verifier, should_stop, min_interval: float
) -> Iterator[Progress]:
    """One run of the tab through its Batcher: its progress after every (throttled) update, the last
    one ``done``, ``stopped`` or ``error``."""
    started = time.perf_counter()
    rounds = list(progress.rounds)
    eos = verifier.eos_ids

    def submit(on_step):
        return batch.submit(prompt, on_step=on_step)

    for out in follow(submit, _round, should_stop, min_interval):
        if out.snapshots:
            rounds += out.snapshots
            last = rounds[-1].out
            progress = dataclasses.replace(
                progress,
                rounds=tuple(rounds),
                text=verifier.decode(last[: metrics.answer_length(last, eos)]),
                counters=speculative_live_counters(rounds, eos, rounds[-1].at - started),
            )
        if out.status == "done":
            result = out.result
            progress = dataclasses.replace(
                progress,
                status="done",
                result=result,
                text=result.text,
                counters=speculative_counters(result),
            )
        elif out.status == "error":
            progress = dataclasses.replace(progress, status="error", message=error_message(out.error))
        else:
            progress = dataclasses.replace(
                progress,
                status=out.status,
                counters=progress.counters or speculative_live_counters([], eos, 0.0),
                message="stopped by the user" if out.status == "stopped" else "",
            )
        yield progress


def speculative_stream(
    settings: SpeculativeSettings,
    prompt: str,
    should_stop: Callable[[], bool] = lambda: False,
    min_interval: float | None = None,
) -> Iterator[SpeculativeFrame]:
    """The speculative tab's updates: speculative decoding streamed round by round through the
    settings' shared ``Batcher``, then the plain-AR baseline (``settings.plain()``'s Batcher, the same
    path) for the speedup; the last frame is ``done`` (both results), ``stopped`` (what was produced
    so far; the baseline does not start after a stop) or ``error`` (the library's message). Updates
    come at most every ``min_interval`` s (default ``SPECULATIVE_INTERVAL``)."""
    min_interval = SPECULATIVE_INTERVAL if min_interval is None else min_interval
    try:
        check_prompt(prompt)
        p = prepare_speculative(settings)
        batchers = [speculative_batcher(settings, p), speculative_batcher(settings.plain())]
    except Exception as exc:  # noqa: BLE001 — any failure is the tab's error, not the app's
        yield SpeculativeFrame("error", message=error_message(exc))
        return
    frame = SpeculativeFrame(
        "running",
        Progress("speculative"),
        Progress("plain AR"),
        p.verifier,
        p.controller.name if p.controller is not None else "",
    )
    for name, batch in zip(("spec", "plain"), batchers):
        if should_stop():  # pressed as the speculative run ended: the baseline does not start
            yield dataclasses.replace(frame, status="stopped", message="stopped by the user")
            return
        for progress in _follow_rounds(
            getattr(frame, name), batch, prompt, p.verifier, should_stop, min_interval
        ):
            frame = dataclasses.replace(frame, **{name: progress})
            if progress.status in ("stopped", "error"):
                yield dataclasses.replace(frame, status=progress.status, message=progress.message)
                return
            if progress.status == "running" or (progress.status == "done" and name == "spec"):
                yield frame  # the speculative result shows while the baseline runs
    yield dataclasses.replace(frame, status="done")
