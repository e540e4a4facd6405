"""The demo in a real browser: `dllm demo` on localhost, driven by Playwright in headless Chromium.

Two columns are set to different samplers through the page's widgets, "Run all" starts both, and
the counters and final texts the page shows are checked against ``dllm.generate`` with the same
settings. The canvas must stream (partial canvases with masks seen while running). The speculative
tab's texts are checked against ``dllm.speculate``, its rounds must stream, and its Stop button must
end a long run mid-way. A screenshot is
saved to tests/artifacts/demo.png (git-ignored; CI keeps it as an artifact).

Needs Debian's Chromium (``apt-get install -y chromium``) and ``pip install playwright``; Playwright's
own browser download is not used. Skipped when either is missing.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("gradio")
sync_api = pytest.importorskip("playwright.sync_api")

import dllm  # noqa: E402
from dllm.demo import examples  # noqa: E402

CHROMIUM = os.environ.get("DLLM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).parent / "artifacts"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    ARTIFACTS.mkdir(exist_ok=True)
    log = open(ARTIFACTS / "demo_server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dllm",
            "demo",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--share",
            "false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`dllm demo` exited with {proc.returncode}; see {log.name}")
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"`dllm demo` did not answer on {url} within 180 s; see {log.name}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(server)
        page.wait_for_selector("#run-all", timeout=60_000)
        yield page
        browser.close()


def choose(page, elem_id: str, value: str) -> None:
    """Pick ``value`` in a Gradio dropdown."""
    page.click(f"#{elem_id} input")
    page.locator("ul[role=listbox] li[role=option]", has_text=value).filter(
        has=page.locator(f"text='{value}'")
    ).first.click()
    sync_api.expect(page.locator(f"#{elem_id} input")).to_have_value(value)


def fill(page, elem_id: str, value: str) -> None:
    box = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    box.fill(value)
    box.press("Tab")  # commit the value (Gradio reads it on change/blur)


def table_rows(page, elem_id: str) -> list[list[str]]:
    """The body cells of a Gradio dataframe (Gradio 6 renders rows as role=gridcell divs; 5 as a table)."""
    cells = page.locator(f"#{elem_id} [role=gridcell][data-row]")
    if cells.count():
        rows: dict = {}
        for i in range(cells.count()):
            cell = cells.nth(i)
            rows.setdefault(int(cell.get_attribute("data-row")), []).append(cell.inner_text().strip())
        return [rows[k] for k in sorted(rows)]
    trs = page.locator(f"#{elem_id} tbody tr:not([aria-hidden])")
    return [[td.strip() for td in trs.nth(i).locator("td").all_inner_texts()] for i in range(trs.count())]


WATCH_JS = """
() => {
  window.dlSeen = {0: [], 1: []};
  const record = () => {
    for (const i of [0, 1]) {
      const c = document.querySelector(`#counters-${i} .dl-counters`);
      const canvas = document.querySelector(`#canvas-${i} .dl-canvas`);
      if (c && canvas && c.dataset.status === 'running')
        window.dlSeen[i].push([+c.dataset.step, +canvas.dataset.masked]);
    }
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true});
}
"""


def test_two_samplers_side_by_side_in_chromium(page):
    started = time.time()
    example = examples.default_examples()[0]  # a waiting-line task example: the summary scores it
    fill(page, "prompt", example.prompt.rstrip("\n"))  # the newline box (on) restores the task format
    # column 1: fast-dllm with threshold 0.7, column 2: llada — both picked through the widgets
    choose(page, "sampler-0", "fast-dllm")
    fill(page, "sampler-0-fast-dllm-threshold", "0.7")
    choose(page, "sampler-1", "llada")
    fill(page, "gen_length-1", "48")
    fill(page, "block_length-1", "16")
    page.evaluate(WATCH_JS)
    page.click("#run-all")
    for i in (0, 1):
        page.wait_for_selector(f"#counters-{i} .dl-counters[data-status=done]", timeout=120_000)
    expected = [
        dllm.generate(
            dllm.load("tiny-llada"),
            example.prompt,
            sampler=dllm.samplers.get("fast-dllm", threshold=0.7),
            gen_length=64,
            block_length=32,
        )[0],
        dllm.generate(
            dllm.load("tiny-llada"), example.prompt, sampler="llada", gen_length=48, block_length=16
        )[0],
    ]
    for i, result in enumerate(expected):
        counters = page.locator(f"#counters-{i} .dl-counters")
        shown = {key: counters.get_attribute(f"data-{key}") for key in ("step", "nfe", "tokens", "tpf")}
        assert int(shown["step"]) == result.steps and int(shown["nfe"]) == result.nfe
        assert int(shown["tokens"]) == result.gen_tokens
        assert float(shown["tpf"]) == pytest.approx(result.tokens_per_forward)
        assert page.locator(f"#text-{i} textarea").input_value() == result.text
        canvas = page.locator(f"#canvas-{i} .dl-canvas")
        assert canvas.get_attribute("data-masked") == "0"
        assert int(canvas.get_attribute("data-positions")) == (64, 48)[i]
        assert page.locator(f"#heatmap-{i} .dl-heat-grid").get_attribute("data-steps") == str(result.steps)
    # the llada column (48 steps) streamed: partial canvases, masks shrinking, steps growing
    seen = page.evaluate("window.dlSeen[1]")
    partial = [(step, masked) for step, masked in seen if 0 < step < expected[1].steps and masked > 0]
    assert len({s for s, _ in partial}) >= 2, seen
    assert [m for _, m in sorted(partial)] == sorted((m for _, m in partial), reverse=True)
    # summary table: both rows, with the counts and the task scorer's verdict
    deadline = time.time() + 20
    while len(rows := [r for r in table_rows(page, "summary") if any(r)]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(rows) == 2, rows
    for cells, result in zip(rows, expected):
        assert cells[3] == str(result.steps) and cells[4] == str(result.nfe)
        assert float(cells[5]) == pytest.approx(result.tokens_per_forward, abs=0.01)
        assert cells[-1] == ("✓" if examples.score(example.prompt, result.text) == 1.0 else "✗")
    # colour by confidence: every canvas switches without a re-run
    page.locator("#colour-by label", has_text="confidence").click()
    page.wait_for_function("document.body.classList.contains('dl-conf-mode')")
    page.locator("#colour-by label", has_text="step").click()
    page.wait_for_function("document.body.classList.contains('dl-step-mode')")
    page.locator("#summary").scroll_into_view_if_needed()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
    print(f"browser run: {time.time() - started:.1f} s")


def test_bad_parameter_errors_in_its_column_only(page):
    fill(page, "sampler-0-fast-dllm-threshold", "1.5")
    fill(page, "gen_length-1", "32")  # tells this run's canvas from the previous one
    page.click("#run-all")
    page.wait_for_selector("#counters-0 .dl-counters[data-status=error]", timeout=60_000)
    page.wait_for_selector("#canvas-1 .dl-canvas[data-positions='32']", timeout=60_000)
    page.wait_for_selector("#counters-1 .dl-counters[data-status=done]", timeout=120_000)
    assert "fast-dllm.threshold=1.5 is out of range" in page.locator("#counters-0").inner_text()
    fill(page, "sampler-0-fast-dllm-threshold", "0.7")


SPEC_WATCH_JS = """
() => {
  window.dlSpecSeen = [];
  const record = () => {
    const c = document.querySelector('#spec-status .dl-counters');
    if (c && c.dataset.status === 'running' && c.dataset.rounds) window.dlSpecSeen.push(+c.dataset.rounds);
  };
  new MutationObserver(record).observe(document.body, {subtree: true, childList: true, attributes: true});
}
"""


def spec_status(page) -> str:
    return page.locator("#spec-status .dl-counters").get_attribute("data-status")


def test_speculative_tab_streams_and_stops_in_chromium(page, server):
    """The speculative tab through the page: a run's texts and rounds are dllm.speculate's (and its
    plain-AR baseline's); a long run streams its rounds, and Stop ends it mid-run with "stopped" and
    the text so far, after which nothing changes. In a page of its own: the columns' canvases and
    heat maps left by the tests above make every streamed update of headless, software-rendered
    Chromium on a small CPU seconds slower, and the Stop click with it."""
    verifier = dllm.load("tiny-ar")
    page = page.context.browser.new_page(viewport={"width": 1500, "height": 1100})
    try:
        page.goto(server)
        page.get_by_role("tab", name="Speculative").click()
        choose(page, "spec-drafter", "deer")
        fill(page, "spec-drafter-deer-k", "2")
        prompt = "copy: Nora Diaz, Oscar Cook, Liam Park, Emma Stone, Ava Reed"  # the newline box adds "\n"
        fill(page, "spec-prompt", prompt)
        fill(page, "spec-max-new-tokens", "40")
        page.click("#spec-run")
        page.wait_for_selector("#spec-status .dl-counters[data-status=done]", timeout=120_000)
        drafter = dllm.drafters.get("deer", k=2)
        [spec] = dllm.speculate(verifier, prompt + "\n", drafter, max_new_tokens=40)
        [plain] = dllm.speculate(verifier, prompt + "\n", max_new_tokens=40)
        texts = page.locator("#spec-text textarea").input_value()
        assert texts == f"speculative: {spec.text}\nplain AR:    {plain.text}"
        assert page.locator("#spec-status .dl-counters").get_attribute("data-rounds") == str(spec.rounds)
        assert page.locator("#spec-rounds .dl-rounds").get_attribute("data-rounds") == str(spec.rounds)

        # greedy tiny-ar repeats "rabbit" up to the budget here: about 170 deer rounds, seconds of decoding
        long_prompt, budget = "copy: zq xv wk", 400
        fill(page, "spec-prompt", long_prompt)
        fill(page, "spec-max-new-tokens", str(budget))
        page.evaluate(SPEC_WATCH_JS)
        page.click("#spec-run")
        page.wait_for_function(
            "() => { const c = document.querySelector('#spec-status .dl-counters');"
            " return c && c.dataset.status === 'running' && +c.dataset.rounds >= 2; }",
            timeout=120_000,
        )
        page.click("#spec-stop")
        page.wait_for_selector("#spec-status .dl-counters[data-status=stopped]", timeout=60_000)
        status = page.locator("#spec-status .dl-counters")
        rounds = int(status.get_attribute("data-rounds"))
        assert "stopped by the user" in status.inner_text()
        shown = page.locator("#spec-text textarea").input_value()
        [full] = dllm.speculate(verifier, long_prompt + "\n", drafter, max_new_tokens=budget)
        if "\nplain AR:" not in shown:  # stopped in the speculative run (the usual case): no baseline
            assert 2 <= rounds < full.rounds and full.text.startswith(shown.removeprefix("speculative: "))
        else:  # the click came late, in the baseline: the speculative result is whole
            [full_plain] = dllm.speculate(verifier, long_prompt + "\n", max_new_tokens=budget)
            spec_line, plain_line = shown.split("\nplain AR:    ")
            assert spec_line == f"speculative: {full.text}" and full_plain.text.startswith(plain_line)
            assert rounds < full_plain.rounds
        seen = page.evaluate("window.dlSpecSeen")
        assert len(set(seen)) >= 2, seen  # the rounds streamed
        time.sleep(1.0)  # nothing after the stop
        assert spec_status(page) == "stopped" and page.locator("#spec-text textarea").input_value() == shown
        assert int(page.locator("#spec-status .dl-counters").get_attribute("data-rounds")) == rounds
    finally:
        page.close()
