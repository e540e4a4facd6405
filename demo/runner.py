"""What a column and the speculative tab run: settings -> a validated generation, streamed step by step.

No Gradio here. ``stream`` runs ``dllm.generate`` in a worker thread and yields ``Frame``s built from
the loop's per-step callback (``StepEvent``); counts come from ``dllm.metrics`` only. ``run`` is the
same generation without streaming (the API endpoint and the tests compare it with ``dllm.generate``).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from dllm import metrics

from . import examples, models
from .render import Canvas

MAX_PROMPT_CHARS = 2000
DEFAULT_GENERATION = {"gen_length": 64, "block_length": 32}


class Stopped(Exception):
    """Raised inside the generation's callback when the user pressed Stop."""


@dataclass
class ColumnSettings:
    model: str = "tiny-llada"
    sampler: str = "llada"
    sampler_params: dict = field(default_factory=dict)
    cache: str = "none"
    cache_params: dict = field(default_factory=dict)
    generation: dict = field(default_factory=lambda: dict(DEFAULT_GENERATION))

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


def check_prompt(prompt: str, limit: int = MAX_PROMPT_CHARS) -> None:
    if not prompt or not prompt.strip():
        raise ValueError("the prompt is empty: type one or pick an example")
    if len(prompt) > limit:
        raise ValueError(f"the prompt is {len(prompt)} characters long; this demo accepts at most {limit}")


def _plugin(registry, name, params):
    try:
        return registry.get(name, **params)
    except TypeError as exc:  # a value of the wrong type reaching a comparison in __post_init__
        raise ValueError(f"bad {registry._registry.kind} parameter for {name!r}: {exc}") from exc


def prepare(settings: ColumnSettings, prompt: str) -> Prepared:
    """Validate everything a column needs; ValueError (naming the field) when something is wrong."""
    import dllm

    check_prompt(prompt)
    sampler = _plugin(dllm.samplers, settings.sampler, settings.sampler_params)
    cache = _plugin(dllm.caches, settings.cache, settings.cache_params)
    config = dllm.GenerationConfig(**settings.generation)
    model = models.diffusion(settings.model)
    ids = model.encode(prompt)
    if len(ids) + config.gen_length > model.max_length:
        raise ValueError(
            f"the prompt is {len(ids)} tokens; with gen_length {config.gen_length} it exceeds "
            f"{settings.model}'s context of {model.max_length} tokens"
        )
    return Prepared(model, sampler, cache, config, ids)


def run(settings: ColumnSettings, prompt: str):
    """The column's generation without streaming: a ``GenerationResult``."""
    import dllm

    p = prepare(settings, prompt)
    [result] = dllm.generate(p.model, [p.prompt_ids], sampler=p.sampler, cache=p.cache, config=p.config)
    return result


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


def stream(
    settings: ColumnSettings,
    prompt: str,
    should_stop: Callable[[], bool] = lambda: False,
    min_interval: float = 0.05,
    with_score: bool = True,
) -> Iterator[Frame]:
    """Frames of one column: the empty canvas, one per step (at most every ``min_interval`` s), then the
    final frame (``done`` with the result, ``error`` or ``stopped``)."""
    import dllm

    try:
        p = prepare(settings, prompt)
    except Exception as exc:  # noqa: BLE001 — any failure is this column's error, not the app's
        yield Frame("error", message=_message(exc))
        return
    model, config = p.model, dataclasses.replace(p.config, trace=True)
    yield Frame("running", canvas=empty_canvas(config), counters=live_counters(0, 0, 0, 0.0))

    updates: queue.Queue = queue.Queue()
    local_stop = threading.Event()
    text = _Texts(model)
    last_view: dict = {}
    observe = p.sampler.observe

    def observing(view, decision):  # keep the step's confidences for the live colouring
        last_view["conf"] = dict(zip(view.cols[0].tolist(), view.conf[0].tolist()))
        return observe(view, decision)

    p.sampler.observe = observing  # a fresh instance per run: nothing else sees this
    steps_at: list = []
    confs_at: list = []
    started = time.perf_counter()

    def callback(event):
        if local_stop.is_set() or should_stop():
            raise Stopped()
        st = event.state
        g0, g1 = st.gen_start, int(st.gen_end[0])
        tokens = st.tokens[0, g0:g1].tolist()
        while len(steps_at) < len(tokens):
            steps_at.append(None)
            confs_at.append(None)
        conf = last_view.get("conf", {})
        width = event.committed.shape[1]
        for col in event.committed[0, g0 : min(g1, width)].nonzero()[:, 0].tolist():
            steps_at[col] = event.step
            confs_at[col] = conf.get(col + g0)
        steps = steps_at[: len(tokens)]
        block = (int(st.block_start[0]) - g0, int(st.block_end[0]) - g0) if bool(st.active[0]) else None
        canvas = Canvas(
            tokens=[text(t) for t in tokens],
            kinds=_kinds(tokens, steps, model.mask_id, model.eos_ids),
            steps=list(steps),
            confs=list(confs_at[: len(tokens)]),
            block=block,
            max_step=max(1, event.step),
        )
        seconds = time.perf_counter() - started
        updates.put(
            Frame(
                "running",
                canvas=canvas,
                counters=live_counters(
                    int(st.steps[0]),
                    int(st.nfe[0]),
                    decoded_tokens(tokens, model.eos_ids, model.mask_id),
                    seconds,
                ),
            )
        )

    def work():
        try:
            [result] = dllm.generate(
                model, [p.prompt_ids], sampler=p.sampler, cache=p.cache, config=config, callback=callback
            )
            score = examples.score(prompt, result.text) if with_score else None
            updates.put(
                Frame(
                    "done",
                    canvas=final_canvas(model, result),
                    counters=result_counters(result),
                    result=result,
                    score=score,
                )
            )
        except Stopped:
            updates.put(Frame("stopped", message="stopped by the user"))
        except Exception as exc:  # noqa: BLE001
            updates.put(Frame("error", message=_message(exc)))

    worker = threading.Thread(target=work, name="dllm-demo-column", daemon=True)
    worker.start()
    last_sent, pending, shown = 0.0, None, None
    try:
        while True:
            try:
                frame = updates.get(timeout=0.05)
            except queue.Empty:
                frame = None
            if frame is not None and frame.status != "running":
                partial = pending or shown
                if frame.status == "stopped" and partial is not None:  # keep the partial canvas on screen
                    frame.canvas, frame.counters = partial.canvas, partial.counters
                yield frame
                return
            if frame is not None:
                pending = frame
            now = time.perf_counter()
            if pending is not None and now - last_sent >= min_interval:
                yield pending
                shown, pending, last_sent = pending, None, now
    finally:
        local_stop.set()  # the page went away or the handler was cancelled: stop the worker too


def _message(exc: Exception) -> str:
    if isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, FileNotFoundError):
        return f"not found: {exc}"
    return f"{type(exc).__name__}: {exc}"


# ---- speculative tab ------------------------------------------------------------------------


@dataclass
class SpeculativeSettings:
    verifier: str = "tiny-ar"
    drafter: str = "diffuspec"
    drafter_params: dict = field(default_factory=dict)
    length: str | None = None  # None: the drafter's own controller
    length_params: dict = field(default_factory=dict)
    max_new_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0


def speculative(settings: SpeculativeSettings, prompt: str) -> dict:
    """Plain AR decoding and speculative decoding of one prompt, in that order, with the same verifier:
    ``{"plain", "spec", "speedup", "identical", "verifier"}``."""
    import dllm
    from dllm.drafters import SpeculativeConfig
    from dllm.drafters import length as lengths
    from dllm.drafters.loop import as_verifier

    check_prompt(prompt)
    config = SpeculativeConfig(
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
        trace=True,
    )
    verifier = as_verifier(models.get(settings.verifier))
    params = dict(settings.drafter_params)
    if isinstance(params.get("model"), str):  # the shared, loaded-once model
        params["model"] = models.get(params["model"])
    elif "model" not in params:
        default = dllm.drafters._registry.cls(settings.drafter)
        field_default = {f.name: f.default for f in dataclasses.fields(default)}.get("model")
        if isinstance(field_default, str):
            params["model"] = models.get(field_default)
    drafter = _plugin(dllm.drafters, settings.drafter, params)
    if settings.length:
        controller = _plugin(lengths, settings.length, settings.length_params)
    else:
        controller = _plugin(lengths, type(drafter.default_length()).name, settings.length_params)
    [plain] = dllm.speculate(verifier, prompt, drafter=None, config=config)
    [spec] = dllm.speculate(verifier, prompt, drafter=drafter, length=controller, config=config)
    return {
        "plain": plain,
        "spec": spec,
        "verifier": verifier,
        "controller": controller.name,
        "speedup": plain.seconds / spec.seconds if spec.seconds > 0 else 0.0,
        "identical": plain.ids == spec.ids,
    }
