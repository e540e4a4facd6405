"""The denoising loop: batching, schedules, rules, EOS flags, determinism, hooks and edits."""

from dataclasses import dataclass

import pytest
import torch
from _models import EOS, MASK, random_model

import dllm
from dllm.samplers.base import Sampler
from dllm.samplers.fast_dllm import factor_accept_count
from dllm.samplers.llada import uniform_schedule
from dllm.selection import top_k_mask
from dllm.state import Decision, Edit

PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12, 13], [20, 21, 22, 23, 24, 25, 26, 27]]
SAMPLERS = [
    ("llada", {}),
    ("llada", {"remasking": "random"}),
    ("fast-dllm", {"threshold": 0.5}),
    ("fast-dllm", {"factor": 1.0}),
]


@pytest.mark.parametrize("name,params", SAMPLERS)
@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_batch_equals_each_prompt_alone(model, name, params, temperature):
    settings = dict(gen_length=16, block_length=8, temperature=temperature, seed=7)
    batch = dllm.generate(model, PROMPTS, sampler=dllm.samplers.get(name, **params), **settings)
    for prompt, together in zip(PROMPTS, batch):
        [alone] = dllm.generate(model, [prompt], sampler=dllm.samplers.get(name, **params), **settings)
        assert together.canvas == alone.canvas
        assert (together.steps, together.nfe) == (alone.steps, alone.nfe)


def test_no_mask_left_and_prompt_untouched(model):
    [result] = dllm.generate(model, [PROMPTS[0]], sampler="fast-dllm", gen_length=24, block_length=8)
    assert len(result.canvas) == 24 and MASK not in result.canvas


@pytest.mark.parametrize("masked,steps", [(32, 32), (32, 5), (7, 3), (3, 8), (0, 4)])
def test_uniform_schedule_sums_to_mask_count_and_front_loads(masked, steps):
    schedule = uniform_schedule(torch.tensor([masked]), steps)[0]
    assert int(schedule.sum()) == masked
    assert schedule.max() - schedule.min() <= 1
    assert torch.all(schedule[:-1] >= schedule[1:])


def test_llada_one_token_per_step_counts(model):
    [result] = dllm.generate(model, [PROMPTS[1]], sampler="llada", gen_length=16, block_length=8, trace=True)
    assert result.steps == result.nfe == 16
    assert all(len(r.positions) == 1 for r in result.trace)
    # semi-autoregressive: every position of block 0 is committed before any of block 1
    order = [r.positions[0] for r in result.trace]
    assert sorted(order[:8]) == list(range(8)) and sorted(order[8:]) == list(range(8, 16))


def test_llada_fewer_steps_commit_schedule(model):
    [result] = dllm.generate(
        model, [PROMPTS[1]], sampler="llada", gen_length=16, block_length=8, steps=4, trace=True
    )
    assert [len(r.positions) for r in result.trace] == [4, 4, 4, 4]


def test_threshold_one_commits_exactly_one_token_per_step(model):
    sampler = dllm.samplers.get("fast-dllm", threshold=1.0)
    [result] = dllm.generate(model, [PROMPTS[0]], sampler=sampler, gen_length=16, block_length=8, trace=True)
    assert all(len(r.positions) == 1 for r in result.trace)
    assert result.steps == 16


def test_threshold_commits_every_confident_candidate(model):
    sampler = dllm.samplers.get("fast-dllm", threshold=0.3)
    [result] = dllm.generate(model, [PROMPTS[0]], sampler=sampler, gen_length=16, block_length=16, trace=True)
    for record in result.trace:
        confident = [c for c in record.confidences if c >= 0.3]
        assert len(record.positions) == max(1, len(confident))


def test_fast_dllm_rule_choice(model):
    """No threshold means 0.9 unless factor is given; threshold and factor together (0.9 included, the
    old silently-dropped default) are an error."""

    def canvas(sampler):
        return dllm.generate(model, PROMPTS, sampler=sampler, gen_length=16, block_length=8)[0].canvas

    assert canvas(dllm.samplers.get("fast-dllm")) == canvas(dllm.samplers.get("fast-dllm", threshold=0.9))
    assert dllm.samplers.get("fast-dllm", threshold=None, factor=1.0).factor == 1.0
    for threshold in (0.9, 0.5):
        with pytest.raises(
            ValueError, match=rf"exactly one of threshold or factor, got threshold={threshold}"
        ):
            dllm.samplers.get("fast-dllm", threshold=threshold, factor=1.0)


def _factor_closed_form(conf, factor):
    ordered = sorted(conf, reverse=True)
    n = 1
    while n < len(ordered) and (n + 2) * (1 - ordered[n]) <= factor:
        n += 1
    return n


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("factor", [0.5, 1.0, 2.0])
def test_factor_rule_matches_closed_form(seed, factor):
    gen = torch.Generator().manual_seed(seed)
    conf = torch.rand(1, 12, generator=gen) ** 0.3
    cand = torch.rand(1, 12, generator=gen) > 0.3
    cand[0, 0] = True
    expected = _factor_closed_form(conf[cand].tolist(), factor)
    assert int(factor_accept_count(conf, cand, factor)[0]) == expected


def test_factor_reference_off_by_one():
    conf = torch.tensor([[0.99, 0.98, 0.2]])
    cand = torch.ones_like(conf, dtype=torch.bool)
    assert int(factor_accept_count(conf, cand, 1.0)[0]) == 2
    assert int(factor_accept_count(conf, cand, 1.0, reference_off_by_one=True)[0]) == 3


def _eos_likely_model(arch, seed=11):
    """A random model whose EOS row copies (slightly scaled) the row of its most predicted token."""
    model = random_model(arch, seed=seed)
    with torch.no_grad():
        outputs = dllm.generate(model, PROMPTS, sampler="llada", gen_length=16, block_length=8)
        favourite = torch.tensor([t for r in outputs for t in r.canvas]).mode().values
        model.net.lm_head.weight[EOS] = model.net.lm_head.weight[favourite] * 1.02
    return model


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_logits_eos_inf_never_proposes_eos(arch):
    model = _eos_likely_model(arch)
    base = dllm.generate(model, PROMPTS, sampler="llada", gen_length=16, block_length=8, logits_eos_inf=False)
    flagged = dllm.generate(
        model, PROMPTS, sampler="llada", gen_length=16, block_length=8, logits_eos_inf=True
    )
    assert any(EOS in r.canvas for r in base)
    assert all(EOS not in r.canvas for r in flagged)
    assert all(len(r.canvas) == 16 for r in base + flagged)


@dataclass
class _CheckEosLast(Sampler):
    """LLaDA selection, checking that EOS/EoT-predicted positions rank below every other candidate."""

    inner: Sampler = None
    eos_commits: int = 0

    def init_state(self, state):
        return self.inner.init_state(state)

    def select(self, view):
        decision = self.inner.select(view)
        is_eos = view.pred == EOS
        for row in range(view.cand.shape[0]):
            committed_eos = (decision.commit[row] & is_eos[row]).any()
            left_non_eos = (view.cand[row] & ~decision.commit[row] & ~is_eos[row]).any()
            assert not (committed_eos and left_non_eos), "EOS committed before a non-EOS candidate"
            self.eos_commits += int(committed_eos)
        return decision


@pytest.mark.parametrize("arch", ["llada", "dream"])
@pytest.mark.parametrize("steps", [16, 4])
def test_confidence_eos_eot_inf_commits_eos_last(arch, steps):
    model = _eos_likely_model(arch)
    checker = _CheckEosLast(inner=dllm.samplers.get("llada"))
    dllm.generate(
        model,
        PROMPTS,
        sampler=checker,
        gen_length=16,
        block_length=8,
        steps=steps,
        confidence_eos_eot_inf=True,
    )
    assert checker.eos_commits > 0  # EOS is still proposed and committed, only later
    if steps != 16:
        return
    unflagged = _CheckEosLast(inner=dllm.samplers.get("llada"))
    with pytest.raises(AssertionError, match="EOS committed before"):
        dllm.generate(model, PROMPTS, sampler=unflagged, gen_length=16, block_length=8, steps=steps)


def test_same_seed_same_output_and_seed_matters(model):
    run = lambda seed: dllm.generate(
        model, PROMPTS, sampler="llada", gen_length=16, block_length=8, temperature=1.0, seed=seed
    )
    assert [r.canvas for r in run(1)] == [r.canvas for r in run(1)]
    assert [r.canvas for r in run(1)] != [r.canvas for r in run(2)]


def test_classifier_free_guidance_changes_output_but_not_nfe(model):
    plain = dllm.generate(model, PROMPTS, sampler="llada", gen_length=16, block_length=8)
    guided = dllm.generate(model, PROMPTS, sampler="llada", gen_length=16, block_length=8, cfg_scale=2.0)
    assert [r.nfe for r in plain] == [r.nfe for r in guided]
    assert [r.canvas for r in plain] != [r.canvas for r in guided]


def test_counts_follow_the_metrics_definitions(model):
    [result] = dllm.generate(model, [PROMPTS[0]], sampler="fast-dllm", gen_length=16, block_length=8)
    eos_at = result.canvas.index(EOS) if EOS in result.canvas else len(result.canvas)
    assert result.gen_tokens == eos_at == len(result.ids)
    assert result.tokens_per_forward == pytest.approx(result.gen_tokens / result.nfe)
    assert result.tokens_per_step == pytest.approx(result.gen_tokens / result.steps)


def test_streaming_callback_sees_every_step(model):
    events = []
    [result] = dllm.generate(
        model,
        [PROMPTS[0]],
        sampler="llada",
        gen_length=8,
        block_length=8,
        callback=lambda e: events.append(int(e.committed.sum())),
    )
    assert len(events) == result.steps and sum(events) == 8


# ---- hooks and edits, exercised with small purpose-built samplers --------------------------


@dataclass
class _Lazy(Sampler):
    """Commits nothing: the loop's progress guarantee must commit the best candidate."""

    def select(self, view):
        return Decision(commit=torch.zeros_like(view.cand))


def test_progress_guarantee_commits_one_per_step(model):
    [result] = dllm.generate(model, [PROMPTS[0]], sampler=_Lazy(), gen_length=8, block_length=4, trace=True)
    assert result.steps == 8 and all(len(r.positions) == 1 for r in result.trace)


@dataclass
class _FillAfterFirstStep(Sampler):
    """Prophet-style early commit: after one step, fill every remaining mask and stop."""

    def logit_region(self, state):
        return torch.full_like(state.gen_end, state.gen_start), state.gen_end

    def select(self, view):
        commit = top_k_mask(view.score, view.cand, torch.ones(view.cand.shape[0], dtype=torch.long))
        edits = [Edit(op="fill", row=r) for r in range(view.cand.shape[0])]
        return Decision(commit=commit, edits=edits, stop=torch.ones(view.cand.shape[0], dtype=torch.bool))


def test_fill_edit_and_stop_finish_in_one_step(model):
    results = dllm.generate(model, PROMPTS, sampler=_FillAfterFirstStep(), gen_length=16, block_length=8)
    assert all(r.steps == 1 and r.nfe == 1 and MASK not in r.canvas for r in results)


@dataclass
class _TruncateAtThird(Sampler):
    def select(self, view):
        commit = top_k_mask(view.score, view.cand, torch.ones(view.cand.shape[0], dtype=torch.long))
        return Decision(
            commit=commit,
            edits=[
                Edit(op="truncate", row=r, col=view.state.gen_start + 2) for r in range(view.cand.shape[0])
            ],
        )


def test_truncate_edit_fills_eos_after_the_column(model):
    results = dllm.generate(model, PROMPTS, sampler=_TruncateAtThird(), gen_length=16, block_length=8)
    for r in results:
        assert r.canvas[3:] == [EOS] * 13 and r.gen_tokens <= 3


@dataclass
class _GrowThenDecode(Sampler):
    """DAEDAL-style: probe short canvases, grow them, and insert masks once mid-decoding."""

    inserted: bool = False
    probes: int = 0

    def plan_length(self, state, probe):
        lengths = torch.full_like(state.gen_end, 4)
        for _ in range(2):
            view = probe(lengths)
            self.probes += 1
            assert view.cand.shape[1] == int(lengths.max())
            lengths = lengths + 4
        return lengths

    def select(self, view):
        commit = top_k_mask(view.score, view.cand, torch.ones(view.cand.shape[0], dtype=torch.long))
        edits = []
        if not self.inserted:
            self.inserted = True
            edits = [Edit(op="insert", row=0, col=view.state.gen_start + 1, n=3)]
        return Decision(commit=commit, edits=edits)


def test_length_planning_probes_and_insertions(model):
    sampler = _GrowThenDecode()
    results = dllm.generate(model, PROMPTS, sampler=sampler, gen_length=32, block_length=32)
    assert sampler.probes == 2
    assert [len(r.canvas) for r in results] == [15, 12, 12]
    assert all(MASK not in r.canvas for r in results)
    # two probe forwards + one forward per step (row 0 had 3 extra positions)
    assert results[1].nfe == 2 + 12 and results[0].nfe == 2 + 15


@dataclass
class _ShortBlocks(Sampler):
    def plan_block(self, view):
        return view.state.block_start + 2

    def select(self, view):
        return Decision(commit=view.cand.clone())


def test_plan_block_sets_the_block_after_its_first_forward(model):
    [result] = dllm.generate(
        model, [PROMPTS[0]], sampler=_ShortBlocks(), gen_length=8, block_length=8, trace=True
    )
    assert [r.positions for r in result.trace] == [[0, 1], [2, 3], [4, 5], [6, 7]]


def test_stop_at_eos_fills_the_rest():
    model = _eos_likely_model("llada")
    full = dllm.generate(model, PROMPTS, sampler="llada", gen_length=32, block_length=4)
    stopped = dllm.generate(model, PROMPTS, sampler="llada", gen_length=32, block_length=4, stop_at_eos=True)
    assert any(s.nfe < f.nfe for s, f in zip(stopped, full))
    for s, f in zip(stopped, full):
        assert MASK not in s.canvas
        if s.nfe < f.nfe:  # stopped early at a decoded EOS; the answer ends there
            assert EOS in s.canvas and s.ids == s.canvas[: s.canvas.index(EOS)]
