"""The Gradio demo without a browser: HTML rendering, widget specs from every plugin's config, the
summary table, and the column / speculative handlers against the library API."""

import dataclasses
import re
import sys
import threading
import time

import pytest

gr = pytest.importorskip("gradio")

import dllm  # noqa: E402
from dllm.demo import app as demo_app  # noqa: E402
from dllm.demo import examples, models, render, runner, widgets  # noqa: E402
from dllm.drafters import length as lengths  # noqa: E402
from dllm.metrics import RoundRecord  # noqa: E402

PROMPT = "reverse: Emma Stone, Liam Park, Noah Reed\n"
EXAMPLE = examples.default_examples()[0]  # a task example: the summary scores it
REGISTRIES = [dllm.samplers, dllm.caches, dllm.drafters, lengths]


# ---- rendering ---------------------------------------------------------------------------------


def small_canvas(block=(2, 4)):
    return render.Canvas(
        tokens=["Emma", " Stone", "<b>", "\n", "", "<eos>"],
        kinds=["token", "token", "token", "token", "mask", "eos"],
        steps=[1, 3, 2, 2, None, 3],
        confs=[0.99, 0.2, 0.6, 0.7, None, 0.95],
        block=block,
        max_step=3,
    )


def spans(html_text):
    return re.findall(r'<span class="dl-tok[^"]*"[^>]*>[^<]*</span>', html_text)


def test_canvas_masks_colours_and_escaping():
    canvas = small_canvas()
    out = render.canvas_html(canvas)
    tokens = spans(out)
    assert len(tokens) == 6
    assert tokens[4].startswith('<span class="dl-tok dl-mask"') and 'data-masked="1"' in out
    for i in (0, 1, 2, 3, 5):  # every committed position: coloured by its step, both colourings carried
        colour = render.step_colour(canvas.steps[i], canvas.max_step)
        assert f"background:{colour}" in tokens[i] and f"--cs:{colour}" in tokens[i]
        assert f"--cc:{render.confidence_colour(canvas.confs[i])}" in tokens[i]
        assert f'data-step="{canvas.steps[i]}"' in tokens[i]
    assert "&lt;b&gt;" in tokens[2] and "<b>" not in out  # token text is escaped
    assert ">⏎<" in tokens[3] and "dl-eos" in tokens[5]
    by_conf = spans(render.canvas_html(canvas, "confidence"))
    assert f"background:{render.confidence_colour(0.2)}" in by_conf[1]
    with pytest.raises(ValueError, match="colour_by"):
        render.canvas_html(canvas, "rainbow")


def test_step_and_confidence_scales():
    assert render.step_colour(1, 10) == "#440154" and render.step_colour(10, 10) == "#fde725"
    assert render.step_colour(1, 1) == "#440154"
    assert render.confidence_colour(0.0) == "#d73027" and render.confidence_colour(1.0) == "#1a9850"
    assert render.text_on("#fde725") == "#111111" and render.text_on("#440154") == "#ffffff"


def test_block_outline_wraps_exactly_the_current_block():
    out = render.canvas_html(small_canvas(block=(2, 4)))
    inside = re.search(r'<span class="dl-block"[^>]*>(.*?</span>)</span>', out).group(1)
    assert len(spans(inside)) == 2 and "&lt;b&gt;" in inside and "⏎" in inside
    assert out.count('class="dl-block"') == 1
    assert 'class="dl-block"' not in render.canvas_html(small_canvas(block=None))
    tail = render.canvas_html(small_canvas(block=(4, 8)))  # a block running past the canvas is still closed
    assert tail.count("<span") == tail.count("</span>")


def test_heatmap_one_cell_per_committed_position():
    canvas = small_canvas()
    out = render.heatmap_html(canvas)
    cells = re.findall(r"grid-row:(\d+);grid-column:(\d+)", out)
    assert sorted(cells) == sorted((str(s), str(i + 1)) for i, s in enumerate(canvas.steps) if s is not None)
    assert 'data-steps="3"' in out and 'data-positions="6"' in out
    assert "no steps" in render.heatmap_html(render.Canvas([], [], [], []))


def test_counters_and_error_html():
    out = render.counters_html(
        "running", {"step": 3, "nfe": 4, "tpf": 1.5, "tps": 12.25, "seconds": 0.5, "tokens": 6}
    )
    assert 'data-status="running"' in out and 'data-nfe="4"' in out and ">1.50</b> tokens/forward" in out
    assert 'data-status="error"' in render.error_html("fast-dllm.threshold=2 <bad>")
    assert "&lt;bad&gt;" in render.error_html("fast-dllm.threshold=2 <bad>")


def test_rounds_html_marks_accepted_rejected_and_bonus():
    trace = [
        RoundRecord(k=3, draft=[10, 11, 12], accepted=1, token=20, committed=[10, 20]),
        RoundRecord(k=2, draft=[13, 14], accepted=2, token=21, committed=[13, 14, 21]),
        RoundRecord(k=0, draft=[], accepted=0, token=22, committed=[22]),
        RoundRecord(k=2, draft=[2, 15], accepted=1, token=None, committed=[2]),
    ]
    out = render.rounds_html(trace, lambda ids: f"t{ids[0]}")
    rounds = out.split('<div class="dl-round"')[1:]
    assert len(rounds) == 4 and 'data-rounds="4"' in out
    assert (
        rounds[0].count("dl-acc") == 1 and rounds[0].count("dl-rej") == 1 and rounds[0].count("dl-rest") == 1
    )
    assert "dl-corr" in rounds[0] and "→t20" in rounds[0]
    assert (
        rounds[1].count("dl-acc") == 2
        and "dl-bonus" in rounds[1]
        and "+t21" in rounds[1]
        and "bonus" in rounds[1]
    )
    assert "dl-own" in rounds[2] and "no draft" in rounds[2]
    assert "dl-end" in rounds[3]


def test_live_rounds_html_marks_accepted_and_the_verifiers_token():
    R = runner.Round
    rounds = [
        R(new=[10, 20], out=[10, 20], accepted=1, drafted=3, at=0.0),  # 1 accepted, 2 rejected, correction
        R(new=[13, 14, 21], out=[], accepted=2, drafted=2, at=0.0),  # all accepted + bonus
        R(new=[22], out=[], accepted=0, drafted=0, at=0.0),  # no draft: the verifier's own token
        R(new=[2], out=[], accepted=1, drafted=2, at=0.0),  # the answer ended in the draft
    ]
    out = render.live_rounds_html(rounds, lambda ids: f"t{ids[0]}")
    live = out.split('<div class="dl-round"')[1:]
    assert len(live) == 4 and 'data-rounds="4"' in out and "dl-live" in out
    assert live[0].count("dl-acc") == 1 and ">✗2<" in live[0] and "→t20" in live[0] and "dl-corr" in live[0]
    assert live[1].count("dl-acc") == 2 and "+t21" in live[1] and "dl-bonus" in live[1] and "✗" not in live[1]
    assert "dl-own" in live[2] and "no draft" in live[2]
    assert live[3].count("dl-acc") == 1 and "dl-end" in live[3] and ">✗1<" in live[3]
    many = render.live_rounds_html(rounds * 10, lambda ids: "x")  # a long run: only the latest rounds
    assert 'data-rounds="40"' in many and "20 earlier rounds" in many
    assert many.count('<div class="dl-round" data-accepted') == render.LIVE_ROUNDS
    assert " 21 · " in many and " 40 · " in many and " 20 · " not in many


def test_summary_rows():
    done = {
        "column": 1,
        "model": "tiny-llada",
        "config": "llada · cache none · gen 64/32",
        "status": "done",
        "steps": 64,
        "nfe": 64,
        "tpf": 0.125,
        "tps": 40.123,
        "seconds": 0.2,
        "score": 1.0,
    }
    rows = render.summary_rows(
        [
            done,
            dict(done, column=2, score=0.0),
            dict(done, column=3, score=None),
            {"column": 4, "model": "m", "config": "", "status": "error", "message": "bad"},
        ]
    )
    assert rows[0] == [1, "tiny-llada", "llada · cache none · gen 64/32", 64, 64, 0.12, 40.1, 0.2, "✓"]
    assert [r[-1] for r in rows] == ["✓", "✗", "—", "error: bad"]
    assert all(len(r) == len(render.SUMMARY_HEADERS) for r in rows)


# ---- widget specs --------------------------------------------------------------------------------


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.__name__)
def test_widget_specs_cover_every_registered_plugin(registry):
    for name in registry.names():
        cls = registry._registry.cls(name)
        spec_list = widgets.specs(registry, name)
        fields = [f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")]
        assert [s.name for s in spec_list] == [f.name for f in fields], name
        assert {s.name: s.default for s in spec_list} == registry.describe()[registry.names().index(name)][
            "params"
        ]
        for spec in spec_list:
            assert spec.kind in widgets.KINDS
            assert widgets.coerce(spec, spec.widget_value()) == spec.default, (
                name,
                spec,
            )  # the widget round-trips
            component = demo_app.make_widget(spec)
            expected = {"bool": gr.Checkbox, "choice": gr.Dropdown, "optional-bool": gr.Dropdown}.get(
                spec.kind
            )
            if spec.kind in ("int", "float"):
                expected = gr.Textbox if spec.optional else gr.Number
            assert isinstance(component, expected or gr.Textbox), (name, spec)
        # the untouched widgets give back no parameters, and the plugin builds from them
        assert widgets.collect(spec_list, [s.widget_value() for s in spec_list]) == {}
        if registry is not dllm.drafters:  # drafters load their models in bind(), not here
            registry.get(name, **widgets.collect(spec_list, [s.widget_value() for s in spec_list]))


def test_widget_choices_come_from_the_plugins():
    by_name = {s.name: s for s in widgets.specs(dllm.samplers, "llada")}
    from dllm.samplers.llada import REMASKING

    assert by_name["remasking"].kind == "choice" and by_name["remasking"].choices == REMASKING
    inner = {s.name: s for s in widgets.specs(dllm.samplers, "prophet")}["inner"]
    assert inner.choices == tuple(dllm.samplers.names())
    model = {s.name: s for s in widgets.specs(dllm.drafters, "diffuspec")}["model"]
    assert model.custom and "tiny-dream" in model.choices and "tiny-ar" not in model.choices
    assert {s.name: s for s in widgets.specs(dllm.drafters, "diffuspec")}["proxy"].choices == (
        "ngram",
        "none",
    )
    assert {s.name: s for s in widgets.specs(dllm.drafters, "ar")}["model"].choices == tuple(
        models.shipped("causal")
    )


def test_coerce_names_the_field():
    specs = {s.name: s for s in widgets.specs(dllm.samplers, "fast-dllm")}
    assert widgets.coerce(specs["threshold"], "0.7") == 0.7
    assert widgets.coerce(specs["factor"], "") is None
    with pytest.raises(ValueError, match=r"fast-dllm\.threshold='abc' is not a number"):
        widgets.coerce(specs["threshold"], "abc")
    radius = {s.name: s for s in widgets.specs(dllm.samplers, "localleap")}["radius"]
    with pytest.raises(ValueError, match=r"localleap\.radius"):
        widgets.coerce(radius, 2.5)
    delimiters = {s.name: s for s in widgets.specs(dllm.samplers, "adablock")}["delimiters"]
    assert widgets.coerce(delimiters, '["\\n", ","]') == ("\n", ",")
    with pytest.raises(ValueError, match=r"adablock\.delimiters"):
        widgets.coerce(delimiters, "{nope")
    remasking = {s.name: s for s in widgets.specs(dllm.samplers, "llada")}["remasking"]
    with pytest.raises(ValueError, match=r"llada\.remasking='sideways' is not one of"):  # the plugin's check
        dllm.samplers.get("llada", remasking=widgets.coerce(remasking, "sideways"))
    # an integer box: text is parsed as an integer, a number box's 16.0 is 16; nothing else is rounded
    steps = {s.name: s for s in widgets.generation_specs()}["steps"]
    assert widgets.coerce(steps, " 16 ") == 16 and widgets.coerce(steps, 16.0) == 16
    for raw in ("16.0", "inf", 2.5, True):  # "inf" was an OverflowError, "16.0" and True were 16 and 1
        with pytest.raises(ValueError, match=r"GenerationConfig\.steps=.* is not an integer"):
            widgets.coerce(steps, raw)


def test_generation_widgets_come_from_generation_config():
    names = [s.name for s in widgets.generation_specs()]
    fields = [
        f.name for f in dataclasses.fields(dllm.GenerationConfig) if f.name not in widgets.GENERATION_HIDDEN
    ]
    assert names == fields


# ---- examples, models --------------------------------------------------------------------------


def test_examples_are_scored_with_the_tasks_own_scorer():
    defaults = examples.default_examples()
    assert {e.task for e in defaults} == set(examples.EXAMPLE_TASKS)
    for e in defaults:
        assert e.prompt.endswith("\n") and examples.score(e.prompt, e.target) == 1.0
    assert examples.score(defaults[0].prompt, "nonsense") == 0.0
    assert examples.score("a prompt typed by hand\n", "x") is None
    fresh = examples.draw("sudoku", seed=7)
    assert examples.lookup(fresh.prompt) is fresh
    assert (
        examples.finalize("math: 1+2") == "math: 1+2\n"
        and examples.finalize("math: 1+2", False) == "math: 1+2"
    )


def test_models_are_loaded_once_and_shared():
    got = []
    threads = [threading.Thread(target=lambda: got.append(models.get("tiny-llada"))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m is got[0] for m in got) and models.diffusion("tiny-llada") is got[0]
    with pytest.raises(ValueError, match="autoregressive"):
        models.diffusion("tiny-ar")
    assert "tiny-llada" in models.shipped("diffusion") and "tiny-ar" in models.shipped("causal")


# ---- the column: streaming, equality with dllm.generate, errors, stop ---------------------------


def direct(settings, prompt=PROMPT):
    model = dllm.load(settings.model)  # its own copy: the demo's shared model is not what is compared
    [result] = dllm.generate(
        model,
        prompt,
        sampler=dllm.samplers.get(settings.sampler, **settings.sampler_params),
        cache=dllm.caches.get(settings.cache, **settings.cache_params),
        **settings.generation,
    )
    return result


@pytest.mark.parametrize(
    "settings",
    [
        runner.ColumnSettings(sampler="fast-dllm", sampler_params={"threshold": 0.7}),
        runner.ColumnSettings(
            model="tiny-dream",
            sampler="localleap",
            cache="prefix",
            generation={"gen_length": 32, "block_length": 16},
        ),
    ],
    ids=["llada-fast-dllm", "dream-localleap-prefix"],
)
def test_stream_matches_generate(one_thread, settings):
    frames = list(runner.stream(settings, PROMPT, min_interval=0))
    final = frames[-1]
    assert [f.status for f in frames[:-1]] == ["running"] * (len(frames) - 1) and final.status == "done"
    expected = direct(settings)
    r = final.result
    assert (r.text, r.ids, r.steps, r.nfe, r.gen_tokens) == (
        expected.text,
        expected.ids,
        expected.steps,
        expected.nfe,
        expected.gen_tokens,
    )
    assert final.counters == runner.result_counters(r)
    assert final.score == 1.0 or final.score is None or final.score == 0.0
    assert frames[0].canvas.masked == settings.generation["gen_length"]
    last_live = frames[-2]
    assert last_live.counters["step"] == r.steps and last_live.counters["nfe"] == r.nfe
    assert last_live.counters["tokens"] == r.gen_tokens
    # the live colouring (callback + confidences) is the trace's
    committed = [i for i, s in enumerate(final.canvas.steps) if s is not None]
    assert [last_live.canvas.steps[i] for i in committed] == [final.canvas.steps[i] for i in committed]
    assert [round(last_live.canvas.confs[i], 6) for i in committed] == [
        final.canvas.confs[i] for i in committed
    ]
    steps = [f.counters["step"] for f in frames[1:-1]]
    assert steps == sorted(steps) and len(steps) == r.steps  # one frame per step when not throttled


def test_run_matches_generate_and_api(one_thread):
    settings = runner.ColumnSettings(sampler="fast-dllm")
    expected = direct(settings)
    assert runner.run(settings, PROMPT).ids == expected.ids
    served = demo_app.api_generate(PROMPT, sampler="fast-dllm")
    assert (
        served["text"] == expected.text
        and served["nfe"] == expected.nfe
        and served["steps"] == expected.steps
    )


def test_bad_settings_and_long_prompts_are_errors_not_crashes():
    def final(settings, prompt=PROMPT):
        return list(runner.stream(settings, prompt))[-1]

    assert (
        "fast-dllm.threshold=2.0 is out of range"
        in final(runner.ColumnSettings(sampler="fast-dllm", sampler_params={"threshold": 2.0})).message
    )
    assert "no parameter" in final(runner.ColumnSettings(sampler="llada", sampler_params={"nope": 1})).message
    assert (
        "block_length"
        in final(runner.ColumnSettings(generation={"gen_length": 48, "block_length": 32})).message
    )
    assert "autoregressive" in final(runner.ColumnSettings(model="tiny-ar")).message
    unknown = final(runner.ColumnSettings(generation={"gen_length": 32, "steps_per_block": 4})).message
    assert "unknown generation setting(s) 'steps_per_block'" in unknown  # dllm's resolve_generation
    assert final(runner.ColumnSettings(model="/no/such/folder")).status == "error"
    assert "at most" in final(runner.ColumnSettings(), "x" * (runner.MAX_PROMPT_CHARS + 1)).message
    assert "empty" in final(runner.ColumnSettings(), "  ").message
    too_long = final(runner.ColumnSettings(generation={"gen_length": 1024, "block_length": 32}))
    assert too_long.status == "error" and "context" in too_long.message


def test_columns_with_the_same_settings_share_one_batch(one_thread):
    """Two users' columns with one setting decode as rows of one continuous batch, each with the
    tokens of its run alone."""
    settings = runner.ColumnSettings(sampler="llada", cache="dual")
    other = "copy: q w e r ->"
    batch = runner.batcher(settings, runner.prepare(settings, other))
    rows = []

    def hold(event, row):  # the first step waits until the column's prompt is queued: it joins next
        rows.append(len(event.rows))
        for _ in range(3000):
            if len(rows) > 1 or batch._waiting.widest():
                return
            time.sleep(0.01)

    first = batch.submit(other, on_step=hold)
    final = list(runner.stream(settings, PROMPT, min_interval=0))[-1]
    assert final.status == "done" and final.result.ids == direct(settings).ids
    assert first.result(60).ids == direct(settings, other).ids
    assert max(rows) == 2 and runner.batcher(settings, runner.prepare(settings, other)) is batch


def test_stop_ends_the_generation(one_thread):
    stop = threading.Event()
    frames = []
    for frame in runner.stream(
        runner.ColumnSettings(sampler="llada"), PROMPT, should_stop=stop.is_set, min_interval=0
    ):
        frames.append(frame)
        if frame.counters.get("step", 0) >= 2:
            stop.set()
    assert frames[-1].status == "stopped" and frames[-1].result is None
    assert 2 <= frames[-1].counters["step"] < 64 and frames[-1].canvas.masked > 0  # the partial canvas stays


# ---- the app's handlers ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app():
    return demo_app.build_app()


def column_values(column, **changes):
    """The column's widget values as the page starts (plus changes keyed by elem_id)."""
    values = []
    for component in column.setting_inputs:
        values.append(changes.get(component.elem_id, component.value))
    return values


def last(handler, *args):
    out = None
    for item in handler(*args):
        out = item
    return out


def test_column_handler_matches_generate(app, one_thread):
    columns = app.dllm_columns
    assert len(columns) == demo_app.MAX_COLUMNS
    for column, sampler in zip(columns[:2], ("llada", "fast-dllm")):
        values = column_values(column)
        counters, canvas, text, heatmap, entry = last(
            column.handler(), 2, PROMPT, True, "step", "run", *values
        )
        settings = column.settings(values)
        assert settings.sampler == sampler
        expected = direct(settings)
        assert text == expected.text and entry["status"] == "done"
        assert (entry["steps"], entry["nfe"], entry["gen_tokens"]) == (
            expected.steps,
            expected.nfe,
            expected.gen_tokens,
        )
        assert f'data-nfe="{expected.nfe}"' in counters and f'data-step="{expected.steps}"' in counters
        assert 'data-status="done"' in counters and "dl-heat-grid" in heatmap and "dl-canvas" in canvas
        assert entry["score"] == examples.score(PROMPT, text)


def test_bad_parameter_is_an_error_in_that_column_only(app, one_thread):
    first, second = app.dllm_columns[:2]
    bad = column_values(second, **{"sampler-1-fast-dllm-threshold": "2"})
    counters, *_, entry = last(second.handler(), 2, PROMPT, True, "step", "run", *bad)
    assert 'data-status="error"' in counters and "fast-dllm.threshold=2.0" in counters
    assert entry["status"] == "error"
    counters, _, text, _, entry = last(
        first.handler(), 2, EXAMPLE.prompt, True, "step", "run", *column_values(first)
    )
    assert entry["status"] == "done" and text and entry["score"] in (0.0, 1.0)
    rows = demo_app.summary(2, entry, dict(entry, column=2, status="error", message="bad"))
    assert rows[0][-1] in ("✓", "✗") and rows[1][-1] == "error: bad"


def test_hidden_columns_and_refused_prompts_do_not_run(app, one_thread):
    third = app.dllm_columns[2]
    assert last(third.handler(), 2, PROMPT, True, "step", "run", *column_values(third)) == [gr.skip()] * 5
    with pytest.warns(UserWarning, match="at most"):  # gr.Warning outside a request
        run_id, message, _ = demo_app.start_run("x" * (runner.MAX_PROMPT_CHARS + 1), True)
    assert run_id == "" and "refused" in message and "at most" in message
    assert last(third.handler(), 4, PROMPT, True, "step", "", *column_values(third)) == [gr.skip()] * 5
    run_id, message, _ = demo_app.start_run(PROMPT, True)
    assert run_id and "free prompt" in message
    run_id, message, _ = demo_app.start_run(EXAMPLE.prompt.rstrip("\n"), True)
    assert run_id and f"task example: {EXAMPLE.task}" in message
    demo_app.request_stop(run_id)
    *_, entry = last(
        app.dllm_columns[0].handler(), 2, PROMPT, True, "step", run_id, *column_values(app.dllm_columns[0])
    )
    assert entry["status"] == "stopped"


def test_speculative_compares_with_plain_ar(one_thread):
    prompt = "copy: Nora Diaz, Oscar Cook\n"
    settings = runner.SpeculativeSettings(
        drafter="onepass", length="fixed", length_params={"k": 4}, max_new_tokens=16
    )
    out = runner.speculative(settings, prompt)
    [plain] = dllm.speculate("tiny-ar", prompt, max_new_tokens=16)
    assert out["plain"].ids == plain.ids and out["identical"] and out["spec"].ids == plain.ids
    assert out["speedup"] > 0 and out["spec"].trace and out["controller"] == "fixed"
    html_out = render.rounds_html(out["spec"].trace, out["verifier"].decode)
    assert html_out.count('class="dl-round"') == out["spec"].rounds
    rows = render.speculative_table([{"name": "plain", "result": out["plain"], "speedup": 1.0}])
    assert len(rows[0]) == len(render.SPECULATIVE_HEADERS)
    with pytest.raises(ValueError, match="fixed.k"):
        runner.speculative(dataclasses.replace(settings, length_params={"k": 0}), prompt)


# ---- issue 26: the API and the UI take the library's checks and show its messages ---------------

MASKED = "copy: <|mask|> Nora\n"  # the mask token's text (tiny-llada's and tiny-ar's '<|mask|>')
GENERIC = "upstream Gradio app has raised an exception"


@pytest.fixture(scope="module")
def client(app):
    """The demo served on 127.0.0.1 (Gradio takes the first free port from 7860) and a gradio_client
    for its /generate endpoint; closed after the module."""
    gradio_client = pytest.importorskip("gradio_client")
    _, url, _ = app.launch(
        server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **demo_app.launch_kwargs()
    )
    try:
        yield gradio_client.Client(url, verbose=False)
    finally:
        app.close()


def served(client, prompt=PROMPT, **params):
    """One /generate call, bounded in time."""
    return client.submit(prompt, api_name="/generate", **params).result(timeout=120)


def served_error(client, prompt=PROMPT, **params) -> str:
    """The message gradio_client raises for a refused /generate call."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as refused:
        served(client, prompt, **params)
    message = str(refused.value)
    assert GENERIC not in message
    return message


@pytest.mark.parametrize(
    "params, message",
    [
        ({"gen_length": "abc"}, "GenerationConfig.gen_length='abc' has the wrong type; expected an integer"),
        (
            {"sampler": "fast-dllm", "sampler_params": "threshold=0.7"},
            "column.sampler_params='threshold=0.7' has the wrong type; expected a mapping",
        ),
        ({"cache_params": "[1]"}, "column.cache_params='[1]' has the wrong type; expected a mapping"),
        ({"model": "no-such-model"}, "model 'no-such-model' not found: not a shipped model"),
        ({"model": "tiny-ar"}, "'tiny-ar' is an autoregressive model"),
        ({"sampler": "nope"}, "unknown sampler 'nope'"),
        ({"sampler": "fast-dllm", "sampler_params": {"threshold": "0.7"}}, "fast-dllm.threshold='0.7'"),
    ],
    ids=[
        "gen_length-text",
        "sampler_params-text",
        "cache_params-text",
        "no-model",
        "ar-model",
        "no-sampler",
        "param-text",
    ],
)
def test_api_errors_name_the_field(client, params, message):
    """Issue 26, row 1: gradio_client gets the message naming what was wrong, not Gradio's generic one."""
    assert message in served_error(client, **params)


def test_api_refuses_the_types_the_python_api_refuses(client, one_thread):
    """Issue 26, row 2: gen_length=16.0 (and a float block_length, a bool) reach GenerationConfig as
    they are: the same refusal as dllm.generate's; valid settings give dllm.generate's run, steps
    derived from gen_length."""
    model = models.get("tiny-llada")
    for params in (
        {"gen_length": 16.0, "block_length": 16},
        {"gen_length": 16, "block_length": 16.0},
        {"gen_length": True, "block_length": 1},
    ):
        with pytest.raises(TypeError) as python:
            dllm.generate(model, PROMPT, **params)
        assert served_error(client, **params) == str(python.value)
    with pytest.raises(TypeError, match="not text"):
        runner.run(runner.ColumnSettings(), [5])
    generation = {"gen_length": 48, "block_length": 16}
    out = served(client, **generation)
    expected = direct(runner.ColumnSettings(generation=generation))
    assert (out["ids"], out["steps"], out["nfe"]) == (expected.ids, expected.steps, expected.nfe)
    assert out["steps"] == 48


def test_api_prompt_goes_through_encode_prompts(client):
    """Issue 26, row 3 (API): the mask token's text is refused by dllm.encode_prompts, and the context
    check is dllm's (canvas.check_prompts): the same messages as dllm.generate's."""
    model = models.get("tiny-llada")
    for prompt, params in ((MASKED, {}), ("x " * 600, {"gen_length": 512, "block_length": 32})):
        with pytest.raises(ValueError) as python:
            dllm.generate(model, prompt, **params)
        assert served_error(client, prompt, **params) == str(python.value)
    assert "the mask token '<|mask|>'" in served_error(client, MASKED)


def test_ui_errors_show_the_librarys_message(app, one_thread):
    """Issue 26, rows 3-4 (UI): a column and the speculative tab refuse the mask token's text with
    encode_prompts' message, and a number box hands 2.5 on unrounded, refused naming the field."""
    column = app.dllm_columns[0]
    with pytest.raises(ValueError) as python:
        dllm.encode_prompts(models.get("tiny-llada"), MASKED)
    counters, _, text, _, entry = last(
        column.handler(), 2, MASKED, True, "step", "run", *column_values(column)
    )
    assert entry["status"] == "error" and entry["message"] == str(python.value) and text == ""
    assert 'data-status="error"' in counters and render.html.escape(str(python.value)) in counters
    box = column.generation_inputs["gen_length"]
    assert box.preprocess(2.5) == 2.5  # Gradio no longer rounds it to 2
    counters, *_, entry = last(
        column.handler(), 2, PROMPT, True, "step", "run", *column_values(column, **{box.elem_id: 2.5})
    )
    assert entry["status"] == "error" and "GenerationConfig.gen_length=2.5 is not an integer" in counters

    spec = app.dllm_speculative

    def spec_status(component, value):  # the tab's status after a click with one widget changed
        values = [value if c is component else c.value for c in spec.inputs]
        return last(spec.handler(), *values)[0]

    with pytest.raises(ValueError) as python:
        dllm.speculate("tiny-ar", MASKED, max_new_tokens=8)
    status = spec_status(spec.prompt, MASKED)
    assert 'data-status="error"' in status and render.html.escape(str(python.value)) in status
    assert spec.max_new_tokens.preprocess(2.5) == 2.5
    status = spec_status(spec.max_new_tokens, 2.5)
    assert "SpeculativeConfig.max_new_tokens=2.5 is not an integer" in status


def test_speculative_tab_default_length_is_the_drafters_own(app, one_thread):
    """Issue 26, item 3 (settings merged without re-deriving): "(the drafter's default)" is the controller
    dllm.speculate picks, drafter.default_length(): DEER's follows its k (the tab drafted FixedLength's
    default 8 for deer k=4)."""
    prompt = "copy: Nora Diaz, Oscar Cook\n"
    [expected] = dllm.speculate(
        "tiny-ar", prompt, drafter=dllm.drafters.get("deer", k=4), max_new_tokens=16, trace=True
    )
    out = runner.speculative(
        runner.SpeculativeSettings(drafter="deer", drafter_params={"k": 4}, max_new_tokens=16), prompt
    )
    assert max(r.k for r in out["spec"].trace) == 4 == max(r.k for r in expected.trace)
    assert (out["spec"].ids, out["spec"].rounds) == (expected.ids, expected.rounds)
    with pytest.raises(ValueError, match="without a draft-length controller"):
        runner.speculative(runner.SpeculativeSettings(length_params={"k": 2}), prompt)
    spec = app.dllm_speculative  # the same through the tab's handler, its widgets set to deer, k=4
    k_box = next(c for c in spec.drafter.inputs if c.elem_id == "spec-drafter-deer-k")
    changes = {
        id(spec.drafter.dropdown): "deer",
        id(k_box): 4,
        id(spec.max_new_tokens): 16,
        id(spec.prompt): prompt,
    }
    status, _, texts, rounds, _ = last(spec.handler(), *[changes.get(id(c), c.value) for c in spec.inputs])
    assert 'data-status="done"' in status and f'data-rounds="{expected.rounds}"' in rounds
    assert f"speculative: {expected.text}" in texts


# ---- issue 27 item 7: the speculative tab through the engine -------------------------------------

SPEC_PROMPT = "copy: Nora Diaz, Oscar Cook, Liam Park, Emma Stone, Ava Reed\n"  # 5 deer rounds, 15 AR ones
LONG_PROMPT = (
    "copy: zq xv wk\n"  # greedy tiny-ar repeats a word to the budget: 40 tokens in about 17 deer rounds
)


def spec_values(spec, prompt, drafter="deer", params=None, **fields):
    """The tab's input values as the page starts, with the drafter (its widgets ``params`` by name),
    the prompt and the named fields (max_new_tokens, temperature, seed, run_id) set."""
    changes = {id(spec.drafter.dropdown): drafter, id(spec.prompt): prompt}
    for name, value in (params or {}).items():
        box = next(c for c in spec.drafter.inputs if c.elem_id == f"spec-drafter-{drafter}-{name}")
        changes[id(box)] = value
    for name, value in fields.items():
        changes[id(getattr(spec, name))] = value
    return [changes.get(id(c), c.value) for c in spec.inputs]


def spec_settings(spec, values):
    """The settings the handler builds from ``values`` (all but prompt, newline and run_id)."""
    return spec.settings(*values[:6], *values[9:])


def run_tab(spec, values, limit=500):
    """Every update of one tab run (bounded: the handler must end within ``limit`` updates)."""
    outputs = []
    for out in spec.handler()(*values):
        outputs.append(out)
        assert len(outputs) < limit
    return outputs


def alone(prompt, drafter=None, **settings):
    """``dllm.speculate`` of one prompt on its own verifier and drafter (not the demo's shared ones)."""
    [result] = dllm.speculate(dllm.load("tiny-ar"), prompt, drafter=drafter, trace=True, **settings)
    return result


@pytest.mark.parametrize(
    "prompt, temperature, seed",
    [(SPEC_PROMPT, 0.0, 0), ("copy: zq xv wk\n", 1.0, 7)],  # T=1: seed 8 gives another answer
    ids=["greedy", "T1-seed7"],
)
def test_speculative_tab_streams_rounds_and_equals_speculate(
    app, one_thread, monkeypatch, prompt, temperature, seed
):
    """The tab submits through a speculative Batcher and streams every round (SPECULATIVE_INTERVAL 0: one
    update per round): the text so far, the live rounds (accepted draft tokens vs the verifier's own one) and
    counters by dllm.metrics' definitions; the final text and ids are dllm.speculate's, the final
    rounds its trace, and the plain-AR baseline is dllm.speculate without a drafter."""
    monkeypatch.setattr(runner, "SPECULATIVE_INTERVAL", 0)
    spec = app.dllm_speculative
    settings = dict(max_new_tokens=40, temperature=temperature, seed=seed)
    outputs = run_tab(spec, spec_values(spec, prompt, "deer", {"k": 2}, **settings))
    expected = alone(prompt, dllm.drafters.get("deer", k=2), **settings)
    plain = alone(prompt, **settings)
    if temperature:
        assert (
            alone(prompt, dllm.drafters.get("deer", k=2), **dict(settings, seed=seed + 1)).ids != expected.ids
        )

    status, rows, texts, rounds, state = outputs[-1]
    assert state["status"] == "done" and 'data-status="done"' in status
    assert (state["spec"]["result"]["ids"], state["spec"]["result"]["text"]) == (expected.ids, expected.text)
    assert (state["plain"]["result"]["ids"], state["plain"]["result"]["text"]) == (plain.ids, plain.text)
    assert texts == f"speculative: {expected.text}\nplain AR:    {plain.text}"
    assert rounds == render.rounds_html(expected.trace, models.get("tiny-ar").decode)  # the final rendering
    final = {k: v for k, v in state["spec"]["counters"].items() if k not in ("tps", "seconds")}
    assert final == {  # the SpeculativeResult's properties
        "rounds": expected.rounds,
        "tau": expected.tau,
        "tpvf": expected.tokens_per_verifier_forward,
        "tokens": expected.gen_tokens,
    }
    assert f'data-rounds="{expected.rounds}"' in status and f'data-tau="{expected.tau}"' in status
    assert [r[0] for r in rows] == ["plain AR (no drafter)", "deer (fixed)"] and rows[0][-1] == 1.0
    assert rows[1][-1] == round(state["speedup"], 2) and state["speedup"] > 0

    live = [out for out in outputs[1:-1] if out[4]["spec"]["status"] == "running"]
    assert len(live) == expected.rounds >= 3  # every round streamed before the final update
    shown = [out[4]["spec"] for out in live]
    assert [s["counters"]["rounds"] for s in shown] == list(range(1, expected.rounds + 1))
    assert all(
        'data-status="running"' in out[0] and f'data-rounds="{i}"' in out[0] for i, out in enumerate(live, 1)
    )
    assert all(f'class="dl-rounds dl-live" data-rounds="{i}"' in out[3] for i, out in enumerate(live, 1))
    assert all(out[2].startswith("speculative: ") and "plain AR" not in out[2] for out in live)
    assert shown[-1]["text"] == expected.text and all(expected.text.startswith(s["text"]) for s in shown)
    last_live = {k: v for k, v in shown[-1]["counters"].items() if k not in ("tps", "seconds")}
    assert last_live == final  # the live counters (from the events) end where the result's properties do
    accepted_live = sum(out[3].split('class="dl-round"')[-1].count("dl-acc") for out in live)
    assert accepted_live == sum(min(r.accepted, len(r.committed)) for r in expected.trace)
    plain_live = [out for out in outputs if out[4] and out[4]["plain"]["status"] == "running"]
    assert len(plain_live) == plain.rounds and plain_live[-1][4]["plain"]["text"] == plain.text
    assert all(out[4]["spec"]["status"] == "done" for out in plain_live)  # its result stays on screen


def test_speculative_tab_stop_shows_what_was_produced(app, one_thread, monkeypatch):
    """Stop (the columns' request_stop(run_id)) cancels the request in the middle: its row leaves after
    the current round, the tab shows "stopped" with the text and rounds so far, nothing follows, and
    the plain-AR baseline does not start."""
    monkeypatch.setattr(runner, "SPECULATIVE_INTERVAL", 0)
    calls = []
    original = runner._round

    def slow_round(event, row):  # rounds slower than the page reacts, so the stop lands mid-run
        calls.append(event.rows[row])
        time.sleep(0.1)
        return original(event, row)

    monkeypatch.setattr(runner, "_round", slow_round)
    spec = app.dllm_speculative
    run_id = f"stop-{time.time_ns()}"
    expected = alone(LONG_PROMPT, dllm.drafters.get("deer", k=2), max_new_tokens=40)
    assert expected.rounds >= 10
    outputs, stopped_at, calls_at_stop = [], None, None
    for out in spec.handler()(
        *spec_values(spec, LONG_PROMPT, "deer", {"k": 2}, max_new_tokens=40, run_id=run_id)
    ):
        outputs.append(out)
        assert len(outputs) < 100
        if stopped_at is None and out[4] and out[4]["spec"]["counters"].get("rounds", 0) >= 2:
            demo_app.request_stop(run_id)
            stopped_at, calls_at_stop = len(outputs), len(calls)
    assert stopped_at is not None and len(outputs) == stopped_at + 1  # no update after the stopped one
    status, rows, texts, rounds, state = outputs[-1]
    assert state["status"] == "stopped" and 'data-status="stopped"' in status
    assert "stopped by the user during the speculative decoding" in status
    assert state["spec"]["status"] == "stopped" and state["plain"]["status"] == "waiting" and rows == []
    produced = state["spec"]["counters"]["rounds"]
    assert 2 <= produced < expected.rounds and f'data-rounds="{produced}"' in status
    assert texts == f"speculative: {state['spec']['text']}" and expected.text.startswith(
        state["spec"]["text"]
    )
    assert state["spec"]["text"] and f'class="dl-rounds dl-live" data-rounds="{produced}"' in rounds
    time.sleep(0.3)
    assert len(calls) <= calls_at_stop + 1  # the row left the batch after the round in flight


def test_leaving_the_speculative_tab_cancels_its_request(app, one_thread, monkeypatch):
    """A handler Gradio closes (the page went away) cancels its request: the row leaves its batch."""
    monkeypatch.setattr(runner, "SPECULATIVE_INTERVAL", 0)
    calls = []
    original = runner._round

    def slow_round(event, row):
        calls.append(event.rows[row])
        time.sleep(0.1)
        return original(event, row)

    monkeypatch.setattr(runner, "_round", slow_round)
    spec = app.dllm_speculative
    handler = spec.handler()(*spec_values(spec, LONG_PROMPT, "deer", {"k": 2}, max_new_tokens=40))
    for count, out in enumerate(handler):
        assert count < 100
        if out[4] and out[4]["spec"]["counters"].get("rounds", 0) >= 2:
            break
    handler.close()
    closed_at = len(calls)
    time.sleep(0.5)
    assert closed_at < 10 and len(calls) <= closed_at + 1  # of about 17 rounds


def test_speculative_tab_prompt_goes_through_the_batchers_checks(app, one_thread):
    """The tab's prompt reaches the speculative Batcher's submit: the mask token's text and a prompt
    too long for the verifier's context are refused with dllm.speculate's own messages."""
    spec = app.dllm_speculative
    verifier = models.get("tiny-ar")
    for prompt in (MASKED, "x " * 300 + "\n"):
        with pytest.raises(ValueError) as python:
            dllm.speculate(verifier, prompt, max_new_tokens=48)
        status, rows, texts, rounds, state = last(
            spec.handler(), *spec_values(spec, prompt, max_new_tokens=48)
        )
        assert 'data-status="error"' in status and render.html.escape(str(python.value)) in status
        assert (rows, texts, rounds, state) == ([], "", "", None)
    assert "exceeds the verifier's context of 512 positions" in str(python.value)
    status = last(spec.handler(), *spec_values(spec, "x" * (runner.MAX_PROMPT_CHARS + 1)))[0]
    assert 'data-status="error"' in status and "at most" in status  # the demo's own length limit


def test_two_speculative_tab_runs_share_one_batcher(app, one_thread, monkeypatch):
    """Two users' tab runs with the same settings decode as rows of one speculative Batcher (the
    columns' LRU), each with the tokens of its run alone; so do their plain-AR baselines."""
    spec = app.dllm_speculative
    prompts = [SPEC_PROMPT, "copy: Emma Stone, Liam Park, Noah Reed, Ava Cook\n"]
    values = [
        spec_values(spec, p, "deer", {"k": 2}, max_new_tokens=40, run_id=f"share-{i}")
        for i, p in enumerate(prompts)
    ]
    settings = spec_settings(spec, values[0])
    assert settings == spec_settings(spec, values[1])
    batch = runner.speculative_batcher(settings)
    plain_batch = runner.speculative_batcher(settings.plain())
    widths, first = [], threading.Event()
    original = runner._round

    def watch(event, row):  # the first round holds until the second run's prompt is queued: it joins next
        widths.append(len(event.rows))
        if not first.is_set():
            first.set()
            for _ in range(3000):
                if batch._waiting.widest():
                    break
                time.sleep(0.01)
        return original(event, row)

    monkeypatch.setattr(runner, "_round", watch)
    outputs = [None, None]

    def run(i):
        outputs[i] = run_tab(spec, values[i])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in (0, 1)]
    threads[0].start()
    assert first.wait(60)
    threads[1].start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    assert max(widths) == 2  # both runs' rows in one round
    assert (
        runner.speculative_batcher(settings) is batch
        and runner.speculative_batcher(settings.plain()) is plain_batch
    )
    for prompt, out in zip(prompts, outputs):
        state = out[-1][4]
        assert state["status"] == "done"
        assert (
            state["spec"]["result"]["ids"]
            == alone(prompt, dllm.drafters.get("deer", k=2), max_new_tokens=40).ids
        )
        assert state["plain"]["result"]["ids"] == alone(prompt, max_new_tokens=40).ids


def test_speculative_tab_run_and_stop_are_wired_to_a_run_id(app):
    """Run gives the click a fresh run id before the (queued) handler starts, the handler reads it,
    and Stop hands it to request_stop (the columns' stop) instead of cancelling the event, so the tab
    can show "stopped" and the partial run."""
    spec = app.dllm_speculative
    fns = list(app.fns.values())

    def on(button):
        return [f for f in fns if any(target == button._id for target, _ in f.targets)]

    [start] = on(spec.run)
    [stop] = on(spec.stop)
    [handler] = [f for f in fns if f.trigger_after == next(k for k, v in app.fns.items() if v is start)]
    assert [c._id for c in start.outputs] == [spec.run_id._id] and re.fullmatch(r"[0-9a-f]{32}", start.fn())
    assert (
        spec.run_id._id in [c._id for c in handler.inputs]
        and getattr(handler.fn, "__name__", "") == "run_speculative"
    )
    assert stop.fn is demo_app.request_stop and [c._id for c in stop.inputs] == [spec.run_id._id]
    assert not any(f.cancels for f in fns if f is stop)


# ---- command line ------------------------------------------------------------------------------


def test_cli_demo_flags_and_missing_extra(monkeypatch, capsys):
    from dllm.cli import _parser, main

    args = _parser().parse_args(["demo", "--port", "7999", "--share", "false", "--host", "0.0.0.0"])
    assert (args.port, args.share, args.host) == (7999, False, "0.0.0.0")
    with pytest.raises(SystemExit):
        _parser().parse_args(["demo", "--share", "maybe"])
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the demo extra were not installed
    assert main(["demo"]) == 2
    assert 'pip install -e ".[demo]"' in capsys.readouterr().err
