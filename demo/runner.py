"""What a column and the speculative tab run: settings -> a validated generation, streamed step by step.

No Gradio here. Columns with the same settings share one continuous batch, whoever runs them: each
distinct setting (model, sampler, cache, their parameters, generation) has a ``dllm.serving.Batcher``
(at most ``MAX_BATCH`` rows; the ``MAX_BATCHERS`` most recently used are kept), so concurrent users'
prompts decode in one batch, joining and leaving it as they come and finish, each with the tokens of
its run alone. ``stream`` submits the prompt and yields ``Frame``s built from its row's per-step
events (``StepEvent``); counts come from ``dllm.metrics`` only. ``run`` is the same generation without
streaming (the API endpoint and the tests compare it with ``dllm.generate``).
"""

from __future__ import annotations

import collections
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

from . import examples, models
from .render import Canvas

MAX_PROMPT_CHARS = 2000
DEFAULT_GENERATION = {"gen_length": 64, "block_length": 32}
MAX_BATCH = 8  # rows of one setting's running batch
MAX_BATCHERS = 8  # settings whose batch worker is kept


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


_batchers: collections.OrderedDict = collections.OrderedDict()
_batchers_lock = threading.Lock()


def batcher(settings: ColumnSettings, p: Prepared):
    """The running batch of these settings (created on first use; the least recently used beyond
    ``MAX_BATCHERS`` is closed once its requests are done)."""
    from dllm.serving import Batcher

    key = json.dumps(dataclasses.asdict(settings), sort_keys=True, default=repr)
    with _batchers_lock:
        if key in _batchers:
            _batchers.move_to_end(key)
            return _batchers[key]
        _batchers[key] = Batcher(p.model, p.sampler, p.cache, p.config, max_batch=MAX_BATCH)
        while len(_batchers) > MAX_BATCHERS:
            _, old = _batchers.popitem(last=False)
            threading.Thread(target=old.close, name="dllm-demo-close", daemon=True).start()
        return _batchers[key]


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


def stream(
    settings: ColumnSettings,
    prompt: str,
    should_stop: Callable[[], bool] = lambda: False,
    min_interval: float = 0.05,
    with_score: bool = True,
) -> Iterator[Frame]:
    """Frames of one column: the empty canvas, one per step (at most every ``min_interval`` s), then the
    final frame (``done`` with the result, ``error`` or ``stopped``)."""

    try:
        p = prepare(settings, prompt)
    except Exception as exc:  # noqa: BLE001 — any failure is this column's error, not the app's
        yield Frame("error", message=error_message(exc))
        return
    model, config = p.model, p.config
    yield Frame("running", canvas=empty_canvas(config), counters=live_counters(0, 0, 0, 0.0))

    updates: queue.Queue = queue.Queue()
    local_stop = threading.Event()
    text = _Texts(model)
    steps_at: list = []
    confs_at: list = []
    started = time.perf_counter()

    def on_step(event, row):
        if local_stop.is_set() or should_stop():
            request.cancel()
            return
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
        updates.put(Frame("running", canvas=canvas, counters=counters))

    def finished(request):
        try:
            result = request.result()
        except concurrent.futures.CancelledError:
            updates.put(Frame("stopped", message="stopped by the user"))
            return
        except Exception as exc:  # noqa: BLE001 — any failure is this column's error, not the app's
            updates.put(Frame("error", message=error_message(exc)))
            return
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

    try:
        request = batcher(settings, p).submit(p.prompt_ids, on_step=on_step)
    except Exception as exc:  # noqa: BLE001
        yield Frame("error", message=error_message(exc))
        return
    request.when_done(finished)
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
        local_stop.set()  # the page went away or the handler was cancelled: the row leaves its batch
        request.cancel()


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
    drafter = dllm.drafters.get(settings.drafter, **params)
    if settings.length is not None:
        controller = lengths.get(settings.length, **settings.length_params)
    elif settings.length_params:
        raise ValueError(f"length_params {settings.length_params} given without a draft-length controller")
    else:  # the drafter's own, as dllm.speculate picks it (DEER's follows its k)
        controller = drafter.default_length()
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
