"""Cache policies: equivalences with no cache, the dKV delay rule, Elastic's drift extremes, any
sampler with any cache on both layouts, batching, guidance, canvas edits, validation."""

import dataclasses
from dataclasses import dataclass, field

import pytest
import torch
from _models import MASK, load_benchmark, random_model

import dllm
from dllm.caches.base import mask_to_query, padded_columns
from dllm.caches.dkv import DKVDecodeCache, window_around
from dllm.samplers.base import Sampler
from dllm.selection import top_k_mask
from dllm.state import Decision, Edit
from dllm.zoo import shipped_models
from dllm.zoo.tokenizer import load_tokenizer

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26, 27]]
SETTINGS = dict(gen_length=16, block_length=8)
ARCHS = ["llada", "dream"]

# Each policy's "refresh at every step" setting: it must reproduce the no-cache tokens exactly.
EVERY_STEP = {
    "none": {},
    "prefix": {"refresh_interval": 1},
    "dual": {"refresh_interval": 1},
    "dkv-decode": {"refresh_interval": 1},
    "dkv-greedy": {"refresh_interval": 1},
    "elastic": {"gamma": 1.5},  # drift always detected at layer 0 -> every layer recomputed
    "block-cache": {"refresh_interval": 1},  # block-diffusion models only: skipped on the others
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared CPU the spin-waits cost seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models():
    return {arch: random_model(arch) for arch in ARCHS}


def run(model, cache="none", sampler="llada", prompts=PROMPTS, **settings):
    reason = dllm.caches.get(cache).unsupported_reason(model)
    if reason:
        pytest.skip(reason)
    return dllm.generate(model, prompts, sampler=sampler, cache=cache, **{**SETTINGS, **settings})


def canvases(results):
    return [r.canvas for r in results]


def test_every_registered_cache_has_an_every_step_setting():
    assert set(dllm.caches.names()) == set(EVERY_STEP)


_BASELINES = {}
# Samplers with plain blocks, sampled tokens, guidance (2B rows), whole-generation logits + fill
# edits (prophet), length probes + mask insertion + truncation (daedal, small settings).
EVERY_STEP_SAMPLERS = {
    "llada": ("llada", {}, {}),
    "fast-dllm-sampled": ("fast-dllm", {}, {"temperature": 0.7}),
    "llada-cfg": ("llada", {}, {"cfg_scale": 1.5}),
    "prophet": (
        "prophet",
        {"early_threshold": 1.0, "mid_threshold": 1.0, "late_threshold": 1.0},
        {},
    ),  # fires mid-way
    "daedal": (
        "daedal",
        {
            "initial_length": 8,
            "max_length": 24,
            "eos_check_tokens": 4,
            "eos_tail": 2,
            "expansion": 4,
            "eos_threshold": 0.0,
            "expand_eos_threshold": 1.0,
            "low_confidence": 0.6,
        },
        {},
    ),  # inserts
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(EVERY_STEP))
@pytest.mark.parametrize("setting", sorted(EVERY_STEP_SAMPLERS))
def test_refresh_every_step_equals_no_cache(models, arch, name, setting):
    sampler, params, extra = EVERY_STEP_SAMPLERS[setting]
    key = ("every-step", arch, setting)
    if key not in _BASELINES:
        _BASELINES[key] = run(models[arch], "none", dllm.samplers.get(sampler, **params), **extra)
    cached = run(
        models[arch], dllm.caches.get(name, **EVERY_STEP[name]), dllm.samplers.get(sampler, **params), **extra
    )
    assert canvases(cached) == canvases(_BASELINES[key])
    assert [r.nfe for r in cached] == [r.nfe for r in _BASELINES[key]]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("sampler", ["llada", "fast-dllm"])
def test_dual_with_suffix_recomputed_equals_prefix(models, arch, sampler):
    prefix = run(models[arch], "prefix", sampler, gen_length=24)
    dual = run(models[arch], dllm.caches.get("dual", recompute_suffix=True), sampler, gen_length=24)
    assert canvases(dual) == canvases(prefix)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", sorted(EVERY_STEP))
def test_batch_equals_each_prompt_alone(models, arch, name):
    batch = run(models[arch], name, "fast-dllm")
    for prompt, together in zip(PROMPTS, batch):
        [alone] = run(models[arch], name, "fast-dllm", prompts=[prompt])
        assert together.canvas == alone.canvas


# ---- dKV-Cache: the delay rule, step by step ----------------------------------------------


@dataclass
class _RightToLeft(Sampler):
    """Commits the last masked column of the block; asks for that column's logits only."""

    def logit_region(self, state):
        cols = state.column_index()
        masked = state.is_mask() & state.in_block()
        last = torch.where(masked, cols, -1).max(1).values.clamp(min=state.gen_start)
        return last, last + 1

    def select(self, view):
        return Decision(commit=view.cand.clone())


@dataclass
class _Recording(DKVDecodeCache):
    log: list = field(default_factory=list)

    def plan(self, state, logit_cols):
        plan = super().plan(state, logit_cols)
        query = None if plan.query is None else [set(row) for row in plan.query.tolist()]
        self.log.append((state.tokens.clone(), state.valid.clone(), query))
        return plan


@pytest.mark.parametrize("arch", ARCHS)
def test_dkv_decode_delay_rule(models, arch):
    model = models[arch]
    shift = model.shift
    cache = _Recording(refresh_interval=100)
    run(model, cache, _RightToLeft(), gen_length=12, block_length=12)
    log = cache.log
    assert log[0][2] is None and all(q is not None for _, _, q in log[1:])  # one refresh, at the start
    for t in range(1, len(log) - 1):
        before, after = log[t][0], log[t + 1][0]
        for row in range(len(PROMPTS)):
            [decoded] = (before[row] != after[row]).nonzero()[:, 0].tolist()  # decoded at step t
            source = decoded - shift  # the row whose hidden state predicts it
            assert source in log[t + 1][2][row], "recomputed at t+1"
            if t + 2 < len(log):
                assert source not in log[t + 2][2][row], "read from the cache from t+2 on"
    for t in range(1, len(log)):  # the whole query set is the rule: rows whose target was masked before
        real_before = log[t - 1][0] != MASK
        tokens, valid, query = log[t]
        target = torch.cat([real_before[:, shift:], real_before[:, -shift:]], 1) if shift else real_before
        for row in range(len(PROMPTS)):
            expected = set((~target[row] & valid[row]).nonzero()[:, 0].tolist())
            masked = (tokens[row] == MASK) & valid[row]
            last = int(masked.nonzero()[-1, 0]) if masked.any() else None
            assert expected <= query[row] and query[row] - expected <= ({last - shift} if last else set())


def test_dkv_greedy_window():
    masked = torch.tensor([[1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1]]).bool()
    decoded = torch.tensor([[0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0]]).bool()
    assert window_around(decoded, masked, 4).int().tolist() == [[0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0]]
    assert window_around(decoded, masked, 1).int().tolist() == [[0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0]]
    assert not window_around(decoded, masked, 0).any()


# ---- Elastic-Cache --------------------------------------------------------------------------


def _elastic_run(model, **params):
    seen = {}
    results = run(
        model,
        dllm.caches.get("elastic", **params),
        "fast-dllm",
        callback=lambda event: seen.update(state=event.state),
    )
    return results, seen["state"].cache_state


@pytest.mark.parametrize("arch", ARCHS)
def test_elastic_drift_extremes(models, arch):
    model = models[arch]
    layers, rows = model.config.n_layers, len(PROMPTS)
    _, never = _elastic_run(model, gamma=-1.0)
    assert never.full_row_layers == rows * layers  # only the first forward, nothing after
    full, always = _elastic_run(model, gamma=1.5)
    assert always.full_row_layers == always.row_layers
    assert canvases(full) == canvases(run(model, "none", "fast-dllm"))
    _, next_layer = _elastic_run(model, gamma=1.5, from_next_layer=True)  # reference: layer 0 stays cached
    later = next_layer.row_layers - rows * layers
    assert next_layer.full_row_layers == rows * layers + later * (layers - 1) // layers
    _, default = _elastic_run(model)
    assert never.full_row_layers <= default.full_row_layers <= always.full_row_layers


@pytest.mark.parametrize("arch", ARCHS)
def test_elastic_probabilities_from_the_kernel_lse(models, arch):
    """Tracked/window probabilities from attend()'s log-sum-exp match the directly normalised rows."""
    from_lse, lse_stats = _elastic_run(models[arch], use_lse=True)
    direct, direct_stats = _elastic_run(models[arch], use_lse=False)
    assert canvases(from_lse) == canvases(direct)
    assert lse_stats.full_row_layers == direct_stats.full_row_layers


def test_elastic_queries_are_small(models):
    """After the first forward, a step recomputes the window, new tokens and tracked tokens only."""
    widths = []

    @dataclass
    class Spy(dllm.caches.ElasticCache):
        def plan(self, state, logit_cols):
            plan = super().plan(state, logit_cols)
            widths.append(state.width if plan.query is None else plan.query.shape[1])
            return plan

    run(models["llada"], Spy(window=4, gamma=-1.0), "llada", gen_length=64, block_length=8)
    assert widths[0] == len(PROMPTS[2]) + 64 and max(widths[1:]) <= 8 + 2 + 4 * 2


# ---- any sampler with any cache --------------------------------------------------------------


def _with_tokenizer(arch):
    """A random model with the shipped tokenizer, so samplers that resolve delimiters can run."""
    return dataclasses.replace(random_model(arch, vocab=936), tokenizer=load_tokenizer())


# Smaller settings for samplers whose defaults plan long canvases (keeps the matrix fast).
SMALL = {"daedal": {"initial_length": 8, "max_length": 24, "eos_check_tokens": 8, "eos_tail": 4}}


def _matrix_models():
    models = [
        ("random-llada", lambda: _with_tokenizer("llada")),
        ("random-dream", lambda: _with_tokenizer("dream")),
        (
            "random-fdllm2",
            lambda: dataclasses.replace(
                random_model(
                    "fast_dllm_v2",
                    vocab=936,
                    shift_logits=True,
                    qkv_bias=True,
                    rope_fp32=False,
                    n_kv_heads=2,
                    block_size=8,
                ),
                tokenizer=load_tokenizer(),
            ),
        ),
    ]
    shipped = shipped_models()
    for name in ("tiny-llada", "tiny-dream"):
        loader = (lambda n=name: dllm.load(n)) if name in shipped else None
        models.append(pytest.param(name, loader, marks=pytest.mark.slow))
    return models


_LOADED = {}


@pytest.mark.parametrize("cache", dllm.caches.names())
@pytest.mark.parametrize("sampler", dllm.samplers.names())
@pytest.mark.parametrize("model_name,loader", _matrix_models(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_sampler_with_every_cache(model_name, loader, sampler, cache):
    if loader is None:
        pytest.skip(f"{model_name} is not shipped in this installation")
    model = _LOADED.setdefault(model_name, loader())
    prompts = PROMPTS[1:] if model.name.startswith("random") else ["Reverse: a b c d\n", "Sort: 3 1 2\n"]
    params = SMALL.get(sampler, {}) if model.name.startswith("random") else {}
    name, sampler = sampler, dllm.samplers.get(sampler, **params)
    if (model_name, name) not in _BASELINES:
        try:
            run(model, "none", sampler, prompts=prompts)
            _BASELINES[model_name, name] = None
        except (ValueError, FileNotFoundError) as error:  # e.g. no trained filter for this model
            _BASELINES[model_name, name] = str(error)
    if _BASELINES[model_name, name] is not None:
        pytest.skip(f"sampler {name!r} cannot run on {model_name}: {_BASELINES[model_name, name]}")
    prompt_cols = {}

    def check_prompt(event):
        for i, row in enumerate(event.rows):  # finished rows leave the batch
            head = event.state.tokens[i, : event.state.gen_start]
            assert torch.equal(prompt_cols.setdefault(row, head.clone()), head), "prompt changed"

    results = run(model, cache, sampler, prompts=prompts, callback=check_prompt)
    assert all(MASK not in r.canvas and model.mask_id not in r.canvas for r in results)
    assert all(r.nfe >= 1 for r in results)


# ---- logit regions, canvas edits, helpers, validation ----------------------------------------


@dataclass
class _WholeRegion(Sampler):
    """Asks for logits over the whole generation (Prophet/DAEDAL style), decodes the block."""

    def logit_region(self, state):
        return torch.full_like(state.gen_end, state.gen_start), state.gen_end

    def select(self, view):
        return Decision(commit=top_k_mask(view.score, view.cand, torch.ones_like(view.state.gen_end)))


@pytest.mark.parametrize("arch", ARCHS)
def test_logit_region_beyond_the_block_is_recomputed(models, arch):
    results = run(models[arch], "dual", _WholeRegion())
    assert all(MASK not in r.canvas for r in results)


@dataclass
class _TruncateOnce(Sampler):
    done: bool = False

    def select(self, view):
        commit = top_k_mask(view.score, view.cand, torch.ones_like(view.state.gen_end))
        edits = [] if self.done else [Edit(op="truncate", row=1, col=view.state.gen_start + 12)]
        self.done = True
        return Decision(commit=commit, edits=edits)


def test_edit_outside_commit_refreshes_that_row(models):
    widths = []

    @dataclass
    class Spy(dllm.caches.DualCache):
        def plan(self, state, logit_cols):
            plan = super().plan(state, logit_cols)
            if plan.refresh_rows is not None and 1 in plan.refresh_rows.tolist():  # row 1 refreshed apart
                assert plan.refresh_query is None and plan.refresh_rows.tolist() == [1]
                widths.append(state.width)  # None: every canvas column, as the batch query did
            else:
                widths.append(None if plan.query is None else int(plan.query[1].unique().numel()))
            return plan

    run(models["llada"], Spy(), _TruncateOnce())
    assert widths[0] is None and widths[1] == len(PROMPTS[2]) + 16 and widths[2] <= 8


def test_query_helpers():
    need = torch.tensor([[0, 1, 0, 1], [0, 0, 1, 0]]).bool()
    assert mask_to_query(need).tolist() == [[1, 3], [2, 2]]
    cols, real = padded_columns(torch.zeros(1, 3, dtype=torch.bool))
    assert cols.tolist() == [[0]] and real.tolist() == [[False]]


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("prefix", {"refresh_interval": 0}, "prefix.refresh_interval=0"),
        ("dual", {"refresh_interval": 1.5}, "dual.refresh_interval=1.5"),
        ("dual", {"recompute_suffix": "yes"}, "dual.recompute_suffix"),
        ("dkv-decode", {"refresh_interval": -2}, "dkv-decode.refresh_interval=-2"),
        ("dkv-greedy", {"window": -1}, "dkv-greedy.window=-1"),
        ("elastic", {"gamma": 3.0}, r"elastic.gamma=3.0 is out of range; allowed \[-1.0, 2.0\]"),
        ("elastic", {"window": 0}, "elastic.window=0"),
        ("elastic", {"track_num": 0}, "elastic.track_num=0"),
        (
            "elastic",
            {"from_next_layer": None},
            "elastic.from_next_layer=None has the wrong type; expected true or false",
        ),
        ("elastic", {"use_lse": 1}, "elastic.use_lse=1 has the wrong type; expected true or false or None"),
        ("dkv-decode", {"own_token": "no"}, "dkv-decode.own_token='no'"),
    ],
)
def test_bad_parameters_name_field_value_and_range(name, params, message):
    with pytest.raises(
        (ValueError, TypeError), match=message
    ):  # TypeError: a wrong type (dllm.config.check_fields)
        dllm.caches.get(name, **params)


def test_caches_are_listed_with_parameters():
    rows = {row["name"]: row for row in dllm.caches.describe()}
    assert rows["dkv-decode"]["params"]["refresh_interval"] == 8
    assert rows["dkv-greedy"]["params"] == {"refresh_interval": 2, "window": 4}
    assert rows["elastic"]["params"]["gamma"] == 0.9 and rows["elastic"]["params"]["window"] == 16


def test_elastic_head_cosine_matches_normalize():
    import torch.nn.functional as F

    from dllm.caches.elastic import head_cosine

    a, b = torch.rand(2, 6, 3, 40), torch.rand(2, 6, 3, 40)
    b[0, :, 0] = 0  # an all-zero vector: F.normalize's eps keeps the cosine at 0
    expected = (F.normalize(a, dim=1) * F.normalize(b, dim=1)).sum(1)
    torch.testing.assert_close(head_cosine(a, b), expected)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("foo", "unknown cache 'foo'"),
        ("dual:foo=1", "cache 'dual' has no parameter"),
        ("dkv-greedy:refresh_interval=0", "refresh_interval=0 is out of range"),
        ("dual:refresh_interval", "expects KEY=VALUE"),
    ],
)
def test_cache_benchmark_rejects_bad_cache_specs(spec, message, capsys):
    with pytest.raises(SystemExit) as exit_info:  # argparse prints its error; parse_key_values raises it
        load_benchmark().main(["--models", "random:llada", "--caches", spec])
    assert message in capsys.readouterr().err + str(exit_info.value.code)


def test_cache_benchmark_parses_cache_parameters():
    bench = load_benchmark()
    assert bench.split_cache_spec("dkv-greedy:refresh_interval=8,window=2") == (
        "dkv-greedy",
        '{"refresh_interval": 8, "window": 2}',
    )
    assert bench.split_cache_spec("dual") == ("dual", "{}")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_gpu_benchmarks_say_plainly_when_there_is_no_gpu(capsys):
    with pytest.raises(SystemExit):
        load_benchmark().main(["--device", "cuda", "--models", "random:llada"])
    assert "sees no CUDA GPU" in capsys.readouterr().err
    assert load_benchmark("attention").main([]) == 2
    assert "none is available here" in capsys.readouterr().err


def test_cache_benchmark_rejects_an_empty_random_prompt(capsys):
    with pytest.raises(SystemExit):
        load_benchmark().main(["--models", "random:llada", "--random-prompt-tokens", "0"])
    assert "--random-prompt-tokens must be at least 1, got 0" in capsys.readouterr().err


def test_cache_benchmark_full_size_random_models_have_the_real_shapes():
    """random:llada-8b / random:dream-7b (GPU speed runs) are built in their dtype, with 8.0B / 7.6B
    parameters."""
    bench = load_benchmark()
    llada = bench._full_size_model("llada-8b", "meta", torch.bfloat16)
    dream = bench._full_size_model("dream-7b", "meta", torch.bfloat16)
    count = lambda m: sum(p.numel() for p in m.net.parameters())  # noqa: E731
    assert round(count(llada) / 1e9, 2) == 8.02 and round(count(dream) / 1e9, 2) == 7.62
    assert next(llada.net.parameters()).dtype == torch.bfloat16
    assert llada.mask_id == 126336 and dream.mask_id == 151666 and dream.config.shift_logits


def test_cache_benchmark_shards_extend_one_prompt_list():
    """--first N starts at held-out prompt N: two shards together are the same prompts as one run."""
    bench = load_benchmark()
    model = dllm.load("tiny-llada") if "tiny-llada" in shipped_models() else random_model("llada")
    whole = bench.prompts(model, 6)
    shards = bench.prompts(model, 2) + bench.prompts(model, 4, first=2)
    assert [ids for _, _, ids in shards] == [ids for _, _, ids in whole]
    assert [task.name for task, _, _ in shards] == [task.name for task, _, _ in whole]


def _shard(first, cache, prompts, correct, gained, lost, cpu, **extra):
    return {
        "model": "tiny-llada",
        "gen": 512,
        "sampler": "llada",
        "cache": cache,
        "first": first,
        "wall": cpu,
        "cpu": cpu,
        "prompts": prompts,
        "correct": correct,
        "gained": gained,
        "lost": lost,
        "same_answer_count": prompts - gained - lost,
        "same_token_count": 100 * prompts,
        "canvas_tokens": 100 * prompts,
        "gen_tokens": 10 * prompts,
        "nfe_total": 512 * prompts,
        "peak_rss_mb": 400.0 + first,
        "cache_mb": 1.5,
        **extra,
    }


def test_cache_benchmark_merge_pools_shards(tmp_path, capsys):
    import json

    bench = load_benchmark()
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(
        json.dumps(
            [
                _shard(0, "none", 4, 2, 0, 0, 80.0),
                _shard(0, "elastic", 4, 1, 0, 1, 20.0, full_layer_fraction=0.1),
            ]
        )
    )
    b.write_text(
        json.dumps(
            [
                _shard(4, "none", 12, 6, 0, 0, 240.0),
                _shard(4, "elastic", 12, 7, 2, 1, 40.0, full_layer_fraction=0.3),
            ]
        )
    )
    pooled = {e["cache"]: e for e in bench.merge([str(a), str(b)])}
    elastic = pooled["elastic"]
    assert (elastic["prompts"], elastic["correct"], elastic["gained"], elastic["lost"]) == (16, 8, 2, 2)
    assert elastic["cpu"] == 60.0 and elastic["peak_rss_mb"] == 404.0
    assert elastic["full_layer_fraction"] == pytest.approx((0.1 * 4 + 0.3 * 12) / 16)
    bench.main(["--merge", str(a), str(b)])
    line = [row for row in capsys.readouterr().out.splitlines() if "| elastic |" in row][0]
    cells = [c.strip() for c in line.split("|")]
    assert cells[8] == "5.33x" and cells[12] == "50.0" and cells[13] == "+2 / -2" and cells[19] == "25%"
    assert cells[14] == "+0.0 ± 24.5"  # 1.96 * sqrt((4 / 16) / 16) = 0.245


def test_cache_benchmark_merge_rejects_overlapping_or_incomplete_shards(tmp_path, capsys):
    import json

    bench = load_benchmark()
    a, b, old = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "old.json"
    a.write_text(json.dumps([_shard(0, "none", 4, 2, 0, 0, 80.0), _shard(0, "dual", 4, 2, 0, 0, 10.0)]))
    b.write_text(json.dumps([_shard(4, "dual", 4, 2, 0, 0, 10.0)]))
    old.write_text(json.dumps([{"model": "tiny-llada", "cache": "none", "accuracy": 50.0}]))
    with pytest.raises(SystemExit, match="appear twice"):
        bench.merge([str(a), str(a)])
    with pytest.raises(SystemExit, match="pooled 8 prompts but no cache 4"):
        bench.print_merged([str(a), str(b)])
    with pytest.raises(SystemExit, match="older version"):
        bench.merge([str(old)])
    with pytest.raises(SystemExit):
        bench.main(["--models", "random:llada", "--first", "-1"])
    assert "--first must be at least 0, got -1" in capsys.readouterr().err


def test_op_count_benchmark_counts_and_rejects_bad_input(capsys):
    bench = load_benchmark("op_count")
    bench.main(["--layers", "2", "--gen", "8", "--caches", "none", "dual"])
    rows = [
        line
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| none") or line.startswith("| dual")
    ]
    counts = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in rows}
    assert counts["none"] > 0 and counts["dual"] > counts["none"]  # dual adds its K/V writes and plan
    with pytest.raises(SystemExit):
        bench.main(["--caches", "foo"])
    assert "unknown ['foo']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--layers", "0"])
    assert "must be at least 1" in capsys.readouterr().err
