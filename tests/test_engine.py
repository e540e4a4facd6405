"""The one engine (dllm.engine) under generate, speculate and the Batcher: every request equals its
run alone through every entry point and both kinds of step, whatever joins or leaves beside it;
settings resolve the same way everywhere; one drafter / length controller instance serves
concurrent calls; cancel and failing listeners end only their own request."""

import concurrent.futures
import threading
import time
import types

import pytest
import torch

import dllm
from dllm import drafters
from dllm.config import GenerationConfig, resolve_generation
from dllm.drafters import SpeculativeConfig
from dllm.drafters.verify import verify, verify_rows
from dllm.eval import tasks
from dllm.serving import Batcher


@pytest.fixture(scope="module")
def verifier():
    torch.set_num_threads(1)
    return dllm.load("tiny-ar")


@pytest.fixture(scope="module")
def llada():
    return dllm.load("tiny-llada")


@pytest.fixture(scope="module")
def prompts():
    names = ("copy", "reverse", "sort", "insert_index", "shuffle")
    return [e.prompt for name in names for e in tasks.get(name).examples("eval", 4)]  # 20 prompts


DRAFTERS = {
    "ar": lambda: drafters.get("ar"),
    "deer": lambda: drafters.get("deer"),
    "diffuspec": lambda: drafters.get("diffuspec"),
    "dllm": lambda: drafters.get("dllm", model="tiny-dream"),
}


def _key(results):
    return [(r.ids, r.rounds, r.accepted, r.verifier_forwards) for r in results]


# ---------------------------------------------------------------------------- speculative rows
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DRAFTERS))
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_speculative_rows_equal_their_runs_alone_at_every_max_batch(verifier, prompts, name, temperature):
    drafter = DRAFTERS[name]()
    settings = dict(max_new_tokens=24, temperature=temperature, seed=5)
    alone = [dllm.speculate(verifier, [p], drafter, **settings)[0] for p in prompts]
    for max_batch in (1, 3, 8):
        batched = dllm.speculate(verifier, prompts, drafter, max_batch=max_batch, **settings)
        assert _key(batched) == _key(alone), f"max_batch={max_batch}"


def test_continuous_speculative_batching_keeps_max_batch_rows_and_joins(verifier, prompts):
    rows = []
    results = dllm.speculate(
        verifier,
        prompts[:7],
        "deer",
        max_batch=3,
        max_new_tokens=16,
        callback=lambda event: rows.append(list(event.rows)),
    )
    assert max(len(r) for r in rows) == 3
    assert {i for r in rows for i in r} == set(range(7))
    assert any(r[-1] > 2 for r in rows[:-1] if len(r) == 3)  # a later prompt ran beside earlier ones
    alone = [dllm.speculate(verifier, [p], "deer", max_new_tokens=16)[0] for p in prompts[:7]]
    assert _key(results) == _key(alone)


def test_vectorised_verification_equals_the_one_row_rule():
    torch.manual_seed(0)
    vocab, drafts = 11, [[3, 4, 5], [], [7, 1], [2, 2, 2, 2]]
    scores = torch.randn(len(drafts), 6, vocab)
    first = [1, 0, 2, 1]
    for kind in ("greedy", "ratio", "point"):
        qs = [
            torch.softmax(torch.randn(len(d), vocab), -1) if kind == "ratio" and d else None for d in drafts
        ]
        sampling = drafters.Sampling(temperature=0.0 if kind == "greedy" else 0.8, top_k=6)
        p = None if sampling.greedy else sampling.distribution
        gens = [torch.Generator().manual_seed(i) for i in range(len(drafts))]
        got = verify_rows(scores, first, drafts, qs, probabilities=p, generators=gens)
        want = ([], [])
        for row, draft in enumerate(drafts):
            part = scores[row, first[row] : first[row] + len(draft) + 1]
            dist = part if sampling.greedy else sampling.distribution(part)
            n, token = verify(
                dist, draft, qs[row], greedy=sampling.greedy, generator=torch.Generator().manual_seed(row)
            )
            want[0].append(n)
            want[1].append(token)
        assert got == want, kind


# ---------------------------------------------------------------------------- one instance, many threads
@pytest.mark.parametrize("name", ["ar", "deer"])
def test_one_drafter_and_one_length_controller_serve_two_threads(verifier, prompts, name):
    drafter, controller = DRAFTERS[name](), drafters.length.get("heuristic")
    jobs = [prompts[0:3], prompts[5:9]]
    alone = [
        dllm.speculate(verifier, job, DRAFTERS[name](), length="heuristic", max_new_tokens=24) for job in jobs
    ]
    barrier = threading.Barrier(len(jobs))

    def call(job):
        barrier.wait()
        return dllm.speculate(verifier, job, drafter, length=controller, max_new_tokens=24)

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        together = list(pool.map(call, jobs * 2))
    assert [_key(r) for r in together] == [_key(r) for r in alone * 2]


# ---------------------------------------------------------------------------- the speculative Batcher
def test_speculative_batcher_streams_cancels_and_equals_alone(verifier, prompts):
    started, release = threading.Event(), threading.Event()
    seen: dict[int, list] = {}

    def hold(event, row):  # the first request's first round waits until the others are queued
        seen.setdefault(event.rows[row], []).append(list(event.new[row]))
        started.set()
        release.wait(30)

    def cancel_at_once(event, row):
        doomed.cancel()

    def boom(event, row):
        raise RuntimeError("listener broke")

    batcher = Batcher(verifier, drafter="deer", max_batch=4, max_new_tokens=20)
    try:
        first = batcher.submit(prompts[0], on_step=hold)
        assert started.wait(30)
        doomed = batcher.submit(prompts[1], on_step=cancel_at_once)
        broken = batcher.submit(prompts[2], on_step=boom)
        rest = [batcher.submit(p) for p in prompts[3:8]]
        release.set()
        with pytest.raises(concurrent.futures.CancelledError):
            doomed.result(60)
        with pytest.raises(RuntimeError, match="listener broke"):
            broken.result(60)
        got = [first.result(60)] + [r.result(60) for r in rest]
    finally:
        batcher.close()
    want = [dllm.speculate(verifier, [p], "deer", max_new_tokens=20)[0] for p in [prompts[0], *prompts[3:8]]]
    assert _key(got) == _key(want)
    streamed = [t for new in seen[first.index] for t in new]
    assert streamed[: len(want[0].ids)] == want[0].ids  # the rounds streamed the answer as it grew
    assert all(r.queue_seconds >= 0 and r.seconds > 0 for r in got)


def test_batcher_refuses_mixed_kinds(verifier, llada):
    with pytest.raises(ValueError, match="autoregressive model: it is served with speculative decoding"):
        Batcher(verifier, sampler="llada")
    with pytest.raises(ValueError, match="diffusion model: it decodes with a sampler"):
        Batcher(llada, drafter="deer")
    with pytest.raises(TypeError, match="unknown speculative setting"):
        Batcher(verifier, gen_length=16)
    with pytest.raises(TypeError, match="needs a model loaded by dllm.load"):
        Batcher("tiny-llada")


# ---------------------------------------------------------------------------- settings resolution
def test_the_batcher_resolves_settings_as_generate_does(llada):
    text = tasks.get("copy").examples("eval", 1)[0].prompt
    for settings in ({"gen_length": 256, "block_length": 32}, {"gen_length": 48, "block_length": 16}):
        [want] = dllm.generate(llada, [text], sampler="llada", **settings)
        batcher = Batcher(llada, "llada", **settings)
        try:
            got = batcher.submit(text).result(120)
        finally:
            batcher.close()
        assert (got.canvas, got.steps, got.nfe) == (want.canvas, want.steps, want.nfe)
        assert got.steps == settings["gen_length"]  # one token per step, as the default says


def test_resolution_rederives_what_depends_on_a_setting():
    assert resolve_generation(gen_length=48, block_length=16).steps == 48
    assert resolve_generation(GenerationConfig(), gen_length=48, block_length=16).steps == 48
    explicit = GenerationConfig(gen_length=64, steps=32)
    assert resolve_generation(explicit, temperature=0.5).steps == 32  # given steps are kept
    assert resolve_generation(explicit, gen_length=32).steps == 32  # a new length re-derives them

    class BlockModel:
        class config:
            block_size = 8

    assert resolve_generation(model=BlockModel, gen_length=32).block_length == 8
    assert resolve_generation(model=BlockModel, gen_length=32, block_length=16).block_length == 16
    with pytest.raises(TypeError, match="unknown generation setting"):
        resolve_generation(gen_len=3)
    with pytest.raises(ValueError, match="steps=64 is more than gen_length=16"):
        GenerationConfig(gen_length=16, block_length=16, steps=64)


def test_speculate_applies_keywords_on_top_of_its_config(verifier):
    config = SpeculativeConfig(max_new_tokens=32)
    [result] = dllm.speculate(verifier, ["copy: Emma Stone, Liam Park\n"], config=config, max_new_tokens=4)
    assert result.verifier_forwards <= 4 and len(result.ids) <= 4
    with pytest.raises(TypeError, match="unknown speculative setting"):
        dllm.speculate(verifier, ["copy: a\n"], gen_length=4)


def test_a_drafter_with_a_length_changing_sampler_is_refused_up_front():
    with pytest.raises(ValueError, match="changes the canvas length"):
        drafters.get("dllm", sampler="daedal")


def test_two_threads_in_a_fresh_process_load_and_speculate(tmp_path):
    """transformers resolves its names lazily and not thread-safely: the first two concurrent calls
    of a fresh process raced there (ImportError: cannot import name 'AutoModelForCausalLM')."""
    import subprocess
    import sys

    script = tmp_path / "race.py"
    script.write_text(
        "import threading, dllm\n"
        "drafter, errors = dllm.drafters.get('ar'), []\n"
        "def go():\n"
        "    try:\n"
        "        dllm.speculate('tiny-ar', ['copy: Ava Cole\\n'], drafter, max_new_tokens=8)\n"
        "    except Exception as exc:\n"
        "        errors.append(repr(exc))\n"
        "threads = [threading.Thread(target=go) for _ in range(2)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(errors)\n"
    )
    for _ in range(2):  # it failed on every try before
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == "[]"


def test_speculative_rows_with_their_own_budget_and_seed_share_one_batch(verifier, prompts):
    """A server's requests differ in max_tokens and seed: as rows of one running batch, each equals
    ``speculate`` with its own max_new_tokens / seed (the batch's config gives only the default)."""
    asks = [
        (p, budget, seed) for p, budget, seed in zip(prompts[:6], (4, 20, 9, 1, 16, 12), (0, 1, 2, 3, 4, 5))
    ]
    batcher = Batcher(verifier, drafter="deer", max_batch=6, max_new_tokens=8, temperature=1.0)
    try:
        requests = [batcher.submit(p, max_new_tokens=budget, seed=seed) for p, budget, seed in asks]
        got = [r.result(60) for r in requests]
    finally:
        batcher.close()
    want = [
        dllm.speculate(verifier, [p], "deer", max_new_tokens=budget, seed=seed, temperature=1.0)[0]
        for p, budget, seed in asks
    ]
    assert _key(got) == _key(want)
    assert [len(r.ids) <= budget for r, (_, budget, _) in zip(got, asks)] == [True] * 6
    plain = Batcher(verifier, max_new_tokens=8)
    with pytest.raises(ValueError, match="max_new_tokens=0 is out of range"):
        plain.submit(prompts[0], max_new_tokens=0)
    plain.close()


def test_a_batcher_pool_keeps_the_most_recent_and_closes_the_rest(llada, prompts):
    from dllm.serving import BatcherPool

    pool = BatcherPool(2)
    made = []

    def make(gen):
        def build():
            made.append(Batcher(llada, "llada", max_batch=2, gen_length=gen, block_length=8))
            return made[-1]

        return build

    first = pool.get("8", make(8))
    assert pool.get("8", make(8)) is first and len(made) == 1
    pending = first.submit(prompts[0])
    pool.get("16", make(16))
    pool.get("8", make(8))  # used again: "16" is now the least recently used
    pool.get("24", make(24))
    assert [b.config.gen_length for b in pool.batchers()] == [8, 24]
    assert pending.result(60).text == dllm.generate(llada, prompts[0], gen_length=8, block_length=8)[0].text
    made[1]._worker.join(30)  # the evicted Batcher is closed
    assert not made[1]._worker.is_alive()
    pool.close()
    assert all(not b._worker.is_alive() for b in made)


class _Countdown:
    """A step kind whose row i needs ``ids[0]`` steps: the engine's bookkeeping without a model."""

    joins, keeps_finished, vocabulary = True, False, "the countdown's"

    def request(self, ids, on_step=None, index=None):
        from dllm.engine import Request

        return Request(ids, on_step, index=index)

    def start(self, requests, prompt_width):
        return [r.ids[0] for r in requests]

    def join(self, batch, requests):
        batch += [r.ids[0] for r in requests]

    def active(self, batch):
        return [n > 0 for n in batch]

    def step(self, batch):
        time.sleep(0.0002)
        batch[:] = [n - 1 for n in batch]
        return [n > 0 for n in batch]

    def event(self, batch):
        return None

    def fits(self, batch, request):
        return True

    def stop(self, batch, rows):
        return None

    def leave(self, batch, keep):
        batch[:] = [batch[i] for i in keep]

    def result(self, batch, row, request):
        return types.SimpleNamespace(steps=request.ids[0])

    def stalled(self, batch, steps):
        return False


def test_a_request_that_reuses_a_freed_requests_id_still_gets_its_result():
    """A server drops its requests once answered, and Python may give a new request the address (the
    id) of a freed one: the running batch must still report it (it once skipped it as reported)."""
    from dllm.engine import Batcher as EngineBatcher
    from dllm.engine import Engine

    kind = _Countdown()
    batcher = EngineBatcher(Engine(kind, max_batch=4), lambda ids, on_step=None: kind.request(ids, on_step))
    keeper = batcher.submit([10**9])  # keeps the batch running for the whole test
    try:
        for i in range(300):
            assert batcher.submit([1 + i % 3]).result(10).steps == 1 + i % 3
    finally:
        keeper.cancel()
        batcher.close(10)


def test_cancelling_a_waiting_request_settles_it_at_once():
    """A request still waiting for a row is cancelled at once (a server's queue depth and admission
    count it no more), and the running batch never takes it."""
    from dllm.engine import Batcher as EngineBatcher
    from dllm.engine import Engine

    kind = _Countdown()
    batcher = EngineBatcher(Engine(kind, max_batch=1), lambda ids, on_step=None: kind.request(ids, on_step))
    running = batcher.submit([10**9])  # holds the only row
    waiting = batcher.submit([3])
    try:
        waiting.cancel()
        assert waiting.done()
        with pytest.raises(concurrent.futures.CancelledError):
            waiting.result(0)
        after = batcher.submit([2])
        running.cancel()
        assert after.result(10).steps == 2
    finally:
        batcher.close(10)
