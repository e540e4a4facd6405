"""Seed samplers: degenerate settings equal the baselines, closed-form accuracies on an oracle model,
properties on random models, composition, configuration errors and filter lookup."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from _models import EOS, MASK, random_model
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import dllm
import dllm.shipped
import dllm.zoo
from dllm.samplers.base import Sampler
from dllm.samplers.daedal import eos_completion
from dllm.samplers.eotp import end_of_text_edits
from dllm.samplers.learn2pd import ConfidenceFilter, find_filter
from dllm.state import Decision

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26, 27]]
NEWLINE = 9  # the random models' "delimiter" token


class _Tokenizer:
    """Just enough tokenizer for ``resolve_tokens`` on the random models."""

    def encode(self, text, add_special_tokens=False):
        return {"\n": [NEWLINE], ",": [4]}.get(text, [1, 2])

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(map(str, ids))


def _model(arch, seed=0, eos_heavy=False):
    model = random_model(arch, seed=seed)
    model.tokenizer = _Tokenizer()
    if eos_heavy:  # make EOS the favourite prediction of many positions
        with torch.no_grad():
            outputs = dllm.generate(model, PROMPTS, sampler="llada", gen_length=16, block_length=8)
            favourite = torch.tensor([t for r in outputs for t in r.canvas]).mode().values
            model.net.lm_head.weight[EOS] = model.net.lm_head.weight[favourite] * 1.05
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["llada", "dream"])
def arch(request):
    return request.param


@pytest.fixture(scope="module")
def filter_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("filter")
    torch.manual_seed(0)
    module = ConfidenceFilter(8)
    with torch.no_grad():
        module.net[2].bias.fill_(1.0)  # accepts a fair share of positions
    module.save(folder, model="random")
    return str(folder)


def _run(model, sampler, prompts=PROMPTS, **settings):
    settings = {"gen_length": 16, "block_length": 8, **settings}
    return dllm.generate(model, prompts, sampler=sampler, **settings)


def _same_tokens(a, b):
    return [r.canvas for r in a] == [r.canvas for r in b]


# ---- degenerate settings reduce to the baselines ------------------------------------------


@pytest.mark.parametrize("threshold", [0.9, 0.2])
def test_localleap_relaxed_equal_strict_is_fast_dllm(arch, threshold):
    model = _model(arch)
    leap = _run(model, dllm.samplers.get("localleap", threshold=threshold, relaxed_threshold=threshold))
    fast = _run(model, dllm.samplers.get("fast-dllm", threshold=threshold))
    assert _same_tokens(leap, fast) and [r.nfe for r in leap] == [r.nfe for r in fast]


def test_localleap_relaxation_commits_more_near_anchors():
    model = _model("llada")
    strict = _run(model, dllm.samplers.get("fast-dllm", threshold=0.2), gen_length=32, block_length=32)
    leap = _run(
        model,
        dllm.samplers.get("localleap", threshold=0.2, relaxed_threshold=0.05, radius=3),
        gen_length=32,
        block_length=32,
    )
    assert sum(r.nfe for r in leap) < sum(r.nfe for r in strict)


@pytest.mark.parametrize("inner", ["llada", "fast-dllm"])
def test_prophet_infinite_thresholds_is_its_inner_sampler(arch, inner):
    model = _model(arch)
    inf = float("inf")
    prophet = dllm.samplers.get(
        "prophet", inner=inner, early_threshold=inf, mid_threshold=inf, late_threshold=inf
    )
    assert _same_tokens(_run(model, prophet), _run(model, inner))


def test_adablock_large_delta_is_fixed_blocks(arch):
    model = _model(arch)
    ada = _run(model, dllm.samplers.get("adablock", threshold=0.3, delimiter_threshold=1.5), gen_length=32)
    fixed = _run(model, dllm.samplers.get("fast-dllm", threshold=0.3), gen_length=32)
    assert _same_tokens(ada, fixed) and [r.nfe for r in ada] == [r.nfe for r in fixed]


def test_daedal_full_length_without_insertion_is_windowed_threshold(arch):
    model = _model(arch)
    daedal = dllm.samplers.get("daedal", initial_length=24, max_length=24, low_confidence=0.0)
    windowed = dllm.samplers.get("fast-dllm", threshold=0.9)
    a, b = _run(model, daedal, gen_length=24), _run(model, windowed, gen_length=24)
    assert _same_tokens(a, b) and [r.nfe for r in a] == [r.nfe for r in b]  # no probe forwards


def test_learn2pd_rejecting_filter_is_one_token_per_step(arch, filter_dir):
    model = _model(arch)
    l2p = dllm.samplers.get("learn2pd", filter_path=filter_dir, threshold=1.0, end_of_text=False)
    assert _same_tokens(_run(model, l2p), _run(model, "llada"))


# ---- oracle model: closed-form accuracies (binomial tolerance) ----------------------------

TRIALS = 1000
LETTERS = [chr(ord("A") + i) for i in range(16)]


def shuffle_topk_accuracy(n: int, k: int) -> float:
    """Confidence top-k on shuffle with exact marginals: prod over steps of P(m, k) / m^k (§2.8)."""
    acc, m = 1.0, n
    while m > 0:
        acc *= math.perm(m, min(k, m)) / m ** min(k, m)
        m -= min(k, m)
    return acc


def _accuracy(task, n, sampler, seed=0, **settings):
    """Accuracy of ``sampler`` on the ideal-marginal oracle (``dllm.eval.oracle``), infill of n slots."""
    from dllm.eval.oracle import IdealMarginalModel

    oracle = IdealMarginalModel(items=LETTERS, noise=1e-4, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    prompts, cases = [], []
    for _ in range(TRIALS):
        perm = [LETTERS[i] for i in torch.randperm(len(LETTERS), generator=gen).tolist()]
        items, new = perm[:n], perm[n]
        header = "shuffle" if task == "shuffle" else f"replace any with {new}"
        prompts.append(oracle.encode(f"{header}: {', '.join(items)}\n"))
        cases.append((items, new))
    results = dllm.generate(oracle, prompts, sampler=sampler, gen_length=n, block_length=n, **settings)
    correct = 0
    for (items, new), result in zip(cases, results):
        out = [oracle.vocab[t] for t in result.canvas]
        if task == "shuffle":
            correct += sorted(out) == sorted(items)
        else:
            changed = [b for a, b in zip(items, out) if a != b]
            correct += changed == [new]
    return correct / TRIALS


def _close(observed, expected):
    sigma = math.sqrt(max(expected * (1 - expected), 1e-4) / TRIALS)
    return abs(observed - expected) <= 4 * sigma + 1e-9


@pytest.mark.parametrize(
    "task,n,k,expected",
    [
        ("shuffle", 6, 1, 1.0),
        ("shuffle", 6, 2, shuffle_topk_accuracy(6, 2)),
        ("shuffle", 6, 3, shuffle_topk_accuracy(6, 3)),
        ("replace_random", 6, 1, 1.0),
        ("replace_random", 6, 2, 0.5),
        ("replace_random", 6, 3, 0.0),
    ],
)
def test_oracle_top_k(task, n, k, expected):
    assert _close(_accuracy(task, n, "llada", steps=n // k), expected)


THRESHOLD_RULES = [
    lambda t: dllm.samplers.get("fast-dllm", threshold=t),
    lambda t: dllm.samplers.get("localleap", threshold=t, relaxed_threshold=t),
    lambda t: dllm.samplers.get("localleap", threshold=t, relaxed_threshold=min(t, 0.3), radius=0),
]


@pytest.mark.parametrize("rule", range(len(THRESHOLD_RULES)))
@pytest.mark.parametrize(
    "task,n,threshold,expected",
    [
        ("shuffle", 6, 0.6, 1.0),
        ("shuffle", 6, 0.45, 0.5),  # m!/m^m once 1/m >= threshold
        ("replace_random", 6, 0.85, 1.0),
        ("replace_random", 6, 0.8, 0.0),  # boundary (n-1)/n = 0.833
    ],
)
def test_oracle_threshold(rule, task, n, threshold, expected):
    assert _close(_accuracy(task, n, THRESHOLD_RULES[rule](threshold)), expected)


def test_oracle_prophet_all_in_is_one_step_parallel():
    """Firing at the first step fills every slot from independent marginals: n!/n^n on shuffle."""
    prophet = dllm.samplers.get("prophet", early_threshold=0.0)
    assert _close(_accuracy("shuffle", 4, prophet), math.factorial(4) / 4**4)


# ---- composition: EoTP and Prophet on top of other samplers --------------------------------


@pytest.mark.parametrize("inner", ["llada", "fast-dllm", "localleap"])
def test_eotp_truncates_after_the_first_decoded_eos(arch, inner):
    model = _model(arch, eos_heavy=True)
    base = _run(model, inner, gen_length=32)
    eotp = _run(model, dllm.samplers.get("eotp", inner=inner, min_confidence=1.0), gen_length=32)
    for r in eotp:
        assert r.canvas[r.gen_tokens :] == [EOS] * (32 - r.gen_tokens)
    assert sum(r.nfe for r in eotp) < sum(r.nfe for r in base)


@pytest.mark.parametrize("inner", ["llada", "fast-dllm", "adablock"])
def test_eotp_and_prophet_compose_with_any_sampler(arch, inner):
    model = _model(arch, eos_heavy=True)
    prophet = dllm.samplers.get("prophet", inner=dllm.samplers.get("eotp", inner=inner), early_threshold=0.0)
    results = _run(model, prophet, gen_length=32)
    assert all(r.nfe == 1 and MASK not in r.canvas for r in results)


@dataclass
class _Probe(Sampler):
    """Runs ``end_of_text_edits`` on every step and checks it never erases decoded text."""

    cuts: int = 0

    def logit_region(self, state):
        return torch.full_like(state.gen_end, state.gen_start), state.gen_end

    def select(self, view):
        commit = dllm.samplers.best_candidate(view.score, view.cand)
        tokens = view.state.tokens.clone()
        rows, idx = commit.nonzero(as_tuple=True)
        tokens[rows, view.cols[rows, idx]] = view.pred[rows, idx]  # the canvas once this step is applied
        for edit in end_of_text_edits(view, commit):
            after = tokens[edit.row, edit.col + 1 : int(view.state.gen_end[edit.row])]
            before = tokens[edit.row, view.state.gen_start : edit.col + 1]
            assert ((after == MASK) | (after == EOS)).all() or (before == EOS).any()
            self.cuts += 1
        return Decision(commit=commit)


def test_eotp_cut_never_erases_text_before_the_first_eos(arch):
    probe = _Probe()
    _run(_model(arch, eos_heavy=True), probe, gen_length=32)
    assert probe.cuts > 0


# ---- DAEDAL, AdaBlock, Learn2PD specifics ---------------------------------------------------


def test_daedal_grows_inserts_and_respects_max_length(arch):
    model = _model(arch)  # EOS is never likely here
    grow = dllm.samplers.get("daedal", initial_length=8, max_length=30, eos_threshold=1.0, low_confidence=0.0)
    results = _run(model, grow)  # stage 1 grows to the cap (no room left for the EOS tail), no insertion
    assert all(len(r.canvas) == 30 and MASK not in r.canvas for r in results)
    assert all(
        r.nfe == (30 - 8) // 8 + 1 + r.steps for r in results
    )  # probes at 8, 16, 24 (+ the capped 30 isn't probed)
    insert = dllm.samplers.get(
        "daedal", initial_length=8, max_length=40, eos_threshold=0.0, low_confidence=1.0, eos_tail=2
    )
    results = _run(model, insert)  # no growth in stage 1; stage 2 inserts up to the cap
    assert all(
        10 < len(r.canvas) <= 40 and MASK not in r.canvas and r.canvas[-2:] == [EOS, EOS] for r in results
    )


def test_daedal_eos_completion_score():
    from dllm.state import StepView

    state = type("S", (), {"eos_ids": [EOS], "gen_start": 0})()
    pred = torch.tensor([[1, EOS, EOS, 2, EOS]])
    conf = torch.tensor([[0.9, 0.5, 0.7, 0.9, 0.8]])
    view = StepView(
        state=state,
        cols=torch.arange(5)[None],
        col_valid=torch.ones(1, 5, dtype=torch.bool),
        logits=None,
        pred=pred,
        conf=conf,
        score=conf,
        cand=None,
        first_of_block=None,
    )
    assert eos_completion(view, 2).item() == pytest.approx((0.7 + 0.8) / 2)
    assert eos_completion(view, 4).item() == pytest.approx((0.5 + 0.7 + 0.8) / 4)


@dataclass
class _RecordBlocks(dllm.samplers.AdaBlockSampler):
    blocks: list = None

    def observe(self, view, decision):
        if view.first_of_block[0]:
            st = view.state
            window = (view.cols[0] >= st.block_start[0]) & (view.cols[0] < self.lookahead(st)[0])
            delim = window & (view.pred[0] == NEWLINE)
            best = int(view.cols[0][delim][view.conf[0][delim].argmax()]) + 1 if delim.any() else None
            self.blocks.append((int(st.block_start[0]), int(st.block_end[0]), best))


def test_adablock_ends_blocks_on_the_most_confident_delimiter():
    model = _model("llada")
    with torch.no_grad():  # make the delimiter a frequent prediction
        model.net.lm_head.weight[NEWLINE] = model.net.lm_head.weight[57] * 1.05
    sampler = _RecordBlocks(threshold=0.5, delimiter_threshold=0.0, blocks=[])
    [result] = _run(model, sampler, [PROMPTS[0]], gen_length=32)
    assert MASK not in result.canvas
    assert any(best is not None for _, _, best in sampler.blocks)
    for start, end, best in sampler.blocks:
        assert end == (best if best is not None else min(start + 8, len(PROMPTS[0]) + 32))


def test_adablock_needs_a_tokenizer():
    model = random_model("llada")
    with pytest.raises(ValueError, match="tokenizer"):
        _run(model, "adablock")


def test_learn2pd_filter_lookup_and_errors(filter_dir, monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m dllm.zoo.learn2pd_train no-such-model"):
        dllm.samplers.get("learn2pd", model="no-such-model")
    monkeypatch.setattr(dllm.shipped, "shipped_path", tmp_path.joinpath)  # an install shipping one filter
    ConfidenceFilter(8).save(tmp_path / dllm.shipped.FILTERS / "random-llada")
    sampler = dllm.samplers.get("learn2pd", model="random-llada")
    assert sampler._filter is find_filter("random-llada")
    results = _run(_model("llada"), dllm.samplers.get("learn2pd"))  # found from the model's name
    assert all(MASK not in r.canvas for r in results)
    with pytest.raises(ValueError, match="block_length=8"):
        _run(_model("llada"), sampler, gen_length=32, block_length=16)


def test_learn2pd_warns_when_the_filter_was_trained_for_other_weights(tmp_path):
    from dllm.models.loading import save_pretrained
    from dllm.samplers.learn2pd import weights_fingerprint

    folder = save_pretrained(random_model("llada").net, tmp_path / "model")
    model = dllm.load(folder, tokenizer=False)
    ConfidenceFilter(8).save(tmp_path / "ok", model_fingerprint=weights_fingerprint(folder))
    ConfidenceFilter(8).save(tmp_path / "stale", model_fingerprint="0123456789ab")
    with pytest.warns(UserWarning, match="trained for other weights"):
        _run(model, dllm.samplers.get("learn2pd", filter_path=str(tmp_path / "stale")), [PROMPTS[0]])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _run(model, dllm.samplers.get("learn2pd", filter_path=str(tmp_path / "ok")), [PROMPTS[0]])


def test_shipped_models_have_matching_filters():
    """Each shipped tiny diffusion model has a Learn2PD filter trained on exactly its weights."""
    from dllm.samplers.learn2pd import weights_fingerprint

    for name, folder in dllm.zoo.shipped_models().items():
        if name in ("tiny-llada", "tiny-dream"):
            hint = f"train it with `python -m dllm.zoo.learn2pd_train {name}`"
            module = dllm.samplers.get("learn2pd", model=name)._filter
            assert module.block_length == 32
            assert module.meta.get("model_fingerprint") == weights_fingerprint(folder), (
                f"stale filter: {hint}"
            )


@pytest.mark.parametrize(
    "name,params,field",
    [
        ("localleap", {"threshold": 1.5}, "threshold"),
        ("localleap", {"relaxed_threshold": 0.95}, "relaxed_threshold"),
        ("localleap", {"radius": -1}, "radius"),
        ("prophet", {"early_threshold": -1.0}, "early_threshold"),
        ("prophet", {"late_phase": 0.2}, "late_phase"),
        ("prophet", {"answer_length": 0}, "answer_length"),
        ("prophet", {"inner": "no-such"}, "no-such"),
        ("eotp", {"min_confidence": 2.0}, "min_confidence"),
        ("learn2pd", {"threshold": 1.5}, "threshold"),
        ("adablock", {"window": 0.0}, "window"),
        ("adablock", {"delimiter_threshold": -0.1}, "delimiter_threshold"),
        ("adablock", {"delimiters": ["\n", ""]}, "delimiters"),
        ("adablock", {"delimiters": []}, "delimiters"),
        ("daedal", {"initial_length": 0}, "initial_length"),
        ("daedal", {"max_length": 8, "initial_length": 16}, "max_length"),
        ("daedal", {"high_confidence": 1.2}, "high_confidence"),
        ("daedal", {"expansion": 0}, "expansion"),
    ],
)
def test_bad_config_names_field_value_and_range(name, params, field):
    with pytest.raises(ValueError, match=field):
        dllm.samplers.get(name, **params)


def test_all_registered_and_listed():
    assert {"localleap", "prophet", "eotp", "learn2pd", "adablock", "daedal"} <= set(dllm.samplers.names())


# ---- properties on random models, for every sampler ---------------------------------------


def _factories(filter_dir):
    return {
        "localleap": lambda: dllm.samplers.get("localleap", threshold=0.5, relaxed_threshold=0.2),
        "prophet": lambda: dllm.samplers.get(
            "prophet", early_threshold=4.0, mid_threshold=2.0, late_threshold=1.0
        ),
        "prophet-fast": lambda: dllm.samplers.get("prophet", inner="fast-dllm", late_threshold=1.0),
        "eotp": lambda: dllm.samplers.get("eotp", inner="fast-dllm", inner_params={"threshold": 0.5}),
        "learn2pd": lambda: dllm.samplers.get("learn2pd", filter_path=filter_dir, threshold=0.5),
        "adablock": lambda: dllm.samplers.get("adablock", threshold=0.5, delimiter_threshold=0.0),
        "daedal": lambda: dllm.samplers.get(
            "daedal",
            initial_length=4,
            max_length=20,
            expansion=3,
            eos_tail=2,
            eos_threshold=0.3,
            low_confidence=0.2,
            expand_eos_threshold=0.3,
        ),
    }


SAMPLER_NAMES = ["localleap", "prophet", "prophet-fast", "eotp", "learn2pd", "adablock", "daedal"]
MODELS = {
    (arch, heavy): _model(arch, seed=3, eos_heavy=heavy)
    for arch in ("llada", "dream")
    for heavy in (False, True)
}

prompt_st = st.lists(st.integers(min_value=4, max_value=40), min_size=1, max_size=7)


def _check_properties(name, filter_dir, arch, heavy, prompts, shape, temperature):
    model, make = MODELS[(arch, heavy)], _factories(filter_dir)[name]
    gen_length, block_length = shape
    assume(name != "learn2pd" or block_length == 8)  # a filter is trained for one block length
    last_seen = {}  # prompt index -> its canvas row at the last step it took part in

    def record(event):
        for i, row in enumerate(event.rows):  # finished rows leave the batch
            last_seen[row] = event.state.tokens[i, : event.state.gen_start].tolist()

    settings_ = dict(gen_length=gen_length, block_length=block_length, temperature=temperature, seed=5)
    batch = dllm.generate(model, prompts, sampler=make(), callback=record, **settings_)
    for row, (prompt, result) in enumerate(zip(prompts, batch)):
        assert last_seen[row][len(last_seen[row]) - len(prompt) :] == prompt  # prompt untouched
        assert MASK not in result.canvas  # no mask left
        limit = 20 if name == "daedal" else gen_length
        assert 1 <= len(result.canvas) <= limit  # length bound
        [alone] = dllm.generate(model, [prompt], sampler=make(), **settings_)  # batch = each row alone
        assert alone.canvas == result.canvas and alone.steps == result.steps


GIVEN = dict(
    arch=st.sampled_from(["llada", "dream"]),
    heavy=st.booleans(),
    prompts=st.lists(prompt_st, min_size=1, max_size=3),
    shape=st.sampled_from([(8, 8), (16, 8), (16, 4)]),
    temperature=st.sampled_from([0.0, 0.7]),
)
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


@pytest.mark.parametrize("name", SAMPLER_NAMES)
@settings(max_examples=3, deadline=None, suppress_health_check=QUIET)
@given(**GIVEN)
def test_properties(name, filter_dir, arch, heavy, prompts, shape, temperature):
    """Terminates, no mask left, prompt untouched, length bound, batch = each row alone."""
    _check_properties(name, filter_dir, arch, heavy, prompts, shape, temperature)


@pytest.mark.slow
@pytest.mark.parametrize("name", SAMPLER_NAMES)
@settings(max_examples=30, deadline=None, suppress_health_check=QUIET)
@given(**GIVEN)
def test_properties_many_examples(name, filter_dir, arch, heavy, prompts, shape, temperature):
    _check_properties(name, filter_dir, arch, heavy, prompts, shape, temperature)
