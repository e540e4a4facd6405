"""Speculative decoding: losslessness (exact and sampled), greedy identity, KV rollback, drafters, errors."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import pytest
import torch

import dllm
from dllm import drafters
from dllm.drafters import length as lengths
from dllm.drafters.base import Drafter, Proposal, VocabMap
from dllm.drafters.runner import CausalRunner
from dllm.drafters.verify import accept_probability, residual, verify
from dllm.models import CausalLM, DiffusionModel, ModelConfig, Transformer

# ---------------------------------------------------------------------------- small random models
V, EOS, MASK, PAD = 8, 6, 7, 0


class TinyTokenizer:
    """A tokenizer stand-in over ids 0..size-1 (enough for vocabulary checks and decoding)."""

    bos_token_id, pad_token_id, eos_token_id, mask_token_id = None, PAD, EOS, MASK
    name_or_path = "tiny-tokenizer"

    def __init__(self, size=V, rename=None):
        self.vocab = {f"t{i}": i for i in range(size)}
        if rename:
            self.vocab = {rename.get(t, t): i for t, i in self.vocab.items()}

    def get_vocab(self):
        return dict(self.vocab)

    def __len__(self):
        return len(self.vocab)

    def decode(self, ids, skip_special_tokens=False):
        return " ".join(f"t{i}" for i in ids)


def random_causal_lm(seed=0, vocab=V, layers=1, scale=0.6, tokenizer=None) -> CausalLM:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    net = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0, scale)
    return CausalLM(
        net=net, tokenizer=tokenizer or TinyTokenizer(vocab), eos_ids=[EOS], name=f"random-ar-{seed}"
    )


def random_dllm(seed=0) -> DiffusionModel:
    cfg = ModelConfig(
        arch="dream",
        d_model=16,
        n_layers=1,
        n_heads=2,
        n_kv_heads=1,
        head_dim=8,
        mlp_hidden=32,
        vocab_size=V,
        rope_theta=10000.0,
        rms_eps=1e-6,
        qkv_bias=True,
        shift_logits=True,
        max_seq_len=64,
        mask_token_id=MASK,
        eos_token_ids=[EOS],
        pad_token_id=PAD,
        rope_fp32=False,
    )
    torch.manual_seed(seed)
    net = Transformer(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.6)
    return DiffusionModel(
        net=net,
        config=cfg,
        tokenizer=TinyTokenizer(),
        mask_id=MASK,
        eos_ids=[EOS],
        pad_id=PAD,
        bos_id=None,
        name=f"random-dream-{seed}",
    )


# ---------------------------------------------------------------------------- the acceptance kernel
def _random_dist(gen, size, zeros=0):
    p = torch.rand(size, generator=gen) ** 3
    p[torch.randperm(size, generator=gen)[:zeros]] = 0
    return p / p.sum()


@pytest.mark.parametrize("seed", range(6))
def test_ratio_rule_outputs_exactly_p(seed):
    """Σ_y q(y)·[1{a=y}·min(1, p/q) + (1 − min(1, p/q))·r(a)] = p(a), analytically (no Monte Carlo)."""
    gen = torch.Generator().manual_seed(seed)
    p = _random_dist(gen, 7, zeros=seed % 3).double()
    q = _random_dist(gen, 7, zeros=(seed + 1) % 3).double()
    out = torch.zeros_like(p)
    for y in range(7):
        if q[y] == 0:
            continue  # never drafted
        a = accept_probability(p, q, y)
        out[y] += q[y] * a
        out += q[y] * (1 - a) * residual(p, q, y)
    assert torch.allclose(out, p, atol=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_point_mass_rule_outputs_exactly_p_for_any_drafting(seed):
    """Deterministic drafts: whatever distribution d the draft came from, the output is p."""
    gen = torch.Generator().manual_seed(seed)
    p = _random_dist(gen, 7, zeros=seed % 3).double()
    d = _random_dist(gen, 7, zeros=2).double()
    out = torch.zeros_like(p)
    for y in range(7):
        a = accept_probability(p, None, y)
        out[y] += d[y] * a
        out += d[y] * (1 - a) * residual(p, None, y)
    assert torch.allclose(out, p, atol=1e-12)


def test_point_mass_rule_with_a_certain_token_never_rejects():
    p = torch.tensor([0.0, 1.0, 0.0])
    assert accept_probability(p, None, 1) == 1.0
    assert torch.equal(residual(p, None, 1), p)  # zero-mass residual: never reached, and finite
    n, token = verify(
        torch.stack([p, p]), [1], None, greedy=False, generator=torch.Generator().manual_seed(0)
    )
    assert n == 1 and token == 1


def test_greedy_verification_accepts_the_matching_prefix_and_adds_the_argmax():
    logits = torch.tensor([[0.0, 5, 1], [3.0, 0, 1], [0.0, 0, 9], [1.0, 0, 0]])
    assert verify(logits, [1, 0, 2], None, greedy=True, generator=None) == (3, 0)  # all accepted + bonus
    assert verify(logits, [1, 2, 2], None, greedy=True, generator=None) == (1, 0)  # correction at position 1
    assert verify(logits[:1], [], None, greedy=True, generator=None) == (0, 1)  # no draft: one AR step


def test_a_q_that_cannot_have_drawn_the_token_is_an_error():
    with pytest.raises(ValueError, match="probability 0"):
        accept_probability(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0]), 1)


# ---------------------------------------------------------------------------- end-to-end sampling
def _exact_joint(verifier, prompt, sampling, horizon=2) -> dict:
    """The verifier's own distribution over outputs of up to ``horizon`` tokens (EOS ends early)."""
    out = {}

    def walk(prefix, prob):
        if len(prefix) == horizon or (prefix and prefix[-1] == EOS):
            out[tuple(prefix)] = out.get(tuple(prefix), 0.0) + prob
            return
        with torch.no_grad():
            logits = verifier.net(input_ids=torch.tensor([prompt + prefix])).logits[0, -1:].float()
        p = sampling.probabilities(logits, prompt + prefix)[0]
        for token in range(V):
            if p[token] > 0:
                walk(prefix + [token], prob * float(p[token]))

    walk([], 1.0)
    return out


def _chi_square_pvalue(counts: Counter, expected: dict, n: int) -> float:
    from scipy.stats import chi2

    cells, pooled_obs, pooled_exp = [], 0, 0.0
    for outcome, prob in expected.items():
        if prob * n >= 5:
            cells.append((counts.get(outcome, 0), prob * n))
        else:
            pooled_obs += counts.get(outcome, 0)
            pooled_exp += prob * n
    assert sum(c for o, c in counts.items() if o not in expected) == 0, "an impossible output was produced"
    if pooled_exp > 0:
        cells.append((pooled_obs, pooled_exp))
    stat = sum((o - e) ** 2 / e for o, e in cells)
    return float(chi2.sf(stat, len(cells) - 1))


SAMPLED_DRAFTERS = {
    "sequential (ar)": (lambda: drafters.get("ar", model=random_causal_lm(seed=5)), dict(temperature=1.0)),
    "sequential (ar), confidence stop": (  # transformers' current default: drafts end at a low-q token
        lambda: drafters.get("ar", model=random_causal_lm(seed=5)),
        dict(temperature=1.0),
        lengths.ConfidenceLength(k=3, threshold=0.5),
        3,  # outputs of 3 tokens, so that a draft of 2 can stop after its first token
    ),
    "independent (onepass)": (
        lambda: drafters.get("onepass", model=random_dllm(3)),
        dict(temperature=0.7, top_p=0.9),
    ),
    "deterministic (dllm)": (
        lambda: drafters.get("dllm", model=random_dllm(3), sampler="llada"),
        dict(temperature=1.3, top_k=5),
    ),
    "deterministic (argmax of the verifier)": (
        lambda: drafters.get("ar", model=random_causal_lm(seed=1), greedy=True),
        dict(temperature=0.8),
    ),
}


@pytest.mark.parametrize("name", sorted(SAMPLED_DRAFTERS))
def test_speculative_sampling_matches_the_verifier_distribution(name):
    make, sampling, *rest = SAMPLED_DRAFTERS[name]
    length, horizon = rest or (lengths.FixedLength(k=3), 2)
    verifier = random_causal_lm(seed=1)
    prompt, n = [1, 2, 3], 3000
    expected = _exact_joint(verifier, prompt, dllm.drafters.SpeculativeConfig(**sampling).sampling, horizon)
    results = dllm.speculate(
        verifier,
        [prompt] * n,
        make(),
        length=length,
        max_new_tokens=horizon,
        seed=list(range(n)),
        **sampling,
    )
    outputs = Counter()
    for r in results:
        assert r.drafted > 0 or r.rounds == 1
        outputs[tuple(r.ids + ([EOS] if r.gen_tokens < horizon else []))] += 1
    assert sum(r.accepted for r in results) > 0.01 * n  # the drafts were really used
    assert _chi_square_pvalue(outputs, expected, n) > 1e-3


def test_same_seed_gives_each_row_its_output_alone_when_sampling():
    verifier = random_causal_lm(seed=1)
    drafter = drafters.get("onepass", model=random_dllm(3))
    prompts = [[1, 2, 3], [4, 5], [2, 2, 2, 2]]
    batch = dllm.speculate(verifier, prompts, drafter, max_new_tokens=6, temperature=1.0, seed=7)
    for prompt, row in zip(prompts, batch):
        [alone] = dllm.speculate(verifier, [prompt], drafter, max_new_tokens=6, temperature=1.0, seed=7)
        assert alone.ids == row.ids


# ------------------------------------------------------------------------ greedy identity on shipped models
@pytest.fixture(scope="module")
def tiny_ar():
    return dllm.load("tiny-ar")


@pytest.fixture(scope="module")
def held_out_prompts():
    from dllm.eval import tasks

    prompts = []
    for name in ("copy", "reverse", "insert_index", "sort", "cumsum"):
        prompts += [e.prompt for e in tasks.get(name).examples("eval", 2)]
    return prompts


@pytest.fixture(scope="module")
def greedy_reference(tiny_ar, held_out_prompts):
    out = []
    for prompt in held_out_prompts:
        ids = torch.tensor([tiny_ar.encode(prompt)])
        with torch.no_grad():
            gen = tiny_ar.net.generate(
                ids,
                max_new_tokens=48,
                do_sample=False,
                eos_token_id=tiny_ar.eos_ids,
                pad_token_id=tiny_ar.pad_id,
            )
        tokens = gen[0, ids.shape[1] :].tolist()
        out.append(tokens[: dllm.metrics.answer_length(tokens, tiny_ar.eos_ids)])
    return out


@dataclass
class ScriptedDrafter(Drafter):
    """Test drafter: ``mode`` 'wrong' (pad tokens, never the answer), 'random', 'eos' (random then EOS)."""

    mode: str = "random"

    def propose(self, run, requests):
        out = []
        for r in requests:
            if self.mode == "wrong":
                tokens = [0] * r.k
            else:
                tokens = torch.randint(4, 900, (r.k,), generator=r.generator).tolist()
                if self.mode == "eos":
                    tokens[len(tokens) // 2] = 2
            cut = next((i + 1 for i, t in enumerate(tokens) if t in run.stop_ids), len(tokens))
            out.append(Proposal(tokens=tokens[:cut], kind="deterministic", raw_len=len(tokens)))
        return out


GREEDY_DRAFTERS = {
    "plain AR": lambda: None,
    "ar (tiny-ar-draft)": lambda: drafters.get("ar"),
    "ar (the verifier itself: always right)": lambda: drafters.get("ar", model="tiny-ar"),
    "onepass tiny-dream": lambda: drafters.get("onepass", model="tiny-dream"),
    "diffuspec tiny-dream": lambda: drafters.get("diffuspec", model="tiny-dream"),
    "diffuspec tiny-llada, no proxy": lambda: drafters.get("diffuspec", model="tiny-llada", proxy="none"),
    "dllm tiny-dream fast-dllm": lambda: drafters.get("dllm", model="tiny-dream"),
    "dllm tiny-llada llada + dual cache": lambda: drafters.get(
        "dllm", model="tiny-llada", sampler="llada", cache="dual"
    ),
    "always wrong": lambda: ScriptedDrafter(mode="wrong"),
    "random": lambda: ScriptedDrafter(mode="random"),
    "ending in EOS": lambda: ScriptedDrafter(mode="eos"),
}


@pytest.mark.parametrize("name", list(GREEDY_DRAFTERS))
def test_greedy_speculation_is_the_verifiers_greedy_output(name, tiny_ar, held_out_prompts, greedy_reference):
    """A batch of mixed prompts; every row equals HF's own greedy decoding of that prompt alone."""
    results = dllm.speculate(tiny_ar, held_out_prompts, GREEDY_DRAFTERS[name](), max_new_tokens=48)
    assert [r.ids for r in results] == greedy_reference
    for r in results:
        assert r.verifier_forwards == r.rounds and r.committed >= r.gen_tokens
        assert r.accepted <= r.drafted


def test_always_right_drafter_accepts_everything(tiny_ar, held_out_prompts):
    results = dllm.speculate(
        tiny_ar,
        held_out_prompts,
        drafters.get("ar", model="tiny-ar"),
        length=lengths.FixedLength(k=6),
        max_new_tokens=48,
    )
    for r in results:
        assert r.accepted == r.drafted  # the last draft is cut by EOS or the budget, never rejected
        assert r.tau_with_bonus > 4


def _assisted_generation(verifier, draft, prompt: str, max_new_tokens: int = 48) -> tuple[list[int], int]:
    """``transformers``' ``generate(assistant_model=...)`` at its defaults: the answer tokens and the
    verifier forwards it took (counted with a forward hook)."""
    forwards = []
    hook = verifier.net.register_forward_hook(lambda *_: forwards.append(1))
    try:
        ids = torch.tensor([verifier.encode(prompt)])
        with torch.no_grad():
            out = verifier.net.generate(
                ids,
                assistant_model=draft.net,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=verifier.eos_ids,
                pad_token_id=verifier.pad_id,
            )
    finally:
        hook.remove()
    tokens = out[0, ids.shape[1] :].tolist()
    return tokens[: dllm.metrics.answer_length(tokens, verifier.eos_ids)], len(forwards)


@pytest.mark.parametrize("length", [None, "confidence"])
def test_ar_drafter_matches_transformers_assisted_generation(length, tiny_ar, held_out_prompts):
    """The same output; with the ``confidence`` controller (transformers' current defaults: 20 tokens,
    adaptive confidence 0.4) also the same drafts, so as many verifier forwards per prompt."""
    draft, prompts = dllm.load("tiny-ar-draft"), held_out_prompts[::2]  # one prompt per task
    ours = dllm.speculate(tiny_ar, prompts, drafters.get("ar", model=draft), length=length, max_new_tokens=48)
    for prompt, r in zip(prompts, ours):
        tokens, forwards = _assisted_generation(tiny_ar, draft, prompt)
        assert r.ids == tokens
        if length == "confidence":
            assert r.verifier_forwards == forwards, prompt


def test_max_new_tokens_and_trace(tiny_ar, held_out_prompts):
    [r] = dllm.speculate(tiny_ar, held_out_prompts[:1], drafters.get("onepass"), max_new_tokens=5, trace=True)
    assert r.gen_tokens == 5 and sum(len(t.committed) for t in r.trace) == 5
    assert all(len(t.draft) <= 4 for t in r.trace)  # k clipped so that the last token still fits
    for t in r.trace:
        assert t.committed[: t.accepted] == t.draft[: t.accepted]


# ---------------------------------------------------------------------------- the verifier cache
def test_runner_cache_equals_a_fresh_forward_after_ragged_feeds_and_rollbacks():
    lm = random_causal_lm(seed=2, layers=2)
    runner = CausalRunner(lm.net, PAD)
    gen = torch.Generator().manual_seed(0)
    seqs = [[1, 2, 3, 4, 5], [3], [5, 4, 3, 2, 1, 0, 1]]
    runner.reset(3)
    for round_ in range(6):
        drafts = [
            torch.randint(0, V, (int(torch.randint(0, 4, (1,), generator=gen)),), generator=gen).tolist()
            for _ in seqs
        ]
        feeds = [s[len(ids) :] + d for s, ids, d in zip(seqs, runner.ids, drafts)]
        logits = runner.feed(feeds)
        for row, (seq, draft) in enumerate(zip(seqs, drafts)):
            with torch.no_grad():
                fresh = lm.net(input_ids=torch.tensor([seq + draft])).logits[0].float()
            assert runner.ids[row] == seq + draft
            assert torch.allclose(logits[row, : len(feeds[row])], fresh[-len(feeds[row]) :], atol=1e-4)
        accepted = [int(torch.randint(0, len(d) + 1, (1,), generator=gen)) for d in drafts]
        seqs = [
            s + d[:n] + [int(torch.randint(0, V, (1,), generator=gen))]
            for s, d, n in zip(seqs, drafts, accepted)
        ]
        runner.keep([len(s) - 1 for s in seqs])
        assert runner.lengths() == [len(s) - 1 for s in seqs]
        assert runner.cache.get_seq_length() == max(runner.lengths())
        if round_ == 3:
            runner.select([2, 0])
            seqs = [seqs[2], seqs[0]]


def test_runner_rows_added_empty_or_merged_from_another_runner_read_their_own_cache():
    lm = random_causal_lm(seed=3, layers=2)
    seqs = [[1, 2, 3, 4, 5, 6], [3, 4], [5, 4, 3], [5, 1, 2, 3, 4, 5, 1, 2, 3]]
    main, other = CausalRunner(lm.net, PAD), CausalRunner(lm.net, PAD)
    main.reset(2)
    main.feed(seqs[:2])
    main.keep([4, 1])  # ragged rows, right-aligned
    other.reset(1)
    other.feed([seqs[2]])  # a batch-1 runner (cropped, unpadded)
    main.merge(other)
    main.add(1)  # a row caching nothing yet
    assert main.lengths() == [4, 1, 3, 0]
    logits = main.feed([seqs[0][4:], seqs[1][1:], [2], seqs[3]])
    for row, seq in enumerate([seqs[0], seqs[1], seqs[2] + [2], seqs[3]]):
        fed = len(seq) - [4, 1, 3, 0][row]
        with torch.no_grad():
            fresh = lm.net(input_ids=torch.tensor([seq])).logits[0].float()
        assert torch.allclose(logits[row, :fed], fresh[-fed:], atol=1e-4), row
    empty = CausalRunner(lm.net, PAD)
    empty.reset(0)
    empty.merge(main)  # a runner with no rows takes the other's as they are
    assert empty.lengths() == main.lengths()


def test_loop_keeps_the_cache_one_token_short_of_the_committed_sequence(
    tiny_ar, held_out_prompts, monkeypatch
):
    """After every round: cache length = committed − 1 per row, and the cached K/V = a fresh forward."""
    from dllm.drafters import loop

    checks = []

    class CheckedRunner(CausalRunner):
        def keep(self, lengths):
            super().keep(lengths)
            for row, ids in enumerate(self.ids):
                fresh = self.net(input_ids=torch.tensor([ids]), use_cache=True)[self.cache_arg]
                for layer, fresh_layer in zip(self.cache.layers, fresh.layers):
                    stored = layer.keys[row, :, self.width - len(ids) :]
                    assert torch.allclose(stored, fresh_layer.keys[0], atol=1e-4)
            checks.append([list(ids) for ids in self.ids])

    monkeypatch.setattr(loop, "CausalRunner", CheckedRunner)
    prompts = held_out_prompts[:3]
    results = dllm.speculate(
        tiny_ar,
        prompts,
        drafters.get("onepass"),
        length=lengths.FixedLength(k=5),
        max_new_tokens=48,
        trace=True,
    )
    assert len(checks) == max(r.rounds for r in results)
    for row, (prompt, r) in enumerate(zip(prompts, results)):
        committed = tiny_ar.encode(prompt) + [t for record in r.trace for t in record.committed]
        # The last check that still held this row saw its whole committed sequence but the last token.
        assert any(ids == committed[:-1] for ids in (c[row] for c in checks if len(c) > row))


# ---------------------------------------------------------------------------- drafter parts
def test_block_logits_follow_each_models_logit_shift_and_ignore_batch_padding():
    for arch in ("dream", "llada"):
        from _models import random_model

        dlm = random_model(arch)
        dlm.tokenizer = TinyTokenizer(64)
        drafter = drafters.get("onepass", model=dlm)
        run = drafter.start(random_causal_lm(vocab=64, tokenizer=TinyTokenizer(64)), drafters.Sampling())
        contexts, ks = [[5, 6, 7, 8], [9, 10]], [3, 5]
        logits = drafter.block_logits(run, contexts, ks)
        for row, (context, k) in enumerate(zip(contexts, ks)):
            canvas = torch.tensor([context + [dlm.mask_id] * k])
            with torch.no_grad():
                full = dlm.net(canvas).float()  # column j: the logits of token j (Dream reads column j-1)
            expected = run.vocab.logits(full[0, len(context) :])
            assert torch.allclose(logits[row, :k], expected, atol=1e-4)


def test_vocab_map_never_proposes_the_mask_or_ids_the_verifier_lacks():
    vocab = VocabMap.build(TinyTokenizer(8), TinyTokenizer(6), 7, "d", "v", mask_id=3)
    logits = vocab.logits(torch.zeros(2, 8))
    assert logits.shape == (2, 7)
    assert torch.isinf(logits[:, 3]).all() and torch.isinf(logits[:, 6]).all()  # mask; id 6: no token
    assert torch.isfinite(logits[:, [0, 1, 2, 4, 5]]).all()
    assert vocab.usable_prefix([1, 2, 3, 4]) == [1, 2] and vocab.usable_prefix([1, 9]) == [1]


def test_different_tokenizers_are_a_clear_error(tiny_ar):
    other = random_causal_lm(vocab=936, tokenizer=TinyTokenizer(936))
    with pytest.raises(ValueError, match="tokenizers of drafter 'tiny-dream' .* differ"):
        dllm.speculate(other, [[1, 2]], drafters.get("onepass"), max_new_tokens=2)


def test_cps_candidate_sets_and_beam_search():
    drafter = drafters.get("diffuspec", proxy="none", tau=0.8, m_max=3, beam=2, lam=1.0, normalize=False)
    from dllm.drafters.diffuspec import DiffuSpecRun

    run = DiffuSpecRun(sampling=drafters.Sampling(), stop_ids={2}, ngram=None)
    probs = torch.tensor(
        [[0.05, 0.05, 0.02, 0.6, 0.28], [0.1, 0.1, 0.5, 0.2, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2]]
    )
    logp = probs.log()
    # mass 0.8 needs {3, 4} at position 0 (EOS 2 added); position 1: {2, 3, 0} capped at m_max = 3.
    assert drafter.candidates(logp, run.stop_ids)[:2] == [[3, 4, 2], [2, 3, 0]]
    # Best sum of log-probs: 3 then EOS (0.6 * 0.5) beats 3, 3, x (0.6 * 0.2 * 0.2); the path stops at EOS.
    assert drafter.search(run, logp, [1]) == [3, 2]
    drafter.normalize = True  # mean per-token score: the same here
    assert drafter.search(run, logp, [1]) == [3, 2]


def test_ngram_proxy_prefers_seen_continuations(tiny_ar):
    from dllm.drafters.ngram import NgramModel

    model = NgramModel([[1, 5, 6, 7, 2], [1, 5, 6, 8, 2]], order=3, vocab_size=10)
    assert model.logprob([1, 5, 6], 7) > model.logprob([1, 5, 6], 9)
    assert model.logprob([5, 6], 7) == pytest.approx(model.logprob([5, 6], 8))
    total = sum(math.exp(model.logprob([5, 6], t)) for t in range(10))
    assert total == pytest.approx(1.0, abs=1e-9)


def test_length_controllers():
    adl = lengths.get("adl", k_min=2, k_max=10, delta=3, rho=0.5)
    state = adl.initial()
    assert adl.next_length(state) == 10
    state = adl.update(
        state, Proposal(tokens=[1] * 6, kind="deterministic", raw_len=10, gen_len=6), accepted=6
    )
    assert adl.next_length(state) == 6  # G = 3, A = 3 >= G: floor(3 + 3)
    state = adl.update(
        state, Proposal(tokens=[1] * 8, kind="deterministic", raw_len=8, gen_len=8), accepted=1
    )
    assert adl.next_length(state) == 5  # G = 5.5, A = 2 < G
    heuristic = lengths.get("heuristic", start_k=3)
    full = heuristic.update(heuristic.initial(), Proposal(tokens=[1, 1, 1], kind="deterministic"), accepted=3)
    part = heuristic.update(heuristic.initial(), Proposal(tokens=[1, 1, 1], kind="deterministic"), accepted=1)
    assert [heuristic.next_length(full), heuristic.next_length(part)] == [5, 2]
    assert heuristic.initial() == 3  # pure: the instance keeps no row state


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda v: dllm.speculate("tiny-dream", ["copy: a\n"], "onepass"),
            "verifier must be an autoregressive",
        ),
        (
            lambda v: dllm.speculate(v, ["copy: a\n"], drafters.get("diffuspec", model="tiny-ar")),
            "needs a diffusion LM",
        ),
        (
            lambda v: dllm.speculate(v, ["copy: a\n"], drafters.get("dllm", model="tiny-ar-draft")),
            "needs a diffusion LM",
        ),
        (
            lambda v: dllm.speculate(v, ["copy: a\n"], drafters.get("ar", model="tiny-dream")),
            "needs a causal LM",
        ),
        (
            lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", length=lengths.get("fixed", k=0)),
            r"fixed.k=0",
        ),
        (
            lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", length="fixed", max_new_tokens=0),
            "max_new_tokens=0",
        ),
        (lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", temperature=-1), "temperature=-1"),
        (lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", temperature=float("nan")), "finite"),
        (lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", top_p=0), "top_p=0"),
        (lambda v: dllm.speculate(v, ["copy: a\n"], "nope"), "unknown drafter 'nope'"),
        (lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", length="nope"), "unknown length controller"),
        (lambda v: dllm.speculate(v, ["copy: a\n"], None, length="fixed"), "without a drafter"),
        (lambda v: dllm.speculate(v, ["   "], "onepass"), "empty prompt"),
        (lambda v: dllm.speculate(v, [[1, 5000]], "onepass"), "outside the verifier's vocabulary"),
        (
            lambda v: dllm.speculate(v, ["copy: a\n"], "onepass", max_new_tokens=600),
            "exceeds the verifier's context",
        ),
        (lambda v: dllm.speculate(v, ["a", "b"], "onepass", seed=[1]), "1 seeds for 2 prompts"),
        (lambda v: drafters.get("diffuspec", tau=1.5), r"diffuspec.tau=1.5"),
        (lambda v: drafters.get("diffuspec", proxy="kenlm"), "proxy"),
    ],
)
def test_bad_input_is_a_clear_error(call, message, tiny_ar):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        call(tiny_ar)


def test_tiny_ar_draft_is_a_two_layer_tiny_ar_with_the_same_tokenizer(tiny_ar):
    draft = dllm.load("tiny-ar-draft")
    assert isinstance(draft, CausalLM) and draft.net.config.num_hidden_layers == 2
    assert draft.tokenizer.get_vocab() == tiny_ar.tokenizer.get_vocab() and draft.eos_ids == tiny_ar.eos_ids
    assert sum(p.numel() for p in draft.net.parameters()) < 0.6 * sum(
        p.numel() for p in tiny_ar.net.parameters()
    )


def test_a_sliding_window_verifier_rolls_back_and_stays_exact():
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    cfg = MistralConfig(
        vocab_size=V,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
        sliding_window=4,
        eos_token_id=EOS,
    )
    net = MistralForCausalLM(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.6)
    verifier = CausalLM(net=net, tokenizer=TinyTokenizer(), eos_ids=[EOS], name="sliding-window")
    prompt = [1, 2, 3, 4, 5, 1, 2]
    with torch.no_grad():
        reference = net.generate(
            torch.tensor([prompt]), max_new_tokens=12, do_sample=False, eos_token_id=EOS, pad_token_id=PAD
        )[0, len(prompt) :].tolist()
    [r] = dllm.speculate(
        verifier, [prompt], ScriptedDrafter(mode="wrong"), length=lengths.FixedLength(k=3), max_new_tokens=12
    )
    assert r.ids == reference[: dllm.metrics.answer_length(reference, [EOS])]


def test_tiny_dream_draft_is_a_two_layer_dream_drafter(tiny_ar):
    draft = dllm.load("tiny-dream-draft")
    assert isinstance(draft, DiffusionModel) and draft.config.n_layers == 2 and draft.config.shift_logits
    assert draft.tokenizer.get_vocab() == tiny_ar.tokenizer.get_vocab() and draft.mask_id == 3
