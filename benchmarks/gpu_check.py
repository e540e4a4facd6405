"""One prepared GPU check: decoding speed at LLaDA-8B shapes on one GPU, in one run of at most 8 minutes.

    python benchmarks/gpu_check.py --json benchmarks/results/gpu_check.json   # one H100 (80 GB)
    python benchmarks/gpu_check.py --smoke --json /tmp/gpu_check.json        # CPU, tiny shapes, < 1 min

Models are random-weight and built in memory, on the device, in their final dtype (bf16 on CUDA):
no checkpoint is written or read. The dLLM has LLaDA-8B's shapes and layout (hidden 4096, 32 layers,
32 heads MHA, intermediate 12288, vocabulary 126464, RoPE in fp32, no bias); the verifier of the
speculative section has Qwen2-0.5B's shapes (hidden 896, 24 layers, 14 heads, 2 K/V heads,
intermediate 4864, vocabulary 151936; a ``transformers`` ``Qwen2ForCausalLM``). Random weights make
confidence thresholds and acceptance meaningless, so every dLLM row uses the ``llada`` sampler with a
fixed number of steps (``steps = gen_length / 2``: two tokens per step, the same steps and forwards in
every row) and EOS is never proposed (``logits_eos_inf``), so every row decodes the same number of
tokens; the causal LMs' EOS rows of the LM head are zeroed for the same reason. Sections (one markdown
table, one row per measurement; tokens/s = generated tokens of all rows / wall seconds of the call):

- ``cache``: dual cache vs no cache, batch 1, gen 256, block 32, a 128-token prompt;
- ``batch``: batch 1 vs batch 16 (dual cache and no cache; 16 different prompts);
- ``attention``: the Triton attention kernel vs PyTorch SDPA (``attention_backend=``);
- ``speculate``: greedy speculative decoding at batch 1 and 8 against plain AR (``drafter=None``) at
  the same batch, 128 new tokens: ``ar`` with a 2-layer random Qwen2 drafter (untied embeddings, so its
  drafts are unrelated to the verifier's choices: acceptance ~0, the cost of rounds that gain nothing),
  ``onepass`` with a 2-layer random Dream-layout dLLM over the same vocabulary (likewise), and ``ar``
  with the verifier drafting for itself, k = 8 (acceptance ~100 %: the loop's speed when every draft
  is accepted). τ (accepted draft tokens per round) is in the notes; real drafters fall in between;
- ``compile``: ``compile=True`` (``torch.compile``, CUDA graphs through ``reduce-overhead``) vs eager,
  batch 1: dual cache, no cache, and dual cache on SDPA, as far as the budget goes (each compiles anew);
  the notes give the graphs compiled, graph breaks and CUDA-graph skips that ``torch._dynamo`` counted.

Each row: one warm-up call (the same settings; a shorter generation except for ``compile=True``, whose
CUDA graphs are recorded per shape), then ``--repeats`` timed calls between ``torch.cuda.synchronize()``
(median reported, all in the JSON), peak GPU memory of the row, and the share of rows whose tokens equal
the section baseline's (informational: bf16 kernels may round differently). A row measured with the
same settings earlier is reused, and says so. The run has a budget (``--budget``, 420 s after the
imports), each section a share of it (what one leaves goes to the next) and each row a timer (SIGALRM)
that cuts it at its section's end; a failing or cut row is an error row and the run goes on. The JSON
is rewritten after every row, so a run stopped from outside keeps what it measured. On CPU
(``--smoke``) the Triton kernel and CUDA graphs are reported as ``skipped: needs CUDA``.

No GPU was available when this script was written: it ran on CPU in ``--smoke`` mode only
(tests/test_gpu_check.py), so its figures are not in the README yet.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field

from dllm.models.config import REFERENCE_LAYOUTS

NEEDS_CUDA = "skipped: needs CUDA"

# LLaDA-8B-Instruct's shapes and special ids (mask 126336, EOS = pad 126081).
LLADA_8B = REFERENCE_LAYOUTS["llada-8b"]
# Qwen2-0.5B's shapes (the verifier); EOS / pad 151643 as in Qwen2.
QWEN2_05B = dict(
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    tie_word_embeddings=True,
    eos_token_id=151643,
    pad_token_id=151643,
)
DRAFT_LAYERS = 2
DREAM_MASK_ID = 151666  # Dream's mask id, inside Qwen2's vocabulary

SMOKE_DLLM = dict(
    LLADA_8B,
    d_model=64,
    n_layers=2,
    n_heads=4,
    n_kv_heads=4,
    head_dim=16,
    mlp_hidden=128,
    vocab_size=512,
    max_seq_len=256,
    mask_token_id=511,
    eos_token_ids=[510],
    pad_token_id=510,
)
SMOKE_VERIFIER = dict(
    QWEN2_05B,
    vocab_size=512,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    eos_token_id=510,
    pad_token_id=510,
)
SMOKE_DREAM_MASK_ID = 509

# Share of the time budget per section, in running order (compile is last: it is the slowest).
SECTIONS = {"cache": 1.0, "batch": 1.6, "attention": 1.0, "speculate": 1.6, "compile": 3.0}


@dataclass
class Settings:
    smoke: bool
    device: str
    dtype: str
    gen: int
    block: int
    prompt_tokens: int
    batch: int
    spec_batch: int
    spec_tokens: int
    repeats: int
    budget: float
    start: float = field(default_factory=time.perf_counter)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")


# ------------------------------------------------------------------------------------------ models
@contextmanager
def _build_context(device: str, dtype):
    """Modules built in ``dtype`` directly on ``device``: no fp32 or host copy of 8B weights."""
    import torch

    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(default)


def build_dllm(fields: dict, device: str, dtype, name: str, seed: int = 0, tokenizer=None):
    import torch

    from dllm.models import DiffusionModel, ModelConfig, Transformer

    cfg = ModelConfig(**fields, torch_dtype=str(dtype).replace("torch.", ""))
    torch.manual_seed(seed)
    with _build_context(device, dtype):
        net = Transformer(cfg).eval()
    return DiffusionModel(
        net=net,
        config=cfg,
        tokenizer=tokenizer,
        mask_id=cfg.mask_token_id,
        eos_ids=list(cfg.eos_token_ids),
        pad_id=cfg.pad_token_id,
        bos_id=None,
        name=name,
    )


class StandInTokenizer:
    """A tokenizer over ids 0..size-1 (token ``t{i}``), for random models: ``dllm.drafters``' vocabulary
    map needs one, and drafter and verifier share this one object, so their vocabularies agree."""

    bos_token_id = None

    def __init__(self, size: int, eos: int, mask: int | None = None):
        self.size, self.eos_token_id, self.pad_token_id, self.mask_token_id = size, eos, eos, mask
        self.name_or_path = f"stand-in-{size}"
        self._vocab = None

    def get_vocab(self) -> dict[str, int]:
        if self._vocab is None:
            self._vocab = {f"t{i}": i for i in range(self.size)}
        return dict(self._vocab)

    def __len__(self) -> int:
        return self.size

    def convert_ids_to_tokens(self, ids):
        return f"t{ids}" if isinstance(ids, int) else [f"t{i}" for i in ids]

    def decode(self, ids, skip_special_tokens=False) -> str:
        return " ".join(f"t{int(i)}" for i in ids)


def build_causal_lm(fields: dict, device: str, dtype, name: str, tokenizer, seed: int, **overrides):
    """A random ``transformers`` Qwen2 causal LM built on ``device`` in ``dtype`` (``overrides``:
    Qwen2Config fields)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dllm.models import CausalLM

    torch.manual_seed(seed)
    with _build_context(device, dtype):
        net = Qwen2ForCausalLM(Qwen2Config(**{**fields, **overrides})).eval()
    if next(net.parameters()).dtype != dtype:
        net.to(dtype=dtype)
    with torch.no_grad():  # EOS is never the argmax: every row generates its whole budget
        net.get_output_embeddings().weight[fields["eos_token_id"]] = 0
    return CausalLM(net=net, tokenizer=tokenizer, eos_ids=[fields["eos_token_id"]], name=name)


def random_prompts(count: int, length: int, vocab: int, avoid: set[int], seed: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(seed)
    prompts = []
    for _ in range(count):
        ids = torch.randint(0, vocab, (length * 2,), generator=g).tolist()
        prompts.append([t for t in ids if t not in avoid][:length])
    return prompts


# ------------------------------------------------------------------------------------------- rows
class RowTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise RowTimeout("cut by the section's time budget")


@contextmanager
def time_limit(seconds: float):
    """Raise ``RowTimeout`` in the main thread after ``seconds`` (SIGALRM; no limit where there is none)."""
    if not hasattr(signal, "setitimer"):
        yield
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _error_text(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"error: {type(error).__name__}" + (f": {text[0][:200]}" if text else "")


class Check:
    """Runs the rows of every section within the time budget and collects them."""

    def __init__(self, settings: Settings, json_path: str | None = None):
        self.s, self.json_path = settings, json_path
        self.rows: list[dict] = []
        self.memo: dict[tuple, dict] = {}
        self.section = ""
        self.deadline = settings.start + settings.budget
        self.baselines: dict[str, dict] = {}  # row name -> row, in the current section

    def sync(self) -> None:
        if self.s.cuda:
            import torch

            torch.cuda.synchronize()

    def begin_section(self, name: str, remaining_shares: float) -> None:
        now = time.perf_counter()
        end = self.s.start + self.s.budget
        self.section = name
        self.deadline = now + max(end - now, 0.0) * SECTIONS[name] / remaining_shares
        self.baselines = {}

    def add(self, name: str, run, warmup=None, *, key=None, baseline: str | None = None, skip: str = ""):
        """One row: ``warmup()``, then ``run()`` (-> outputs, tokens, notes) ``repeats`` times."""
        row = dict(section=self.section, name=name, baseline=baseline, status="ok", tokens=0, seconds=None)
        row.update(tokens_per_s=None, vs_baseline=None, same_tokens=None, peak_gpu_mib=None, notes="")
        outputs = None
        if skip:
            row["status"] = skip
        elif key is not None and key in self.memo:
            done = self.memo[key]
            for k in ("tokens", "seconds", "all_seconds", "tokens_per_s", "peak_gpu_mib", "notes"):
                row[k] = done.get(k)
            row["notes"] = f"same measurement as {done['section']} / {done['name']}; " + (row["notes"] or "")
            outputs = done.get("_outputs")
        elif time.perf_counter() >= self.deadline:
            row["status"] = "skipped: over the time budget"
        else:
            try:
                with time_limit(self.deadline - time.perf_counter()):
                    outputs = self._measure(row, run, warmup)
                if key is not None:
                    self.memo[key] = dict(row, _outputs=outputs)
            except Exception as error:  # one failing row must not lose the others
                row["status"] = _error_text(error)
                row["traceback"] = traceback.format_exc(limit=8)
                self._recover()
        if baseline is None:
            self.baselines[name] = dict(row, _outputs=outputs)
        else:
            base = self.baselines.get(baseline)
            if base is not None and base.get("tokens_per_s") and row.get("tokens_per_s"):
                row["vs_baseline"] = row["tokens_per_s"] / base["tokens_per_s"]
            if base is not None and base.get("_outputs") is not None and outputs is not None:
                pairs = list(zip(base["_outputs"], outputs))
                row["same_tokens"] = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
        self.rows.append(row)
        self.save()
        print(f"  {self.section} / {name}: {row['status']} {_fmt(row['tokens_per_s'])} tok/s", flush=True)
        return row

    def _measure(self, row: dict, run, warmup) -> list:
        import torch

        if self.s.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        (warmup or run)()
        self.sync()
        times, outputs, tokens, notes = [], None, 0, ""
        for _ in range(self.s.repeats):
            self.sync()
            t0 = time.perf_counter()
            outputs, tokens, notes = run()
            self.sync()
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        row.update(tokens=tokens, seconds=seconds, all_seconds=times, notes=notes)
        row["tokens_per_s"] = tokens / seconds if seconds > 0 else None
        if self.s.cuda:
            row["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        return outputs

    def save(self) -> None:
        """The JSON so far (after every row: a run cut short from outside keeps what it measured)."""
        if self.json_path:
            write_json(self.json_path, self.s, self.rows)

    def _recover(self) -> None:
        if self.s.cuda:
            import torch

            try:
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
            except Exception:
                pass

    def section_error(self, error: BaseException) -> None:
        status = _error_text(error)
        self.rows.append(
            dict(
                section=self.section,
                name="(setup)",
                status=status,
                tokens_per_s=None,
                traceback=traceback.format_exc(limit=8),
            )
        )
        self.save()
        print(f"  {self.section} setup: {status}", flush=True)
        self._recover()


# --------------------------------------------------------------------------------------- sections
class Denoise:
    """dLLM rows: ``dllm.generate`` with the llada sampler at a fixed number of steps."""

    def __init__(self, check: Check, model, prompts: list[list[int]]):
        self.check, self.model, self.prompts = check, model, prompts
        s = check.s
        default = "sdpa"
        if s.cuda:
            try:
                import triton  # noqa: F401

                default = "triton"
            except ImportError:
                pass
        self.default_backend = default

    def settings(self, gen: int) -> dict:
        block = min(self.check.s.block, gen)
        return dict(gen_length=gen, block_length=block, steps=gen // 2, logits_eos_inf=True)

    def row(self, name, *, cache, batch, backend=None, compile=False, baseline=None, skip=""):
        import dllm

        s = self.check.s
        backend = backend or self.default_backend
        prompts = self.prompts[:batch]

        def call(gen):
            graphs = _graph_count()
            results = dllm.generate(
                self.model,
                prompts,
                sampler="llada",
                cache=cache,
                attention_backend=backend,
                compile=compile,
                **self.settings(gen),
            )
            tokens = sum(r.gen_tokens for r in results)
            steps, nfe = results[0].steps, results[0].nfe
            notes = f"{backend}; steps {steps}, NFE {nfe} per row"
            if compile:  # a compile inside the timed call would be counted as decoding time
                notes += f"; graphs compiled in the timed call: {_graph_count() - graphs}"
            return [r.canvas for r in results], tokens, notes

        # compile=True: CUDA graphs are recorded per shape, so the warm-up is the timed call itself
        short = s.gen if compile else min(s.gen, 2 * s.block)
        key = (cache, batch, backend, compile)
        return self.check.add(
            name,
            lambda: call(s.gen),
            lambda: call(short),
            key=key,
            baseline=baseline,
            skip=skip,
        )


def section_cache(check: Check, den: Denoise) -> None:
    den.row("no cache, batch 1", cache="none", batch=1)
    den.row("dual cache, batch 1", cache="dual", batch=1, baseline="no cache, batch 1")


def section_batch(check: Check, den: Denoise) -> None:
    b = check.s.batch
    den.row("dual cache, batch 1", cache="dual", batch=1)
    den.row(f"dual cache, batch {b}", cache="dual", batch=b, baseline="dual cache, batch 1")
    den.row("no cache, batch 1", cache="none", batch=1)
    den.row(f"no cache, batch {b}", cache="none", batch=b, baseline="no cache, batch 1")


def section_attention(check: Check, den: Denoise) -> None:
    skip = "" if check.s.cuda else NEEDS_CUDA
    for cache, label in (("dual", "dual cache"), ("none", "no cache")):
        den.row(f"{label}, SDPA", cache=cache, batch=1, backend="sdpa")
        den.row(
            f"{label}, Triton", cache=cache, batch=1, backend="triton", baseline=f"{label}, SDPA", skip=skip
        )


def section_compile(check: Check, den: Denoise) -> None:
    """Dual cache first (its block steps have fixed shapes: where CUDA graphs should pay), then no cache,
    then dual cache on SDPA (should the Triton kernel not go through torch.compile); each compiles anew."""
    skip = "" if check.s.cuda else NEEDS_CUDA
    for cache, label, backend in (
        ("dual", "dual cache", None),
        ("none", "no cache", None),
        ("dual", "dual cache, SDPA", "sdpa"),
    ):
        den.row(f"{label}, eager", cache=cache, batch=1, backend=backend)
        row = den.row(
            f"{label}, compile=True",
            cache=cache,
            batch=1,
            backend=backend,
            compile=True,
            baseline=f"{label}, eager",
            skip=skip,
        )
        if row["status"] == "ok":
            row["notes"] += _compile_counters()


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"].get("unique_graphs", 0))


def _compile_counters() -> str:
    """What torch.compile reports: graph breaks, recompiles, and CUDA-graph skips (with reasons)."""
    try:
        from torch._dynamo.utils import counters
    except Exception:
        return ""
    breaks = sum(counters["graph_break"].values())
    graphs = counters["stats"].get("unique_graphs", 0)
    skips = dict(counters["inductor"]).get("cudagraph_skips", 0)
    return f"; compiled graphs {graphs}, graph breaks {breaks}, CUDA-graph skips {skips}"


def section_speculate(check: Check, models: dict) -> None:
    import torch

    import dllm
    import dllm.drafters.length as lengths

    s = check.s
    verifier, prompts = models["verifier"], models["ar_prompts"]
    fixed8 = lengths.get("fixed", k=8)
    drafters = [
        ("plain AR", None, None),
        (f"ar ({DRAFT_LAYERS}-layer random Qwen2), heuristic k", "ar_draft", None),
        (f"onepass ({DRAFT_LAYERS}-layer random Dream layout), k=8", "dream_draft", fixed8),
        ("ar (the verifier drafting for itself), k=8", "self", fixed8),
    ]
    built = {}
    for batch in (1, s.spec_batch):
        for label, which, length in drafters:
            name = f"{label}, batch {batch}"
            if which is not None and which not in built:
                try:
                    if which == "ar_draft":
                        built[which] = dllm.drafters.get("ar", model=models["ar_draft"])
                    elif which == "dream_draft":
                        built[which] = dllm.drafters.get("onepass", model=models["dream_draft"])
                    else:
                        built[which] = dllm.drafters.get("ar", model=verifier)
                except Exception as error:
                    check.section_error(error)
                    continue
            drafter = built.get(which)

            def call(max_new, drafter=drafter, length=length, batch=batch):
                with torch.no_grad():
                    results = dllm.speculate(
                        verifier, prompts[:batch], drafter, length=length, max_new_tokens=max_new
                    )
                tokens = sum(r.gen_tokens for r in results)
                rounds = sum(r.rounds for r in results)
                accepted = sum(r.accepted for r in results)
                vf = sum(r.verifier_forwards for r in results)
                notes = f"tokens/verifier forward {tokens / vf:.2f}" if vf else ""
                if drafter is not None and rounds:
                    notes = f"τ {accepted / rounds:.2f}, {notes}"
                return [r.ids for r in results], tokens, notes

            check.add(
                name,
                lambda call=call: call(s.spec_tokens),
                lambda call=call: call(min(s.spec_tokens, 16)),
                baseline=None if which is None else f"plain AR, batch {batch}",
            )


# ------------------------------------------------------------------------------------------- main
def build_denoise(check: Check) -> Denoise:
    import torch

    s = check.s
    fields = SMOKE_DLLM if s.smoke else LLADA_8B
    model = build_dllm(fields, s.device, getattr(torch, s.dtype), "random-llada-8b-shapes")
    specials = {fields["mask_token_id"], *fields["eos_token_ids"], fields["pad_token_id"]}
    prompts = random_prompts(max(s.batch, 1), s.prompt_tokens, fields["vocab_size"], specials, seed=1)
    return Denoise(check, model, prompts)


def build_spec_models(s: Settings) -> dict:
    import torch

    dtype = getattr(torch, s.dtype)
    fields = SMOKE_VERIFIER if s.smoke else QWEN2_05B
    mask = SMOKE_DREAM_MASK_ID if s.smoke else DREAM_MASK_ID
    eos = fields["eos_token_id"]
    tokenizer = StandInTokenizer(fields["vocab_size"], eos=eos, mask=mask)
    verifier = build_causal_lm(fields, s.device, dtype, "random-qwen2-0.5b-shapes", tokenizer, seed=2)
    # untied embeddings: with tied ones, small random weights make both models repeat the last token,
    # and every draft would be accepted
    ar_draft = build_causal_lm(
        fields,
        s.device,
        dtype,
        f"random-qwen2-{DRAFT_LAYERS}-layer",
        tokenizer,
        seed=3,
        num_hidden_layers=DRAFT_LAYERS,
        tie_word_embeddings=False,
    )
    dream_fields = dict(
        arch="dream",
        d_model=fields["hidden_size"],
        n_layers=DRAFT_LAYERS,
        n_heads=fields["num_attention_heads"],
        n_kv_heads=fields["num_key_value_heads"],
        head_dim=fields["hidden_size"] // fields["num_attention_heads"],
        mlp_hidden=fields["intermediate_size"],
        vocab_size=fields["vocab_size"],
        rope_theta=fields["rope_theta"],
        rms_eps=1e-6,
        qkv_bias=True,
        shift_logits=True,
        rope_fp32=False,
        max_seq_len=min(fields["max_position_embeddings"], 4096),
        mask_token_id=mask,
        eos_token_ids=[eos],
        pad_token_id=eos,
    )
    dream_draft = build_dllm(dream_fields, s.device, dtype, "random-dream-draft", seed=4, tokenizer=tokenizer)
    prompts = random_prompts(max(s.spec_batch, 1), s.prompt_tokens, fields["vocab_size"], {eos, mask}, seed=5)
    return dict(verifier=verifier, ar_draft=ar_draft, dream_draft=dream_draft, ar_prompts=prompts)


def run(s: Settings, sections: list[str], json_path: str | None = None) -> Check:
    """Every section in order; models are built once, before the first section that needs them and
    outside its time share."""
    check = Check(s, json_path)
    den = spec_models = None
    left = sum(SECTIONS[name] for name in sections)
    for name in sections:
        check.section = name
        print(f"[{time.perf_counter() - s.start:6.1f} s] section {name}", flush=True)
        try:
            if name == "speculate" and spec_models is None:
                spec_models = build_spec_models(s)
            elif name != "speculate" and den is None:
                den = build_denoise(check)
        except Exception as error:
            check.section_error(error)
            left -= SECTIONS[name]
            continue
        check.begin_section(name, left)
        left -= SECTIONS[name]
        try:
            if name == "speculate":
                section_speculate(check, spec_models)
            else:
                SECTION_RUNNERS[name](check, den)
        except Exception as error:
            check.section_error(error)
    del den, spec_models
    check._recover()
    return check


SECTION_RUNNERS = {
    "cache": section_cache,
    "batch": section_batch,
    "attention": section_attention,
    "compile": section_compile,
}


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = [
        "| section | configuration | tokens | seconds | tokens/s | vs baseline | same tokens"
        " | peak GPU MiB | notes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ok = r["status"] == "ok"
        same = r.get("same_tokens")
        notes = (r.get("notes") or "") if ok else r["status"]
        tokens = r.get("tokens") if ok else None
        ratio = r.get("vs_baseline")
        cells = [
            r["section"],
            r["name"],
            "—" if tokens is None else str(tokens),
            _fmt(r.get("seconds"), 2),
            _fmt(r.get("tokens_per_s")),
            "—" if ratio is None else f"{ratio:.2f}×",
            "—" if same is None else f"{same:.0%}",
            _fmt(r.get("peak_gpu_mib"), 0),
            notes,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(path: str, s: Settings, rows: list[dict], total: float | None = None) -> None:
    import torch

    meta = dict(
        device=torch.cuda.get_device_name() if s.cuda else "cpu",
        dtype=s.dtype,
        smoke=s.smoke,
        torch=torch.__version__,
        gen_length=s.gen,
        block_length=s.block,
        steps=s.gen // 2,
        sampler="llada",
        prompt_tokens=s.prompt_tokens,
        batch=s.batch,
        spec_batch=s.spec_batch,
        spec_tokens=s.spec_tokens,
        repeats=s.repeats,
        budget_s=s.budget,
        total_s=total,
        finished=total is not None,
        argv=sys.argv[1:],
        dllm_shapes=SMOKE_DLLM if s.smoke else LLADA_8B,
        verifier_shapes=SMOKE_VERIFIER if s.smoke else QWEN2_05B,
    )
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1)


def parse(argv=None) -> tuple[Settings, list[str], str | None]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="tiny shapes on CPU (a test keeps the script working)"
    )
    parser.add_argument("--json", help="write the rows and the run's facts to this path")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument(
        "--dtype", choices=["bfloat16", "float16", "float32"], help="default: bf16 on CUDA, fp32 on CPU"
    )
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--budget", type=float, help="seconds for the whole run (default 420; smoke 100)")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed calls per row after the warm-up (median)"
    )
    parser.add_argument("--gen", type=int, help="dLLM gen length (default 256; smoke 32)")
    parser.add_argument("--block", type=int, help="dLLM block length (default 32; smoke 8)")
    parser.add_argument("--prompt-tokens", type=int, help="prompt length (default 128; smoke 16)")
    parser.add_argument("--batch", type=int, default=16, help="the large dLLM batch")
    parser.add_argument("--spec-batch", type=int, default=8, help="the large speculative batch")
    parser.add_argument("--spec-tokens", type=int, help="speculative max_new_tokens (default 128; smoke 24)")
    args = parser.parse_args(argv)
    import torch

    device = args.device or ("cpu" if args.smoke or not torch.cuda.is_available() else "cuda")
    cuda = device.startswith("cuda")
    s = Settings(
        smoke=args.smoke,
        device=device,
        dtype=args.dtype or ("bfloat16" if cuda else "float32"),
        gen=args.gen or (32 if args.smoke else 256),
        block=args.block or (8 if args.smoke else 32),
        prompt_tokens=args.prompt_tokens or (16 if args.smoke else 128),
        batch=args.batch,
        spec_batch=args.spec_batch,
        spec_tokens=args.spec_tokens or (24 if args.smoke else 128),
        repeats=max(args.repeats, 1),
        budget=args.budget or (100.0 if args.smoke else 420.0),
    )
    if s.gen % s.block or (s.gen // 2) % (s.gen // s.block):
        parser.error(
            f"--gen {s.gen} must be a multiple of --block {s.block}, and gen/2 steps a multiple of the blocks"
        )
    return s, args.sections, args.json


def main(argv=None) -> int:
    s, sections, json_path = parse(argv)
    import torch

    if not s.cuda:
        torch.set_num_threads(1)  # tiny tensors on a shared CPU: more threads only spin
    device_name = torch.cuda.get_device_name() if s.cuda else "cpu"
    print(
        f"gpu_check: {device_name}, {s.dtype}, {'smoke shapes' if s.smoke else 'LLaDA-8B shapes'}", flush=True
    )
    check = run(s, sections, json_path)
    total = time.perf_counter() - s.start
    print()
    print(table(check.rows))
    print(f"\n{device_name}, {s.dtype}; total {total:.1f} s (budget {s.budget:.0f} s)")
    if json_path:
        write_json(json_path, s, check.rows, total)
    return 0


if __name__ == "__main__":
    sys.exit(main())
