"""Sweep specifications: a YAML (or dict) grid expanded into run configs with stable ids.

A spec names models x tasks x samplers (with parameter grids) x caches x generation settings::

    name: small
    output_dir: results/small          # the CLI's --out overrides it
    models: [tiny-llada, {name: tiny-dream, dtype: float32}]
    tasks: [copy, {name: reverse, num_samples: 8}]
    num_samples: 16                    # per task (a task entry may override it, and seed / split)
    split: eval
    data_seed: 0
    samplers:
      - {name: llada, family: llada top-k, k: [1, 2, 4, 8]}       # k = tokens per step -> steps
      - {name: fast-dllm, family: fast-dllm threshold, grid: {threshold: [0.5, 0.7, 0.9]}}
    caches: [none]                     # or {name: ..., params: {...}, grid: {...}}
    generation:                        # GenerationConfig fields; a list is a grid axis
      gen_length: task                 # "task" = the task's max_new_tokens
      block_length: [null]             # null = the whole canvas (one block)
      temperature: 0.0
    batch_size: 8
    warmup: 1                          # untimed generate calls per model before the first run
    reference: true                    # add llada k=1 / no cache per (model, task, block): speedup baseline
    exclude: [{sampler: fast-dllm, cache: dual, reason: "not supported together"}]
    speculative:                       # speculative decoding (dllm.speculate) beside the samplers
      - {verifier: tiny-ar, drafter: diffuspec, params: {model: tiny-dream}, length: adl, family: diffuspec}
      - {verifier: tiny-ar, drafter: none, family: plain AR}

``expand(spec)`` returns the run configs to execute and the skipped combinations, each with the
reason it was skipped: a ``GenerationConfig`` / sampler / cache constructor rejected the values
(e.g. steps not a multiple of the number of blocks, ``k`` larger than the block), or an
``exclude`` rule matched. Plugins are looked up by name in ``dllm.samplers`` / ``dllm.caches``,
so new plugins are available to sweeps as soon as they are registered.

A ``speculative`` entry x task is a run config in ``mode="speculative"``: ``dllm.speculate`` with
the verifier (a causal LM; its label is the record's ``model``), the drafter (``dllm.drafters``;
``none`` = plain AR decoding) with its ``params``, the length controller
(``dllm.drafters.length``) with its ``length_params``, ``max_new_tokens`` = the gen length the
task's dLLM runs get, and ``temperature`` / ``seed`` from ``generation``. The run's ``sampler`` /
``sampler_params`` are the drafter's name and parameters. With ``reference: true`` the plain-AR
run of every verifier x task is added; plain-AR runs are their verifier's speedup baseline. A spec
may have ``speculative`` entries only (no ``models`` / ``samplers``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dllm import caches as cache_registry
from dllm import drafters as drafter_registry
from dllm import samplers as sampler_registry
from dllm.config import GenerationConfig
from dllm.drafters import SpeculativeConfig
from dllm.drafters import length as length_registry

TOP_KEYS = {
    "name",
    "output_dir",
    "models",
    "tasks",
    "num_samples",
    "split",
    "data_seed",
    "samplers",
    "caches",
    "generation",
    "batch_size",
    "warmup",
    "reference",
    "exclude",
    "task_sets",
    "description",
    "speculative",
}
SAMPLER_KEYS = {"name", "family", "params", "grid", "k"}
CACHE_KEYS = {"name", "params", "grid"}
TASK_KEYS = {"name", "num_samples", "seed", "split", "gen_length"}
MODEL_KEYS = {"name", "path", "dtype", "device", "label"}
SPECULATIVE_KEYS = {"verifier", "drafter", "params", "length", "length_params", "family"}
_GEN_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GenerationConfig)}
REFERENCE_SAMPLER, REFERENCE_FAMILY = "llada", "reference (1 token/step)"
PLAIN_AR, PLAIN_AR_FAMILY = "none", "plain AR"  # speculative run without a drafter


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stable_id(obj: Any, length: int = 12) -> str:
    """A short content hash of ``obj``'s canonical JSON (same config -> same id, in any process)."""
    return hashlib.sha1(canonical_json(obj).encode()).hexdigest()[:length]


@dataclass
class RunConfig:
    """One point of the sweep: a model, a task, a sampler setting, a cache setting, a generation config."""

    model: str  # label of the model entry
    task: str
    split: str
    num_samples: int
    data_seed: int
    sampler: str
    sampler_params: dict
    family: str  # sampler family label (one colour in the plots)
    knob: str | None  # the family's varying parameter ("k", "threshold", ...)
    k: int | None  # tokens per step for schedule samplers (steps = ceil(L / k))
    cache: str
    cache_params: dict
    generation: dict  # GenerationConfig fields that differ from the defaults
    reference: bool = False  # the speedup baseline (1-token/step no-cache dLLM run, or plain AR)
    model_fingerprint: str = ""
    mode: str = "diffusion"  # or "speculative": model = verifier, sampler = drafter (or "none"),
    length: str | None = None  # generation = SpeculativeConfig fields; the draft-length controller
    length_params: dict = field(default_factory=dict)
    run_id: str = field(default="", compare=False)

    @property
    def speculative(self) -> bool:
        return self.mode == "speculative"

    def identity(self) -> dict:
        """Everything that changes the outputs; hashed into ``run_id``. Batch size is not part of it."""
        out = {
            "model": self.model,
            "model_fingerprint": self.model_fingerprint,
            "task": self.task,
            "split": self.split,
            "num_samples": self.num_samples,
            "data_seed": self.data_seed,
            "sampler": self.sampler,
            "sampler_params": self.sampler_params,
            "cache": self.cache,
            "cache_params": self.cache_params,
            "generation": self.generation,
        }
        if self.speculative:  # diffusion ids stay what they were
            out.update(mode=self.mode, length=self.length, length_params=self.length_params)
        return out

    def finalize(self) -> RunConfig:
        self.run_id = stable_id(self.identity())
        return self

    def generation_config(self, trace: bool = True) -> GenerationConfig | SpeculativeConfig:
        """The run's ``GenerationConfig``, or its ``SpeculativeConfig`` for a speculative run."""
        return (SpeculativeConfig if self.speculative else GenerationConfig)(
            **{**self.generation, "trace": trace}
        )

    @property
    def block_length(self) -> int:
        return self.gen_length if self.speculative else self.generation_config().block_length

    @property
    def gen_length(self) -> int:
        return self.generation["max_new_tokens"] if self.speculative else self.generation_config().gen_length

    def drafter(self):
        """The drafter and the length controller of a speculative run (None, None for plain AR)."""
        drafter = (
            None if self.sampler == PLAIN_AR else drafter_registry.get(self.sampler, **self.sampler_params)
        )
        length = None if self.length is None else length_registry.get(self.length, **self.length_params)
        return drafter, length

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Skipped:
    combo: dict
    reason: str


@dataclass
class ModelEntry:
    label: str
    name: str
    dtype: str | None = None
    device: str | None = None


@dataclass
class TaskEntry:
    name: str
    num_samples: int
    seed: int
    split: str
    gen_length: int | str = "task"


@dataclass
class SweepSpec:
    name: str
    models: list[ModelEntry]
    tasks: list[TaskEntry]
    samplers: list[dict]
    caches: list[dict]
    generation: dict
    batch_size: int = 1
    warmup: int = 1
    reference: bool = True
    exclude: list[dict] = field(default_factory=list)
    output_dir: str | None = None
    task_sets: dict = field(default_factory=dict)
    speculative: list[dict] = field(default_factory=list)
    verifiers: list[ModelEntry] = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    def weights(self) -> dict[str, ModelEntry]:
        """Every model whose weights change the results, by fingerprint key: model and verifier labels,
        and ``drafter:<name>`` for the models drafters load by name."""
        out = {m.label: m for m in self.models + self.verifiers}
        for entry in self.speculative:
            if entry["drafter_model"]:
                name = entry["drafter_model"]
                out[f"drafter:{name}"] = ModelEntry(label=name, name=name)
        return out


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _integer(where: str, value, minimum: int | None = None) -> int:
    """A spec value that must be an integer (YAML ``16``; ``"16"`` is read too), ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{where}={value!r} is not an integer")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{where}={value!r} is not an integer") from None
    if minimum is not None and number < minimum:
        raise ValueError(f"{where}={number} is out of range; allowed [{minimum}, inf)")
    return number


def _check_keys(where: str, data: dict, allowed: set) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def plugin_params(kind: str, registry, name: str) -> set[str]:
    """Parameter names of the plugin registered as ``name``; ValueError listing the known plugins
    otherwise."""
    described = {row["name"]: row for row in registry.describe()}
    if name not in described:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(sorted(described))}")
    return set(described[name]["params"])


def _check_params(kind: str, registry, name: str, params) -> None:
    """A typo in a plugin or parameter name is an error, not a skipped combination."""
    fields = plugin_params(kind, registry, name)
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ValueError(
            f"{kind} {name!r} has no parameter(s) {unknown}; its parameters: {sorted(fields) or 'none'}"
        )


def _model_entry(entry, where: str) -> ModelEntry:
    entry = {"name": entry} if isinstance(entry, str) else dict(entry)
    _check_keys(where, entry, MODEL_KEYS)
    name = entry.get("path") or entry["name"]
    return ModelEntry(
        label=entry.get("label") or entry["name"],
        name=str(name),
        dtype=entry.get("dtype"),
        device=entry.get("device"),
    )


def _speculative_entry(entry, where: str) -> dict:
    """A validated ``speculative`` entry: the drafter and length controller are built once here, so an
    unknown name, parameter or out-of-range value is an error at load."""
    if not isinstance(entry, dict) or not entry.get("verifier"):
        raise ValueError(
            f"{where}: expected a mapping with a 'verifier' (a causal LM such as tiny-ar) and a"
            f" 'drafter' (one of {', '.join(drafter_registry.names())} or none); got {entry!r}"
        )
    _check_keys(where, entry, SPECULATIVE_KEYS)
    drafter = str(entry.get("drafter") or PLAIN_AR)
    params, length_params = dict(entry.get("params") or {}), dict(entry.get("length_params") or {})
    length = None if entry.get("length") is None else str(entry["length"])
    if drafter == PLAIN_AR and (params or length or length_params):
        raise ValueError(
            f"{where}: params / length / length_params need a drafter ('drafter: none' is plain AR)"
        )
    if length is None and length_params:
        raise ValueError(
            f"{where}: length_params given without a length controller"
            f" (one of {', '.join(length_registry.names())})"
        )
    try:
        built = None if drafter == PLAIN_AR else drafter_registry.get(drafter, **params)
        if length is not None:
            length_registry.get(length, **length_params)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    model = getattr(built, "model", None)
    family = PLAIN_AR_FAMILY if drafter == PLAIN_AR else f"{drafter} {length}" if length else drafter
    return {
        "verifier": _model_entry(entry["verifier"], f"{where}.verifier"),
        "drafter": drafter,
        "params": params,
        "length": length,
        "length_params": length_params,
        "family": entry.get("family") or family,
        "drafter_model": model if isinstance(model, str) else None,
    }


def load_spec(source: str | Path | dict) -> SweepSpec:
    """Parse and validate a sweep spec from a YAML file path, YAML text or a dict.

    A ``Path``, and a one-line string that is not a ``{...}`` mapping, name a file; a missing file is a
    FileNotFoundError naming it (not YAML text that happens to be a string)."""
    if isinstance(source, dict):
        data = copy.deepcopy(source)
        where = "a sweep spec"
    else:
        from dllm.eval.files import parse_yaml, read_text

        text = str(source)
        if isinstance(source, Path) or ("\n" not in text and not text.lstrip().startswith("{")):
            where = f"sweep spec {source}"
            text = read_text(Path(source), "sweep spec")
        else:
            where = "the sweep spec text"
        data = parse_yaml(text, where)
    if not isinstance(data, dict):
        found = "nothing (it is empty)" if data is None else f"a YAML {type(data).__name__}"
        raise ValueError(f"{where} must be a mapping with models, tasks and samplers; found {found}")
    _check_keys("spec", data, TOP_KEYS)
    diffusion = bool(data.get("models") or data.get("samplers") or not data.get("speculative"))
    for key in ("models", "tasks", "samplers") if diffusion else ("tasks",):
        if not data.get(key):
            raise ValueError(f"spec: {key!r} must list at least one entry")
    from dllm.eval import tasks as task_lib

    models = [_model_entry(entry, "spec.models[]") for entry in _as_list(data.get("models") or [])]
    labels = [m.label for m in models]
    if len(set(labels)) != len(labels):
        raise ValueError(f"spec.models: duplicate labels {labels}; give each entry a distinct label")
    speculative = [
        _speculative_entry(entry, f"spec.speculative[{i}]")
        for i, entry in enumerate(_as_list(data.get("speculative") or []))
    ]
    verifiers: dict[str, ModelEntry] = {}
    for entry in speculative:
        verifier = entry["verifier"]
        if verifier.label in labels:
            raise ValueError(
                f"spec.speculative: verifier label {verifier.label!r} is also a spec.models label;"
                f" give the verifier another label"
            )
        if verifiers.setdefault(verifier.label, verifier) != verifier:
            raise ValueError(
                f"spec.speculative: verifier label {verifier.label!r} names two different models"
                f" ({verifiers[verifier.label]} and {verifier}); give each a distinct label"
            )
    n_default = _integer("spec.num_samples", data.get("num_samples", 16), 1)
    tasks = []
    for entry in _as_list(data["tasks"]):
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        _check_keys("spec.tasks[]", entry, TASK_KEYS)
        task_lib.get(entry["name"])  # raises ValueError listing the known tasks
        n = _integer(f"spec.tasks[{entry['name']}].num_samples", entry.get("num_samples", n_default), 1)
        tasks.append(
            TaskEntry(
                name=entry["name"],
                num_samples=n,
                seed=_integer(
                    f"spec.tasks[{entry['name']}].seed", entry.get("seed", data.get("data_seed", 0)), 0
                ),
                split=entry.get("split", data.get("split", "eval")),
                gen_length=entry.get("gen_length", "task"),
            )
        )
    samplers = []
    for entry in _as_list(data.get("samplers") or []):
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        _check_keys("spec.samplers[]", entry, SAMPLER_KEYS)
        params, grid = dict(entry.get("params") or {}), dict(entry.get("grid") or {})
        _check_params("sampler", sampler_registry, entry["name"], {**params, **grid})
        samplers.append(
            {
                "name": entry["name"],
                "family": entry.get("family"),
                "params": params,
                "grid": grid,
                "k": [_integer(f"spec.samplers[{entry['name']}].k", k, 1) for k in _as_list(entry["k"])]
                if entry.get("k") is not None
                else None,
            }
        )
    caches = []
    for entry in _as_list(data.get("caches") or ["none"]):
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        _check_keys("spec.caches[]", entry, CACHE_KEYS)
        params, grid = dict(entry.get("params") or {}), dict(entry.get("grid") or {})
        _check_params("cache", cache_registry, entry["name"], {**params, **grid})
        caches.append({"name": entry["name"], "params": params, "grid": grid})
    generation = dict(data.get("generation") or {})
    _check_keys("spec.generation", generation, set(_GEN_DEFAULTS) - {"trace"})
    batch_size = _integer("spec.batch_size", data.get("batch_size", 1), 1)
    exclude = [dict(rule) for rule in _as_list(data.get("exclude") or [])]
    for rule in exclude:
        _check_keys(
            "spec.exclude[]", rule, {"model", "task", "sampler", "family", "cache", "block_length", "reason"}
        )
    return SweepSpec(
        name=str(data.get("name", "sweep")),
        models=models,
        tasks=tasks,
        samplers=samplers,
        caches=caches,
        generation=generation,
        batch_size=batch_size,
        warmup=_integer("spec.warmup", data.get("warmup", 1), 0),
        reference=bool(data.get("reference", True)),
        exclude=exclude,
        output_dir=data.get("output_dir"),
        task_sets=dict(data.get("task_sets") or {}),
        speculative=speculative,
        verifiers=list(verifiers.values()),
        raw=data,
    )


def _grid(grid: dict) -> list[dict]:
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(_as_list(grid[k]) for k in keys))]


def _family(entry: dict) -> tuple[str, str | None]:
    varying = (["k"] if entry["k"] else []) + sorted(
        k for k, v in entry["grid"].items() if len(_as_list(v)) > 1
    )
    knob = varying[0] if len(varying) == 1 else None
    label = entry["family"] or (
        f"{entry['name']} {'top-k' if knob == 'k' else knob}" if knob else entry["name"]
    )
    return label, knob


def steps_for_k(gen_length: int, k: int) -> int:
    """Denoising steps that commit ``k`` tokens per step on a ``gen_length`` canvas (remainder spread)."""
    return math.ceil(gen_length / k)


def _excluded(rules: list[dict], combo: dict) -> str | None:
    for rule in rules:
        if all(combo.get(key) == value for key, value in rule.items() if key != "reason"):
            return rule.get("reason") or f"excluded by the spec rule {rule}"
    return None


def _generation(spec_gen: dict, gen_length: int) -> list[dict]:
    """Grid over the generation settings; ``block_length: null`` means one block of ``gen_length``."""
    axes = {k: _as_list(v) for k, v in spec_gen.items() if k != "gen_length"}
    axes.setdefault("block_length", [None])
    out = []
    for combo in _grid(axes):
        combo["gen_length"] = gen_length
        if combo.get("block_length") is None:
            combo["block_length"] = gen_length
        out.append(combo)
    return out


def _gen_length(spec: SweepSpec, task: TaskEntry) -> int:
    """The task's generation budget: its ``gen_length``, else the spec's, where ``task`` = the task's
    ``max_new_tokens`` (dLLM canvas length; speculative ``max_new_tokens``)."""
    from dllm.eval import tasks as task_lib

    length = task.gen_length if task.gen_length != "task" else spec.generation.get("gen_length", "task")
    if length in (None, "task"):
        return task_lib.get(task.name).max_new_tokens
    return _integer(f"spec.tasks[{task.name}].gen_length", length, 1)


def _add_run(runs: dict[str, RunConfig], run: RunConfig) -> None:
    """Deduplicate by id; a spec's own run that is also the added reference keeps its family label."""
    if run.run_id in runs:
        runs[run.run_id].reference |= run.reference
    else:
        runs[run.run_id] = run


def _compact(gen: dict) -> dict:
    """The GenerationConfig fields that define a run: lengths and steps, plus every other field that
    differs from its default (so adding a field to GenerationConfig does not change existing ids)."""
    always = ("gen_length", "block_length", "steps")
    return {k: v for k, v in gen.items() if k in always or (k != "trace" and v != _GEN_DEFAULTS.get(k))}


def expand(
    spec: SweepSpec, fingerprints: dict[str, str] | None = None
) -> tuple[list[RunConfig], list[Skipped]]:
    """The run configs of ``spec`` (deduplicated by id, in a stable order) and the skipped combinations."""
    fingerprints = fingerprints or {}
    runs: dict[str, RunConfig] = {}
    skipped: list[Skipped] = []
    for model, task in itertools.product(spec.models, spec.tasks):
        gen_length = _gen_length(spec, task)
        for gen in _generation(spec.generation, gen_length):
            entries = [(e, False) for e in spec.samplers]
            if spec.reference:  # last, so that a spec's own llada k=1 run keeps its family label
                entries.append(
                    (
                        {
                            "name": REFERENCE_SAMPLER,
                            "family": REFERENCE_FAMILY,
                            "params": {},
                            "grid": {},
                            "k": [1],
                        },
                        True,
                    )
                )
            for entry, is_reference in entries:
                family, knob = _family(entry)
                for params, k, cache in itertools.product(
                    _grid(entry["grid"]),
                    entry["k"] or [None],
                    spec.caches if not is_reference else [{"name": "none", "params": {}, "grid": {}}],
                ):
                    for cache_grid in _grid(cache["grid"]):
                        sampler_params = {**entry["params"], **params}
                        cache_params = {**cache["params"], **cache_grid}
                        combo = {
                            "model": model.label,
                            "task": task.name,
                            "sampler": entry["name"],
                            "family": family,
                            "sampler_params": sampler_params,
                            "k": k,
                            "cache": cache["name"],
                            "cache_params": cache_params,
                            "block_length": gen["block_length"],
                            "gen_length": gen_length,
                        }
                        reason = None if is_reference else _excluded(spec.exclude, combo)
                        fields = dict(gen)
                        if reason is None and k is not None:
                            if k < 1:
                                reason = f"k={k} is out of range; allowed [1, inf)"
                            elif k > gen["block_length"]:
                                reason = f"k={k} tokens per step exceeds block_length={gen['block_length']}"
                            else:
                                fields["steps"] = steps_for_k(gen_length, k)
                        if reason is None:
                            try:
                                config = GenerationConfig(**fields)
                                sampler_registry.get(entry["name"], **sampler_params)
                                cache_registry.get(cache["name"], **cache_params)
                            except (ValueError, TypeError) as exc:
                                reason = str(exc)
                        if reason is not None:
                            skipped.append(Skipped(combo=combo, reason=reason))
                            continue
                        run = RunConfig(
                            model=model.label,
                            task=task.name,
                            split=task.split,
                            num_samples=task.num_samples,
                            data_seed=task.seed,
                            sampler=entry["name"],
                            sampler_params=sampler_params,
                            family=family,
                            knob=knob,
                            k=k,
                            cache=cache["name"],
                            cache_params=cache_params,
                            generation=_compact(config.to_dict()),
                            reference=is_reference,
                            model_fingerprint=fingerprints.get(model.label, ""),
                        ).finalize()
                        _add_run(runs, run)
    _expand_speculative(spec, fingerprints, runs, skipped)
    return list(runs.values()), skipped


def _expand_speculative(
    spec: SweepSpec, fingerprints: dict[str, str], runs: dict[str, RunConfig], skipped: list[Skipped]
) -> None:
    """Speculative entries x tasks x (temperature, seed) of ``generation``, verifier-major, into ``runs``."""
    entries = list(spec.speculative)
    if spec.reference:  # last, so that a spec's own plain-AR entry keeps its family label
        entries += [
            {
                "verifier": v,
                "drafter": PLAIN_AR,
                "params": {},
                "length": None,
                "length_params": {},
                "drafter_model": None,
                "family": PLAIN_AR_FAMILY,
            }
            for v in spec.verifiers
        ]
    order = [v.label for v in spec.verifiers]
    entries.sort(key=lambda e: order.index(e["verifier"].label))  # one verifier in memory at a time
    for entry, task in itertools.product(entries, spec.tasks):
        verifier, gen_length = entry["verifier"].label, _gen_length(spec, task)
        for gen in _generation(spec.generation, gen_length):
            settings = {
                "max_new_tokens": gen_length,
                "temperature": gen.get("temperature", 0.0),
                "seed": gen.get("seed", 0),
            }
            combo = {
                "model": verifier,
                "task": task.name,
                "sampler": entry["drafter"],
                "family": entry["family"],
                "sampler_params": entry["params"],
                "length": entry["length"],
                "length_params": entry["length_params"],
                "cache": "none",
                "block_length": gen_length,
                "gen_length": gen_length,
            }
            reason = _excluded(spec.exclude, combo)
            try:
                SpeculativeConfig(**settings)
            except ValueError as exc:
                reason = reason or str(exc)
            if reason is not None:
                skipped.append(Skipped(combo=combo, reason=reason))
                continue
            prints = [fingerprints.get(verifier, "")]
            if entry["drafter_model"]:
                prints.append(fingerprints.get(f"drafter:{entry['drafter_model']}", ""))
            _add_run(
                runs,
                RunConfig(
                    model=verifier,
                    task=task.name,
                    split=task.split,
                    num_samples=task.num_samples,
                    data_seed=task.seed,
                    sampler=entry["drafter"],
                    sampler_params=entry["params"],
                    family=entry["family"],
                    knob=None,
                    k=None,
                    cache="none",
                    cache_params={},
                    generation=settings,
                    reference=entry["drafter"] == PLAIN_AR,
                    model_fingerprint="+".join(p for p in prints if p),
                    mode="speculative",
                    length=entry["length"],
                    length_params=entry["length_params"],
                ).finalize(),
            )
