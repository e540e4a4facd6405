"""The Gradio page: 2–4 decoding configurations side by side, streamed live, and a speculative tab.

Each column is its own queued event (started together by "Run all", bounded by the queue's
concurrency limit ``decode``); its handler is a generator that yields the canvas after every step.
Widgets for sampler / cache / drafter / length-controller parameters are generated from the plugins'
config dataclasses (``widgets``); a bad value shows an error in its own column only.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from collections import OrderedDict

import gradio as gr

import dllm
from dllm.drafters import length as lengths

from . import examples, models, render, runner, widgets

MAX_COLUMNS = 4
DEFAULT_COLUMNS = 2
COLUMN_DEFAULTS = [
    ("tiny-llada", "llada", "none"),
    ("tiny-llada", "fast-dllm", "none"),
    ("tiny-llada", "localleap", "prefix"),
    ("tiny-dream", "fast-dllm", "dual"),
]
GENERATION_SHOWN = ("gen_length", "block_length")  # the rest sit in "more generation settings"
DRAFTER_DEFAULT_LENGTH = "(the drafter's default)"

_LISTENER = inspect.signature(gr.Button.click).parameters
PRIVATE = {"api_visibility": "private"} if "api_visibility" in _LISTENER else {"show_api": False}


# ---- stop requests --------------------------------------------------------------------------
_STOPPED: OrderedDict = OrderedDict()
_STOP_LOCK = threading.Lock()


def request_stop(run_id: str) -> None:
    if run_id:
        with _STOP_LOCK:
            _STOPPED[run_id] = True
            while len(_STOPPED) > 10000:
                _STOPPED.popitem(last=False)


def stop_requested(run_id: str) -> bool:
    return run_id in _STOPPED


# ---- widgets ---------------------------------------------------------------------------------


def make_widget(spec: widgets.ParamSpec, elem_id: str | None = None):
    common = dict(label=spec.label, elem_id=elem_id, min_width=100)
    value = spec.widget_value()
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if spec.kind in ("int", "float") and not spec.optional:  # an empty gr.Number reads 0, not None
        # no precision: Gradio would round 2.5 to 2 before ``widgets.coerce`` could refuse it
        return gr.Number(value=value, step=1 if spec.kind == "int" else 0.01, **common)
    if spec.kind in ("choice", "optional-bool"):
        return gr.Dropdown(choices=list(spec.choices), value=value, allow_custom_value=spec.custom, **common)
    placeholder = {"json": f"JSON {spec.container}", "int": "integer", "float": "number"}.get(spec.kind)
    if spec.optional:
        placeholder = f"{placeholder or 'text'} (empty = None)"
    return gr.Textbox(value=value, placeholder=placeholder, lines=1, max_lines=1, **common)


class PluginPicker:
    """A dropdown of a registry's plugins and, for each plugin, a group of its parameter widgets
    (the chosen plugin's group is visible)."""

    def __init__(self, registry, label: str, value: str, prefix: str, names=None, extra_choices=()):
        self.registry = registry
        self.names = list(names if names is not None else registry.names())
        self.specs = {name: widgets.specs(registry, name) for name in self.names}
        self.dropdown = gr.Dropdown(
            choices=list(extra_choices) + self.names, value=value, label=label, elem_id=f"{prefix}"
        )
        self.groups, self.inputs = [], []
        for name in self.names:
            with gr.Group(visible=name == value) as group:
                if not self.specs[name]:
                    gr.Markdown(f"*{name}: no parameters*")
                with gr.Row():
                    for spec in self.specs[name]:
                        self.inputs.append(make_widget(spec, f"{prefix}-{name}-{spec.name}"))
            self.groups.append(group)
        self.dropdown.change(
            lambda chosen: [gr.update(visible=chosen == n) for n in self.names],
            inputs=self.dropdown,
            outputs=self.groups,
            queue=False,
            **PRIVATE,
        )

    def params(self, name: str, values) -> dict:
        """The chosen plugin's parameters (those differing from the defaults) from all widget values."""
        offset = 0
        for n in self.names:
            count = len(self.specs[n])
            if n == name:
                return widgets.collect(self.specs[n], values[offset : offset + count])
            offset += count
        return {}


# ---- columns ---------------------------------------------------------------------------------


class ColumnUI:
    def __init__(self, index: int):
        self.index = index
        model, sampler, cache = COLUMN_DEFAULTS[index]
        with gr.Column(visible=index < DEFAULT_COLUMNS, min_width=260, elem_id=f"column-{index}") as self.box:
            gr.Markdown(f"### Column {index + 1}")
            self.model = gr.Dropdown(
                choices=models.shipped("diffusion"),
                value=model,
                allow_custom_value=True,
                label="model (shipped, folder or hub id)",
                elem_id=f"model-{index}",
            )
            self.sampler = PluginPicker(dllm.samplers, "sampler", sampler, f"sampler-{index}")
            self.cache = PluginPicker(dllm.caches, "cache", cache, f"cache-{index}")
            self.generation_specs = widgets.generation_specs()
            shown = [s for s in self.generation_specs if s.name in GENERATION_SHOWN]
            hidden = [s for s in self.generation_specs if s.name not in GENERATION_SHOWN]
            self.generation_inputs = {}
            with gr.Row():
                for spec in shown:
                    widget = make_widget(dataclass_default(spec), f"{spec.name}-{index}")
                    self.generation_inputs[spec.name] = widget
            with gr.Accordion("more generation settings", open=False):
                for spec in hidden:
                    self.generation_inputs[spec.name] = make_widget(spec, f"{spec.name}-{index}")
            self.counters = gr.HTML(render.counters_html("idle"), elem_id=f"counters-{index}")
            self.canvas = gr.HTML("", elem_id=f"canvas-{index}")
            self.text = gr.Textbox(label="final text", interactive=False, lines=2, elem_id=f"text-{index}")
            with gr.Accordion("unmasking order (step × position)", open=True):
                self.heatmap = gr.HTML("", elem_id=f"heatmap-{index}")
            self.result = gr.State(None)

    @property
    def setting_inputs(self) -> list:
        return (
            [self.model, self.sampler.dropdown, self.cache.dropdown]
            + self.sampler.inputs
            + self.cache.inputs
            + [self.generation_inputs[s.name] for s in self.generation_specs]
        )

    @property
    def outputs(self) -> list:
        return [self.counters, self.canvas, self.text, self.heatmap, self.result]

    def settings(self, values) -> runner.ColumnSettings:
        model, sampler, cache, *rest = values
        ns, nc = len(self.sampler.inputs), len(self.cache.inputs)
        sampler_values, cache_values, gen_values = rest[:ns], rest[ns : ns + nc], rest[ns + nc :]
        generation = widgets.collect(self.generation_specs, gen_values)
        for name in GENERATION_SHOWN:  # always explicit, so the label shows them
            generation[name] = widgets.coerce(
                next(s for s in self.generation_specs if s.name == name),
                gen_values[[s.name for s in self.generation_specs].index(name)],
            )
        return runner.ColumnSettings(
            model=(model or "").strip(),
            sampler=sampler,
            sampler_params=self.sampler.params(sampler, sampler_values),
            cache=cache,
            cache_params=self.cache.params(cache, cache_values),
            generation=generation,
        )

    def handler(self):
        index = self.index

        def run_column(n_columns, prompt, newline, colour_by, run_id, *values):
            if index >= int(n_columns or DEFAULT_COLUMNS) or not run_id:
                yield [gr.skip()] * 5
                return
            entry = {"column": index + 1, "model": values[0], "config": "", "status": "error"}
            try:
                settings = self.settings(values)
            except (ValueError, TypeError) as exc:
                entry["message"] = runner.error_message(exc)
                yield [render.error_html(entry["message"], "bad setting"), "", "", "", entry]
                return
            entry.update(model=settings.model, config=settings.label())
            text_prompt = examples.finalize(prompt, newline)
            for frame in runner.stream(settings, text_prompt, should_stop=lambda: stop_requested(run_id)):
                yield self.frame_outputs(frame, entry, colour_by)

        return run_column

    @staticmethod
    def frame_outputs(frame: runner.Frame, entry: dict, colour_by: str):
        colour_by = colour_by if colour_by in ("step", "confidence") else "step"
        canvas = render.canvas_html(frame.canvas, colour_by) if frame.canvas is not None else ""
        entry = dict(entry, status=frame.status, message=frame.message)
        if frame.status == "running":
            return [render.counters_html("running", frame.counters), canvas, "", "", entry]
        if frame.status == "done":
            r = frame.result
            entry.update(
                steps=r.steps,
                nfe=r.nfe,
                tpf=r.tokens_per_forward,
                tps=r.tokens_per_second,
                seconds=r.seconds,
                score=frame.score,
                text=r.text,
                gen_tokens=r.gen_tokens,
            )
            return [
                render.counters_html("done", frame.counters),
                canvas,
                r.text,
                render.heatmap_html(frame.canvas, colour_by),
                entry,
            ]
        counters = render.counters_html(frame.status, frame.counters, message=frame.message)
        return [counters, canvas, "", "", entry]


def dataclass_default(spec: widgets.ParamSpec) -> widgets.ParamSpec:
    """The demo's default for gen / block length (shorter than the library's, for a CPU)."""
    import dataclasses

    if spec.name in runner.DEFAULT_GENERATION:
        return dataclasses.replace(spec, default=runner.DEFAULT_GENERATION[spec.name])
    return spec


def summary(n_columns, *entries):
    rows = [e for i, e in enumerate(entries) if i < int(n_columns or DEFAULT_COLUMNS) and e]
    return render.summary_rows(rows)


def start_run(prompt, newline):
    """Validate the shared prompt; a refused prompt stops every column before it starts."""
    text = examples.finalize(prompt, newline)
    try:
        runner.check_prompt(text)
    except ValueError as exc:
        gr.Warning(str(exc))
        return (
            "",
            f'<div class="dl-refused" data-refused="1">Prompt refused: {render.html.escape(str(exc))}</div>',
            [],
        )
    run_id = uuid.uuid4().hex
    example = examples.lookup(text)
    note = (
        f"task example: {example.task} (scored with the task's own scorer)"
        if example
        else "free prompt (no scorer)"
    )
    return run_id, f'<div class="dl-run" data-run="{run_id}">{render.html.escape(note)}</div>', []


# ---- speculative tab -------------------------------------------------------------------------


class SpeculativeUI:
    def __init__(self, default_prompt: str):
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                self.verifier = gr.Dropdown(
                    choices=models.shipped("causal"),
                    value="tiny-ar",
                    allow_custom_value=True,
                    label="verifier (causal LM: shipped, folder or hub id)",
                    elem_id="spec-verifier",
                )
                self.drafter = PluginPicker(dllm.drafters, "drafter", "diffuspec", "spec-drafter")
                self.length = PluginPicker(
                    lengths,
                    "draft-length controller",
                    DRAFTER_DEFAULT_LENGTH,
                    "spec-length",
                    extra_choices=[DRAFTER_DEFAULT_LENGTH],
                )
                with gr.Row():
                    # no precision: Gradio would round 2.5 to 2 before ``widgets.coerce`` could refuse it
                    self.max_new_tokens = gr.Number(
                        value=48, step=1, label="max_new_tokens", min_width=100, elem_id="spec-max-new-tokens"
                    )
                    self.temperature = gr.Number(
                        value=0.0, label="temperature", min_width=100, elem_id="spec-temperature"
                    )
                    self.seed = gr.Number(value=0, step=1, label="seed", min_width=100, elem_id="spec-seed")
            with gr.Column(scale=2):
                self.prompt = gr.Textbox(value=default_prompt, label="prompt", lines=2, elem_id="spec-prompt")
                gr.Examples(
                    [[e.prompt] for e in examples.default_examples()],
                    inputs=[self.prompt],
                    label="task examples",
                )
                with gr.Row():
                    self.run = gr.Button("Run speculative vs plain AR", variant="primary", elem_id="spec-run")
                    self.stop = gr.Button("Stop", variant="stop", elem_id="spec-stop")
                self.status = gr.HTML(render.counters_html("idle"), elem_id="spec-status")
                self.table = gr.Dataframe(
                    headers=render.SPECULATIVE_HEADERS,
                    value=[],
                    interactive=False,
                    label="same click: plain AR decoding and speculative decoding",
                    elem_id="spec-table",
                )
                self.texts = gr.Textbox(label="outputs", interactive=False, lines=3, elem_id="spec-text")
                self.rounds = gr.HTML("", elem_id="spec-rounds")
                self.run_id = gr.State("")  # this click's id, for the Stop button (request_stop)
                self.result = gr.State(None)  # the last update's runs as dicts (for tests and clients)

    @property
    def inputs(self) -> list:
        return (
            [
                self.verifier,
                self.drafter.dropdown,
                self.length.dropdown,
                self.max_new_tokens,
                self.temperature,
                self.seed,
                self.prompt,
                self.newline,
                self.run_id,
            ]
            + self.drafter.inputs
            + self.length.inputs
        )

    @property
    def outputs(self) -> list:
        return [self.status, self.table, self.texts, self.rounds, self.result]

    def settings(
        self, verifier, drafter, length, max_new_tokens, temperature, seed, *values
    ) -> runner.SpeculativeSettings:
        """The settings of the tab's widget values (the drafter's and the controller's widgets last)."""
        nd = len(self.drafter.inputs)
        default_length = length == DRAFTER_DEFAULT_LENGTH
        return runner.SpeculativeSettings(
            verifier=(verifier or "").strip(),
            drafter=drafter,
            drafter_params=self.drafter.params(drafter, values[:nd]),
            length=None if default_length else length,
            length_params={} if default_length else self.length.params(length, values[nd:]),
            max_new_tokens=widgets.coerce(_INT("max_new_tokens"), max_new_tokens),
            temperature=widgets.coerce(_FLOAT("temperature"), temperature),
            seed=widgets.coerce(_INT("seed"), seed),
        )

    def handler(self):
        def run_speculative(
            verifier, drafter, length, max_new_tokens, temperature, seed, prompt, newline, run_id, *values
        ):
            yield render.counters_html("running", message=""), [], "", "", None
            try:
                settings = self.settings(
                    verifier, drafter, length, max_new_tokens, temperature, seed, *values
                )
            except Exception as exc:  # noqa: BLE001 — shown in the tab
                yield render.error_html(runner.error_message(exc)), [], "", "", None
                return
            text_prompt = examples.finalize(prompt, newline)
            frames = runner.speculative_stream(
                settings, text_prompt, should_stop=lambda: stop_requested(run_id)
            )
            for frame in frames:
                yield self.frame_outputs(frame, drafter, text_prompt)

        return run_speculative

    @staticmethod
    def frame_outputs(frame: runner.SpeculativeFrame, drafter: str, prompt: str) -> list:
        """The tab's outputs for one update: status (live counters of the run going on, the summary
        when done), the table of finished runs, both texts so far, and the rounds (live while the
        speculative run streams, its trace once it is done)."""
        if frame.status == "error":
            return [render.error_html(frame.message), [], "", "", None]
        spec, plain, decode = frame.spec, frame.plain, frame.verifier.decode
        speedup = frame.speedup
        names = {"speculative": f"{drafter} ({frame.controller})", "plain AR": "plain AR (no drafter)"}
        done = [r for r in (plain, spec) if r.result is not None]
        rows = render.speculative_table(
            [
                {"name": names[r.name], "result": r.result, "speedup": speedup if r is spec else 1.0}
                for r in done
            ]
        )
        texts = f"speculative: {spec.text}" + (
            f"\nplain AR:    {plain.text}" if plain.status != "waiting" else ""
        )
        rounds = (
            render.rounds_html(spec.result.trace, decode)
            if spec.result is not None
            else render.live_rounds_html(spec.rounds, decode)
        )
        state = {
            "status": frame.status,
            **{
                key: {"status": r.status, "text": r.text, "counters": r.counters}
                | ({"result": r.result.to_dict()} if r.result is not None else {})
                for key, r in (("spec", spec), ("plain", plain))
            },
            "speedup": speedup,
        }
        current = frame.current
        if frame.status != "done":
            phase = {"speculative": "speculative decoding", "plain AR": "plain AR baseline (for the speedup)"}
            note = phase[current.name] if current is not None else ""
            if frame.status == "stopped":
                note = (
                    f"stopped by the user during the {note}: what was produced so far is shown"
                    if current is not None
                    else "stopped by the user before decoding started"
                )
            counters = current.counters if current is not None else {}
            status = render.counters_html(frame.status, counters, message=note)
            return [status, rows, texts, rounds, state]
        result = spec.result
        score = examples.score(prompt, result.text)
        identical = plain.result.ids == result.ids
        verdict = "identical to plain AR" if identical else "differs from plain AR (sampling)"
        message = (
            f"τ {result.tau:.2f} · tokens/verifier forward {result.tokens_per_verifier_forward:.2f} · "
            f"speedup ×{speedup:.2f} over plain AR · output {verdict}"
            + (f" · correct: {render.correctness_text(score)}" if score is not None else "")
        )
        status = render.counters_html("done", runner.speculative_counters(result)).replace(
            "</div>",
            f'<div class="dl-spec-summary" data-tau="{result.tau}" data-speedup="{speedup}">'
            f"{render.html.escape(message)}</div></div>",
            1,
        )
        return [status, rows, texts, rounds, dict(state, identical=identical, score=score)]


def _INT(name):
    return widgets.ParamSpec(owner="SpeculativeConfig", name=name, kind="int", default=0)


def _FLOAT(name):
    return widgets.ParamSpec(owner="SpeculativeConfig", name=name, kind="float", default=0.0)


# ---- API (gradio_client) ---------------------------------------------------------------------


def api_generate(
    prompt: str,
    model: str = "tiny-llada",
    sampler: str = "llada",
    sampler_params: dict | None = None,
    cache: str = "none",
    cache_params: dict | None = None,
    gen_length: int = runner.DEFAULT_GENERATION["gen_length"],
    block_length: int = runner.DEFAULT_GENERATION["block_length"],
) -> dict:
    """One generation, as a column runs it (no streaming): text and the dllm.metrics counts.

    The values go to the library as they arrive (no int() / dict() here: 16.0 or "abc" is refused by
    ``GenerationConfig`` as ``dllm.generate`` refuses it); any refusal reaches the client as
    ``gr.Error`` with the library's message, not Gradio's generic one."""
    try:
        settings = runner.ColumnSettings(
            model=model,
            sampler=sampler,
            sampler_params={} if sampler_params is None else sampler_params,
            cache=cache,
            cache_params={} if cache_params is None else cache_params,
            generation={"gen_length": gen_length, "block_length": block_length},
        )
        result = runner.run(settings, prompt)
    except Exception as exc:  # noqa: BLE001 — every failure is the caller's message
        raise gr.Error(runner.error_message(exc)) from exc
    return result.to_dict()


# ---- the page --------------------------------------------------------------------------------

HEAD_JS = """
() => { document.body.classList.add('dl-step-mode'); }
"""
COLOUR_JS = """
(mode) => { document.body.classList.toggle('dl-conf-mode', mode === 'confidence');
            document.body.classList.toggle('dl-step-mode', mode !== 'confidence'); return []; }
"""


def build_app(concurrency: int = 4, max_queue: int = 64) -> gr.Blocks:
    """The demo as a ``gr.Blocks`` (queued: at most ``concurrency`` generations at a time, ``max_queue``
    waiting)."""
    defaults = examples.default_examples()
    blocks_kwargs = {} if _CSS_IN_LAUNCH else {"css": render.CSS}
    with gr.Blocks(title="dllm demo", **blocks_kwargs) as app:
        gr.Markdown(
            "## dllm — diffusion LM decoding, side by side\nMasks (**M**) turn into tokens step by step; "
            "tokens are coloured by the step that committed them (or by confidence); the orange outline "
            "is the current block. Each column runs on its own; *Run all* starts them together."
        )
        with gr.Tabs():
            with gr.Tab("Side by side", id="side"):
                with gr.Row():
                    prompt = gr.Textbox(
                        value=defaults[0].prompt,
                        label="prompt (shared by every column)",
                        lines=2,
                        scale=4,
                        elem_id="prompt",
                    )
                    with gr.Column(scale=2, min_width=280):
                        with gr.Row():
                            n_columns = gr.Radio(
                                [2, 3, 4],
                                value=DEFAULT_COLUMNS,
                                label="columns",
                                elem_id="n-columns",
                                min_width=120,
                            )
                            colour_by = gr.Radio(
                                ["step", "confidence"],
                                value="step",
                                label="colour tokens by",
                                elem_id="colour-by",
                                min_width=140,
                            )
                        newline = gr.Checkbox(
                            value=True, label="end the prompt with a newline (task format)", elem_id="newline"
                        )
                        with gr.Row():
                            run_all = gr.Button("Run all", variant="primary", elem_id="run-all")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop")
                with gr.Row():
                    gr.Examples(
                        [[e.prompt] for e in defaults],
                        inputs=[prompt],
                        label="task examples (waiting line, sudoku, arithmetic)",
                    )
                    with gr.Column(min_width=200):
                        task = gr.Dropdown(
                            choices=_task_names(),
                            value="reverse",
                            label="or draw a new example of",
                            elem_id="task",
                        )
                        draw = gr.Button("New example", size="sm", elem_id="draw")
                draws = gr.State(0)
                run_status = gr.HTML("", elem_id="run-status")
                gr.HTML(render.legend_html())
                with gr.Row(equal_height=False):
                    columns = [ColumnUI(i) for i in range(MAX_COLUMNS)]
                table = gr.Dataframe(
                    headers=render.SUMMARY_HEADERS,
                    value=[],
                    interactive=False,
                    label="summary",
                    elem_id="summary",
                    wrap=True,
                )
            with gr.Tab("Speculative", id="speculative"):
                gr.Markdown(
                    "A drafter proposes, the autoregressive verifier checks every draft token "
                    "in one forward. "
                    "The rounds stream live; plain AR decoding runs after it, in the same click and "
                    "through the same batching path, for the speedup."
                )
                spec = SpeculativeUI(defaults[0].prompt)
                spec.newline = newline

        run_id = gr.State("")
        n_columns.change(
            lambda n: [gr.update(visible=i < int(n)) for i in range(MAX_COLUMNS)],
            inputs=n_columns,
            outputs=[c.box for c in columns],
            queue=False,
            **PRIVATE,
        )
        colour_by.change(None, inputs=colour_by, js=COLOUR_JS, **PRIVATE)

        def new_example(name, count):
            return examples.draw(name, seed=count + 1).prompt, count + 1

        draw.click(new_example, inputs=[task, draws], outputs=[prompt, draws], queue=False, **PRIVATE)

        started = run_all.click(
            start_run, inputs=[prompt, newline], outputs=[run_id, run_status, table], queue=False, **PRIVATE
        )
        events = []
        for column in columns:
            event = started.then(
                column.handler(),
                inputs=[n_columns, prompt, newline, colour_by, run_id] + column.setting_inputs,
                outputs=column.outputs,
                concurrency_id="decode",
                concurrency_limit=concurrency,
                show_progress="hidden",
                **PRIVATE,
            )
            event.then(
                summary,
                inputs=[n_columns] + [c.result for c in columns],
                outputs=table,
                concurrency_limit=None,
                show_progress="hidden",
                **PRIVATE,
            )
            events.append(event)
        stop.click(request_stop, inputs=run_id, queue=False, **PRIVATE)

        spec.run.click(lambda: uuid.uuid4().hex, outputs=spec.run_id, queue=False, **PRIVATE).then(
            spec.handler(),
            inputs=spec.inputs,
            outputs=spec.outputs,
            concurrency_id="decode",
            concurrency_limit=concurrency,
            show_progress="hidden",
            **PRIVATE,
        )
        # the columns' stop: the running request is cancelled, the tab shows "stopped" and the partial run
        spec.stop.click(request_stop, inputs=spec.run_id, queue=False, **PRIVATE)

        gr.api(api_generate, api_name="generate", concurrency_id="decode", concurrency_limit=concurrency)
        app.load(None, js=HEAD_JS, **PRIVATE)
    app.queue(max_size=max_queue, default_concurrency_limit=concurrency)
    app.dllm_columns, app.dllm_speculative = columns, spec  # for tests
    return app


def _task_names() -> list[str]:
    from dllm.eval import tasks

    return tasks.names()


_CSS_IN_LAUNCH = "css" in inspect.signature(gr.Blocks.launch).parameters


def launch_kwargs() -> dict:
    return {"css": render.CSS} if _CSS_IN_LAUNCH else {}


def launch(
    port: int | None = None,
    host: str = "127.0.0.1",
    share: bool = False,
    concurrency: int = 4,
    max_queue: int = 64,
    threads: int | None = 1,
    preload: bool = True,
    block: bool = True,
    quiet: bool = False,
):
    """Build and serve the demo; ``block=False`` returns ``(app, url)`` with the server running.

    ``threads``: torch intra-op threads (process-wide). One is fastest for the tiny models, whose
    forwards are too small to split, and the columns already run in parallel; None keeps torch's default.
    """
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    if preload:
        models.preload(sorted({m for m, _, _ in COLUMN_DEFAULTS} | {"tiny-ar"}))
    app = build_app(concurrency=concurrency, max_queue=max_queue)
    _, url, _ = app.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=not block,
        quiet=quiet,
        **launch_kwargs(),
    )
    return app, url
