"""The sweep runner: executes run configs and appends one JSONL record per sample as it finishes.

``run_sweep(spec, out_dir)`` (CLI: ``dllm eval run SPEC.yaml``) expands the spec
(:mod:`dllm.eval.spec`), then for every run config generates the task's samples in batches of
``batch_size`` with the config's sampler, cache and ``GenerationConfig``, scores each prediction
with the task's checker and appends a record to ``OUT/records/<run_id>.jsonl``. A record is
written as soon as its batch finishes, so an interrupted sweep resumes where it stopped: samples
whose ids are already in the file are not generated again.

Every count in a record comes from ``dllm.metrics`` (steps, NFE, generated tokens, tokens per
forward, tokens per step, throughput). Two raw counts sit beside them so other conventions can be
recomputed: ``canvas_len`` (positions allocated) and ``decoded_positions`` (positions the sampler
committed; the sum of ``unmask_counts``). ``canvas_tokens_per_step`` is ``metrics.tokens_per_step``
applied to ``decoded_positions``: the parallelism axis of ParallelBench's plots, EOS padding
included. Samples are decoded with continuous batching: one ``dllm.generate`` call gets up to
``4 x batch_size`` prompts and keeps ``batch_size`` rows running (finished rows leave, waiting
prompts join; each result equals the prompt's run alone). Latency is the call's wall time divided
by the prompts in the call (``batch_seconds`` and ``batch_size``, the prompts in the call, are kept).

Speculative run configs (``mode: "speculative"``, :mod:`dllm.eval.spec`) run ``dllm.speculate``
on the same prompts and write records with the same fields, counted in the verifier's terms: a
step is a draft-verify round, ``nfe`` = verifier forwards, ``tokens_per_forward`` = tokens per
verifier forward, ``decoded_positions`` = committed tokens (the stop token included, like EOS
padding), so ``canvas_tokens_per_step`` = tau with bonus; plus the speculative stats of
``SpeculativeResult`` (``tau``, ``tau_with_bonus``, ``acceptance_rate``, ``drafter_forwards``, the
batch's ``draft_seconds`` / ``verify_seconds``, ...) and ``drafter``, ``length``, ``length_params``.

Data parallel: under ``torchrun`` / ``accelerate launch`` each rank takes samples i mod world_size
of every config, appends them to ``records/<run_id>.rank<r>.jsonl`` (its resume file), and at the
end of the config the records are gathered on rank 0, which appends them to the config's file in
sample order and the ranks delete their partial files. Resuming (with any number of processes)
first folds leftover per-rank files into the config's file; the output directory is assumed to
be shared by the ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fcntl
import hashlib
import json
import logging
import os
import platform
import resource
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from dllm import caches as cache_registry
from dllm import metrics
from dllm import samplers as sampler_registry
from dllm.eval import tasks as task_lib
from dllm.eval.distributed import Distributed
from dllm.eval.files import output_file_remedy, read_json_object
from dllm.eval.spec import (
    PLAIN_AR,
    ModelEntry,
    RunConfig,
    Skipped,
    SweepSpec,
    canonical_json,
    expand,
    load_spec,
)

log = logging.getLogger("dllm.eval")

ORACLE_NAMES = ("oracle", "mock:ideal")
# Record fields that depend on timing, placement or the machine: excluded when comparing runs.
VOLATILE_FIELDS = (
    "latency_s",
    "batch_seconds",
    "batch_size",
    "tokens_per_second",
    "peak_mem_gb",
    "started_at",
    "rank",
    "world_size",
    "device",
    "git_sha",
    "torch_version",
    "hostname",
    "draft_seconds",
    "verify_seconds",
)
# SpeculativeResult counts copied into speculative records.
SPECULATIVE_FIELDS = (
    "rounds",
    "drafted",
    "accepted",
    "committed",
    "tau",
    "tau_with_bonus",
    "tokens_per_verifier_forward",
    "acceptance_rate",
    "acceptance_by_position",
    "verifier_forwards",
    "drafter_forwards",
    "draft_seconds",
    "verify_seconds",
)


# ------------------------------------------------------------------------------------- files
# Fields every record has (make_record writes them); a line without them is not a record.
RECORD_FIELDS = (
    "run_id",
    "mode",
    "model",
    "task",
    "sample_id",
    "sample_index",
    "sampler",
    "cache",
    "score",
    "gen_tokens",
)


def read_jsonl(path: Path) -> list[dict]:
    """Records of a JSONL file. A torn last line (an interrupted write) is ignored; any other line
    that is not a record is an error naming the file and line."""
    out = []
    if not path.exists():
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().split("\n")
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number - 1 == last:
                log.warning("ignoring a torn last line in %s", path)
                continue
            raise ValueError(
                f"{path}:{number}: not a JSON record ({exc.msg}); delete or fix that line"
            ) from None
        missing = (
            [f for f in RECORD_FIELDS if f not in record] if isinstance(record, dict) else list(RECORD_FIELDS)
        )
        if missing:
            raise ValueError(
                f"{path}:{number}: not a dllm eval record (missing {', '.join(missing)});"
                f" delete or fix that line"
            )
        out.append(record)
    return out


def _repair_tail(path: Path) -> None:
    """Cut an unterminated last line so that appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


class JsonlWriter:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(path)
        self.path = path
        self.fh = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self.fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


@dataclass
class Layout:
    """Where a sweep keeps its files."""

    root: Path

    @property
    def records(self) -> Path:
        return self.root / "records"

    def run_file(self, run_id: str) -> Path:
        return self.records / f"{run_id}.jsonl"

    def rank_file(self, run_id: str, rank: int) -> Path:
        return self.records / f"{run_id}.rank{rank}.jsonl"

    def partial_files(self, run_id: str) -> list[Path]:
        return sorted(self.records.glob(f"{run_id}.rank*.jsonl"))

    def consolidate(self, run_id: str) -> None:
        """Fold the per-rank files of an interrupted data-parallel run into the run's file."""
        partial = self.partial_files(run_id)
        if not partial:
            return
        merged: dict[str, dict] = {}
        for path in [self.run_file(run_id), *partial]:
            for rec in read_jsonl(path):
                merged.setdefault(rec["sample_id"], rec)
        tmp = self.run_file(run_id).with_suffix(".tmp")
        tmp.write_text(
            "".join(
                json.dumps(r, ensure_ascii=False) + "\n"
                for r in sorted(merged.values(), key=lambda r: r["sample_index"])
            )
        )
        os.replace(tmp, self.run_file(run_id))
        for path in partial:
            path.unlink(missing_ok=True)

    def done_ids(self, run_id: str) -> set[str]:
        done = set()
        for path in [self.run_file(run_id), *self.partial_files(run_id)]:
            done.update(r["sample_id"] for r in read_jsonl(path))
        return done


class SweepLocked(RuntimeError):
    """Another ``dllm eval run`` is writing to the same output folder."""


@contextlib.contextmanager
def folder_lock(root: Path, enabled: bool = True):
    """Hold ``root/.lock`` (an advisory ``flock``) while a sweep writes there, so two runs on one folder
    cannot both generate everything; the lock goes with the process, a crash cannot leave it stale."""
    if not enabled:
        yield
        return
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise SweepLocked(
                f"{root} is in use by another `dllm eval run` ({holder}); wait for it to finish or"
                f" pass another --out"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {platform.node()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _check_count(name: str, value, minimum: int) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < minimum):
        raise ValueError(f"{name}={value!r} is out of range; allowed an integer >= {minimum}")


def load_records(out_dir: str | Path) -> list[dict]:
    """Every record of a sweep directory (final and partial files), one per (run_id, sample_id)."""
    layout = Layout(Path(out_dir))
    seen: dict[tuple, dict] = {}
    for path in sorted(layout.records.glob("*.jsonl")):
        for rec in read_jsonl(path):
            seen.setdefault((rec["run_id"], rec["sample_id"]), rec)
    return sorted(seen.values(), key=lambda r: (r["run_id"], r.get("sample_index", 0)))


# ------------------------------------------------------------------------------------- models
def model_fingerprint(entry: ModelEntry, prebuilt: Any = None) -> str:
    """Identifies the weights, so results of a retrained checkpoint are not mistaken for old ones.

    Hashes config.json and, per weight file, its size plus its first and last MiB (cheap even for
    multi-GB checkpoints).
    """
    if prebuilt is not None:
        return str(getattr(prebuilt, "fingerprint", None) or getattr(prebuilt, "name", entry.label))
    if entry.name in ORACLE_NAMES:
        from dllm.eval.oracle import IdealMarginalModel

        return IdealMarginalModel.fingerprint
    if entry.name.startswith("random:"):
        return entry.name
    from dllm.models.loading import resolve_path

    folder = resolve_path(entry.name)  # a missing model stops the sweep before anything runs
    digest = hashlib.sha1()
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*.safetensors")):
        digest.update(path.name.encode())
        size = path.stat().st_size
        digest.update(str(size).encode())
        with open(path, "rb") as fh:
            digest.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                digest.update(fh.read())
    return digest.hexdigest()[:12]


def load_eval_model(entry: ModelEntry, device: str = "cpu", verifier: bool = False):
    """A model for the harness: ``oracle`` (the ideal-marginal mock), ``random:llada`` / ``random:dream``
    (tiny random weights, :mod:`dllm.eval.mock`), or anything ``dllm.load`` reads; with ``verifier``,
    a causal LM that ``dllm.load`` reads (the verifier of speculative runs)."""
    import dllm

    if verifier:
        from dllm.drafters.loop import as_verifier

        return as_verifier(dllm.load(entry.name, dtype=entry.dtype, device=entry.device or device))
    if entry.name in ORACLE_NAMES:
        from dllm.eval.oracle import IdealMarginalModel

        return IdealMarginalModel(device=entry.device or device)
    from dllm.eval import mock

    if entry.name.startswith(mock.PREFIX):
        return mock.from_name(entry.name, device=entry.device or device)
    model = dllm.load(entry.name, dtype=entry.dtype, device=entry.device or device)
    if not isinstance(model, dllm.DiffusionModel):
        raise ValueError(f"model {entry.name!r} is autoregressive; the sweep runner evaluates diffusion LMs")
    return model


def unsupported_reason(model, sampler, cache) -> str | None:
    """Why this model cannot run this sampler/cache pair (None when it can).

    Plugins may define ``unsupported_reason(model) -> str | None`` to declare their own limits.
    """
    if getattr(cache, "needs_kv", False) and not getattr(model, "supports_kv", True):
        model_name = getattr(model, "name", "?")
        return f"cache {cache.name!r} needs K/V buffers, which model {model_name!r} does not have"
    for plugin in (sampler, cache):
        hook = getattr(plugin, "unsupported_reason", None)
        if callable(hook):
            reason = hook(model)
            if reason:
                return str(reason)
    return None


# ------------------------------------------------------------------------------------- records
def _peak_memory_gb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "cpu_max_rss"


_ENV_CACHE: dict = {}


def environment() -> dict:
    if not _ENV_CACHE:
        try:
            sha = (
                subprocess.run(
                    ["git", "rev-parse", "--short", "HEAD"],
                    cwd=Path(__file__).parent,
                    text=True,
                    capture_output=True,
                    timeout=5,
                ).stdout.strip()
                or None
            )
        except (OSError, subprocess.SubprocessError):
            sha = None
        import dllm

        _ENV_CACHE.update(
            git_sha=sha,
            torch_version=torch.__version__,
            dllm_version=dllm.__version__,
            hostname=platform.node(),
        )
    return dict(_ENV_CACHE)


def ar_kendall(trace) -> float | None:
    """Kendall tau-b between a committed position's canvas offset and the step that committed it.

    1.0 = strictly left to right (autoregressive order), -1.0 = right to left; None when every
    position was committed in one step (no order to measure).
    """
    return _kendall(
        [p for step in trace for p in step.positions], [step.step for step in trace for _ in step.positions]
    )


def _kendall(positions: list[int], steps: list[int]) -> float | None:
    pos = torch.tensor(positions, dtype=torch.float64)
    when = torch.tensor(steps, dtype=torch.float64)
    n = pos.numel()
    if n < 2:
        return None
    concordance = (
        (torch.sign(pos[:, None] - pos[None]) * torch.sign(when[:, None] - when[None])).triu(1).sum()
    )
    pairs = n * (n - 1) / 2
    tied = sum(c * (c - 1) / 2 for c in torch.unique(when, return_counts=True)[1].tolist())
    if pairs == tied:
        return None
    return float(concordance / ((pairs * (pairs - tied)) ** 0.5))


def make_record(
    run: RunConfig,
    cfg,
    task,
    example,
    index: int,
    result,
    *,
    score: float,
    prompt_tokens: int,
    batch_size: int,
    batch_seconds: float,
    peak_mem: tuple[float, str],
    device: str,
    rank: int,
    world_size: int,
    started_at: str,
) -> dict:
    """One per-sample record (schema in the module docstring and docs/evaluate.md); ``cfg`` and
    ``result`` are a ``GenerationConfig`` / ``GenerationResult`` or, for a speculative run, a
    ``SpeculativeConfig`` / ``SpeculativeResult``."""
    latency = batch_seconds / batch_size
    return {
        "run_id": run.run_id,
        "mode": run.mode,
        "model": run.model,
        "task": run.task,
        "task_family": task.family,
        "split": run.split,
        "sample_id": example.uid,
        "sample_index": index,
        "sampler": run.sampler,
        "family": run.family,
        "knob": run.knob,
        "k": run.k,
        "sampler_params": run.sampler_params,
        "cache": run.cache,
        "cache_params": run.cache_params,
        "temperature": cfg.temperature,
        "seed": cfg.seed,
        "reference": run.reference,
        "prompt_tokens": prompt_tokens,
        "prediction": result.text,
        "target": example.target,
        "score": score,
        "gen_tokens": result.gen_tokens,
        **(_speculative_counts(run, cfg, result) if run.speculative else _diffusion_counts(cfg, result)),
        "latency_s": latency,
        "batch_seconds": batch_seconds,
        "batch_size": batch_size,
        "tokens_per_second": metrics.throughput(result.gen_tokens, latency),
        "peak_mem_gb": round(peak_mem[0], 4),
        "peak_mem_kind": peak_mem[1],
        "device": device,
        "rank": rank,
        "world_size": world_size,
        "started_at": started_at,
        **environment(),
    }


def _diffusion_counts(cfg, result) -> dict:
    counts = [len(step.positions) for step in result.trace]
    decoded = sum(counts)
    return {
        "gen_length": cfg.gen_length,
        "block_length": cfg.block_length,
        "steps_setting": cfg.steps,
        "steps": result.steps,
        "nfe": result.nfe,
        "canvas_len": len(result.canvas),
        "decoded_positions": decoded,
        "tokens_per_forward": metrics.tokens_per_forward(result.gen_tokens, result.nfe),
        "tokens_per_step": metrics.tokens_per_step(result.gen_tokens, result.steps),
        "canvas_tokens_per_step": metrics.tokens_per_step(decoded, result.steps),
        "unmask_counts": counts,
        "ar_kendall": ar_kendall(result.trace),
    }


def _speculative_counts(run: RunConfig, cfg, result) -> dict:
    """The diffusion counts in the verifier's terms (module docstring), plus the speculative stats."""
    counts = [len(r.committed) for r in result.trace]
    return {
        "gen_length": cfg.max_new_tokens,
        "block_length": cfg.max_new_tokens,
        "steps_setting": None,
        "steps": result.rounds,
        "nfe": result.verifier_forwards,
        "canvas_len": cfg.max_new_tokens,
        "decoded_positions": result.committed,
        "tokens_per_forward": result.tokens_per_verifier_forward,
        "tokens_per_step": metrics.tokens_per_step(result.gen_tokens, result.rounds),
        "canvas_tokens_per_step": metrics.tokens_per_step(result.committed, result.rounds),
        "unmask_counts": counts,
        "ar_kendall": _kendall(
            list(range(result.committed)), [i for i, c in enumerate(counts) for _ in range(c)]
        ),
        "drafter": None if run.sampler == PLAIN_AR else run.sampler,
        "length": run.length,
        "length_params": run.length_params,
        **{name: getattr(result, name) for name in SPECULATIVE_FIELDS},
    }


def comparable(record: dict) -> dict:
    """A record without its timing / placement fields (what two runs of one config must share)."""
    return {k: v for k, v in record.items() if k not in VOLATILE_FIELDS}


# ------------------------------------------------------------------------------------- progress
class _Progress:
    """Rich progress bar (configs and samples done, ETA) on rank 0; silent elsewhere."""

    def __init__(self, enabled: bool, configs: int, samples: int):
        self.bar = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("elapsed"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        )
        self.configs = self.bar.add_task("configs", total=configs)
        self.samples = self.bar.add_task("samples", total=samples)
        self.bar.start()

    def advance(self, samples: int = 0, configs: int = 0) -> None:
        if self.bar is not None:
            self.bar.advance(self.samples, samples)
            self.bar.advance(self.configs, configs)

    def print(self, message: str) -> None:
        if self.bar is not None:
            self.bar.console.print(message, highlight=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# ------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepResult:
    out_dir: Path
    runs: list[RunConfig]
    skipped: list[Skipped]
    generated: int = 0  # samples generated by this call (all ranks)
    reused: int = 0  # samples found already done
    failed: list[Skipped] = field(default_factory=list)


def cpu_threads(world_size: int = 1) -> int:
    """Default torch threads per process on CPU: half the cores, split over the ranks, at least 1.

    Leaving cores free matters on shared machines: with every core busy elsewhere, torch's
    OpenMP threads spin-wait and a tiny model can run 100x slower than with one thread.
    """
    return max(1, (os.cpu_count() or 1) // (2 * world_size))


PROMPTS_PER_CALL = 4  # in batch sizes: prompts given to one continuous-batching generate call


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_sweep(
    spec: str | Path | dict | SweepSpec,
    out_dir: str | Path | None = None,
    *,
    models: dict[str, Any] | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    max_configs: int | None = None,
    threads: int | None = None,
    on_record: Callable[[dict], None] | None = None,
) -> SweepResult:
    """Run (or resume) a sweep; returns what was run, skipped and reused.

    ``models`` maps model labels to already-built model objects (tests, notebooks); other
    entries are loaded by name. ``max_configs`` stops after that many configs (for smoke runs).
    ``threads``: set torch's CPU threads for the sweep (the CLI passes :func:`cpu_threads` by default).
    """
    _check_count("batch_size", batch_size, 1)
    _check_count("max_configs", max_configs, 0)
    _check_count("threads", threads, 1)
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    dist = Distributed.from_env()
    if threads:
        torch.set_num_threads(threads)
    out = Path(out_dir or spec.output_dir or Path("results") / spec.name)
    with contextlib.ExitStack() as held:
        # rank 0 takes the folder; a locked (or unusable) folder is the same error on every rank
        dist.run_on_main(lambda: held.enter_context(folder_lock(_output_folder(out))))
        return _run_sweep(spec, out, dist, models, batch_size, progress, max_configs, on_record)


def _output_folder(root: Path) -> Path:
    """``root``, created if needed; a ValueError naming it when it is a file or cannot be created."""
    if root.exists() and not root.is_dir():
        raise ValueError(f"output folder {root} is a file, not a folder; pass another --out")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission, ...
        problem = exc.strerror
    else:
        return root
    raise ValueError(f"cannot create the output folder {root} ({problem}); pass another --out")


def _run_sweep(
    spec: SweepSpec, out: Path, dist: Distributed, models, batch_size, progress, max_configs, on_record
) -> SweepResult:
    layout = Layout(out)
    models = dict(models or {})
    entries = {m.label: m for m in spec.models + spec.verifiers}
    fingerprints = {key: model_fingerprint(e, models.get(key)) for key, e in spec.weights().items()}
    runs, skipped = expand(spec, fingerprints)
    if max_configs is not None:
        runs = runs[:max_configs]
    bs = int(batch_size or spec.batch_size)

    # Rank 0 decides what is left to do; every rank follows the same plan (or raises rank 0's error).
    def make_plan() -> list[list[int]]:
        layout.records.mkdir(parents=True, exist_ok=True)
        _write_manifest(layout, spec, runs, skipped)
        for item in skipped:
            log.info("skipped %s: %s", canonical_json(item.combo), item.reason)
        plan = []
        for run in runs:
            layout.consolidate(run.run_id)  # leftovers of an interrupted multi-process run
            done = layout.done_ids(run.run_id)
            examples = task_lib.get(run.task).examples(run.split, run.num_samples, run.data_seed)
            plan.append([i for i, ex in enumerate(examples) if ex.uid not in done])
        return plan

    plan = dist.run_on_main(make_plan)
    result = SweepResult(out_dir=out, runs=runs, skipped=skipped)
    result.reused = sum(r.num_samples - len(todo) for r, todo in zip(runs, plan))
    todo_configs = [(r, t) for r, t in zip(runs, plan) if t]
    bar = _Progress(
        progress and dist.is_main, len(todo_configs), sum(len(dist.shard(t)) for _, t in todo_configs)
    )
    if dist.is_main and result.reused:
        bar.print(
            f"resuming: {result.reused} samples of {len(runs)} configs already done,"
            f" {len(todo_configs)} configs left"
        )
    loaded: dict[str, Any] = {}
    try:
        for run, todo in todo_configs:
            if run.model not in loaded:
                loaded.clear()  # one model in memory at a time (runs are ordered model-major)
                model = models.get(run.model) or load_eval_model(
                    entries[run.model], dist.device, run.speculative
                )
                loaded[run.model] = model
                _warmup(model, run, spec.warmup)
            elif run.speculative:  # each drafter loads its own model on first use
                _warmup(loaded[run.model], run, spec.warmup)
            model = loaded[run.model]
            records, error = _run_config(run, dist.shard(todo), model, bs, layout, dist, bar, on_record)
            gathered = dist.gather_object((records, error))
            if dist.world_size > 1:
                if dist.is_main:
                    merged = sorted(
                        (r for recs, _ in gathered for r in recs), key=lambda r: r["sample_index"]
                    )
                    writer = JsonlWriter(layout.run_file(run.run_id))
                    for rec in merged:
                        writer.write(rec)
                    writer.close()
                dist.barrier()
                layout.rank_file(run.run_id, dist.rank).unlink(missing_ok=True)
            if dist.is_main:
                errors = {e for _, e in gathered if e}
                n_new = sum(len(recs) for recs, _ in gathered)
                result.generated += n_new
                if errors:
                    failure = Skipped(combo=run.to_dict(), reason="; ".join(sorted(errors)))
                    result.failed.append(failure)
                    _append_skipped(layout, failure)
                bar.advance(configs=1)
    finally:
        bar.close()
    dist.barrier()
    return result


def _write_manifest(layout: Layout, spec: SweepSpec, runs: list[RunConfig], skipped: list[Skipped]) -> None:
    import yaml

    (layout.root / "spec.yaml").write_text(yaml.safe_dump(spec.raw, sort_keys=False))
    manifest_path = layout.root / "configs.json"
    manifest = (
        read_json_object(manifest_path, "sweep manifest", output_file_remedy(manifest_path))
        if manifest_path.exists()
        else {}
    )
    manifest.update({r.run_id: r.to_dict() for r in runs})
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    with open(layout.root / "skipped.jsonl", "w", encoding="utf-8") as fh:
        for item in skipped:
            fh.write(json.dumps({"combo": item.combo, "reason": item.reason}) + "\n")


def _append_skipped(layout: Layout, item: Skipped) -> None:
    with open(layout.root / "skipped.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"combo": item.combo, "reason": item.reason}) + "\n")


def _decoder(
    run: RunConfig, model, trace: bool = True, max_batch: int | None = None
) -> tuple[Callable[[list[str]], list], Any]:
    """``(decode, config)``: ``decode(prompts)`` runs the run's ``dllm.generate`` (fresh sampler and
    cache; at most ``max_batch`` rows at once, continuous batching) or ``dllm.speculate`` (fresh
    drafter and length controller) on a list of prompts."""
    import dllm

    config = run.generation_config(trace=trace)
    if run.speculative:

        def decode(prompts):
            drafter, length = run.drafter()
            return dllm.speculate(model, prompts, drafter=drafter, length=length, config=config)
    else:

        def decode(prompts):
            return dllm.generate(
                model,
                prompts,
                sampler=sampler_registry.get(run.sampler, **run.sampler_params),
                cache=cache_registry.get(run.cache, **run.cache_params),
                config=config,
                max_batch=max_batch,
            )

    return decode, config


def _warmup(model, run: RunConfig, times: int) -> None:
    if times <= 0:
        return
    example = task_lib.get(run.task).examples(run.split, 1, run.data_seed)[0]
    if not run.speculative:  # a dLLM warms up without a cache (the model may not support the run's)
        run = dataclasses.replace(run, cache="none", cache_params={})
    decode = _decoder(run, model, trace=False)[0]
    for _ in range(times):
        try:
            decode([example.prompt])
        except (ValueError, NotImplementedError) as exc:  # the run itself will report it
            log.info("warm-up skipped: %s", exc)
            return


def _run_config(
    run: RunConfig, todo: list[int], model, batch_size: int, layout: Layout, dist: Distributed, bar, on_record
) -> tuple[list[dict], str | None]:
    """Generate and record this rank's samples of one config; returns (records, error or None)."""
    task = task_lib.get(run.task)
    examples = task.examples(run.split, run.num_samples, run.data_seed)
    if not run.speculative:
        reason = unsupported_reason(
            model,
            sampler_registry.get(run.sampler, **run.sampler_params),
            cache_registry.get(run.cache, **run.cache_params),
        )
        if reason:
            return [], reason
    decode, config = _decoder(run, model, max_batch=batch_size)
    # generate keeps a batch of batch_size rows full (continuous batching) over a call of several
    # batches' worth of prompts; records are written at the end of each call (resume granularity)
    per_call = batch_size if run.speculative else batch_size * PROMPTS_PER_CALL
    path = layout.run_file(run.run_id) if dist.world_size == 1 else layout.rank_file(run.run_id, dist.rank)
    writer = JsonlWriter(path)
    device = model.device if isinstance(model.device, torch.device) else torch.device(model.device)
    records: list[dict] = []
    try:
        for batch in _chunks(todo, per_call):
            prompts = [examples[i].prompt for i in batch]
            started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            try:
                results = decode(prompts)
            except (ValueError, NotImplementedError) as exc:
                return records, f"{type(exc).__name__}: {exc}"
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            peak = _peak_memory_gb(device)
            for i, res in zip(batch, results):
                ex = examples[i]
                rec = make_record(
                    run,
                    config,
                    task,
                    ex,
                    i,
                    res,
                    score=float(task.score(res.text, ex)),
                    prompt_tokens=len(model.encode(ex.prompt)),
                    batch_size=len(batch),
                    batch_seconds=metrics.batch_seconds(results),
                    peak_mem=peak,
                    device=str(device),
                    rank=dist.rank,
                    world_size=dist.world_size,
                    started_at=started,
                )
                writer.write(rec)
                records.append(rec)
                if on_record is not None:
                    on_record(rec)
            bar.advance(samples=len(batch))
    finally:
        writer.close()
    return records, None
