"""Generation settings, validated at construction."""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import types
import typing
from dataclasses import asdict, dataclass

INT64 = (-(2**63), 2**63 - 1)  # every integer setting ends up in a torch tensor or generator


def infinite_ok(default: float):
    """A float field for which +inf is a meaningful setting (e.g. a threshold that never fires)."""
    return dataclasses.field(default=default, metadata={"infinite_ok": True})


def check_fields(obj, owner: str | None = None) -> None:
    """Check every init field of the dataclass ``obj`` against its annotation: the type (an ``int`` field
    takes no ``float`` or ``bool``, a ``float`` field no ``str``), finiteness (no NaN, no ±inf) and the
    int64 range. ``TypeError`` / ``ValueError`` name ``owner.field``, the value and what is allowed.
    Fields annotated with other types (models, tensors, ``object``) are left to their owner."""
    owner = owner or getattr(type(obj), "name", None) or type(obj).__name__
    hints = _type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if (
            f.init and f.name in hints and not (value is None and f.default is None)
        ):  # a None default is allowed
            _check_value(f"{owner}.{f.name}", value, hints[f.name], f.metadata.get("infinite_ok", False))


def checked(cls):
    """Class decorator: run :func:`check_fields` when the dataclass ``cls`` is constructed, before its own
    ``__post_init__`` (so range checks and set-up never see a wrong type). The registries apply it to
    every plugin they register."""
    post_init = getattr(cls, "__post_init__", None)
    if getattr(post_init or cls.__init__, "_dllm_checked", False):
        return cls  # inherited from a checked class: it already checks type(self)'s fields
    if post_init is None:  # the dataclass __init__ calls no __post_init__: check after it
        init = cls.__init__

        @functools.wraps(init)
        def __init__(self, *args, **kwargs):
            init(self, *args, **kwargs)
            check_fields(self)

        __init__._dllm_checked = True
        cls.__init__ = __init__
        return cls

    @functools.wraps(post_init)
    def __post_init__(self, *args, **kwargs):
        check_fields(self)
        post_init(self, *args, **kwargs)

    __post_init__._dllm_checked = True
    cls.__post_init__ = __post_init__
    return cls


@functools.lru_cache(maxsize=None)
def _type_hints(cls) -> dict:
    try:
        return typing.get_type_hints(cls, vars(sys.modules[cls.__module__]))
    except Exception:  # an annotation that cannot be resolved is not checked
        return {}


def _describe(hint) -> str:
    if hint is type(None):
        return "None"
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        dict: "a mapping",
        list: "a list",
        tuple: "a tuple",
    }.get(origin, getattr(origin, "__name__", str(origin)))


def _matches(value, hint) -> bool:
    """Whether ``value`` has the annotated type (unknown annotations match anything)."""
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return (
            isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value)
            if args
            else isinstance(value, (list, tuple))
        )
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint in (list, tuple):
        return isinstance(value, (list, tuple))
    return True


def _check_value(where: str, value, hint, infinite: bool = False) -> None:
    if not _matches(value, hint):
        raise TypeError(f"{where}={value!r} has the wrong type; expected {_describe(hint)}")
    for number in value if isinstance(value, (list, tuple)) else (value,):
        _check_number(where, number, infinite)


def _check_number(where: str, value, infinite: bool = False) -> None:
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{where}={value!r} is not a finite number")
    if isinstance(value, float) and not math.isfinite(value) and not (infinite and value > 0):
        raise ValueError(f"{where}={value!r} is not a finite number")
    if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
        raise ValueError(f"{where}={value} is out of range; allowed [-2**63, 2**63 - 1]")


def check_range(
    owner: str, name: str, value, low=None, high=None, *, low_open=False, high_open=False, infinite_ok=False
):
    """Raise ``ValueError`` naming ``owner.name``, the value and the allowed range when out of range
    (``TypeError`` when it is not a number, ``ValueError`` when it is NaN or infinite, unless
    ``infinite_ok`` allows +inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}.{name}={value!r} has the wrong type; expected a number")
    _check_number(f"{owner}.{name}", value, infinite_ok)
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        interval = (
            f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
        )
        raise ValueError(f"{owner}.{name}={value!r} is out of range; allowed {interval}")


@dataclass
class GenerationConfig:
    """How much to generate and how to draw tokens; samplers decide how many to commit per step.

    gen_length: masked positions appended after the prompt (the canvas).
    block_length: semi-autoregressive block size; ``gen_length`` must be a multiple of it.
    steps: denoising steps for schedule-based samplers (LLaDA); None = ``gen_length``
        (one token per step). Must be a multiple of the number of blocks.
    temperature: 0 = greedy; >0 = Gumbel-max sampling from softmax(logits / T) in float64.
    seed: seeds the sampling noise; the same seed gives the same output, whatever the batch.
    cfg_scale: unsupervised classifier-free guidance weight (0 = off).
    logits_eos_inf: EOS can never be proposed.
    confidence_eos_eot_inf: EOS/EoT are proposed normally but committed last (after every other
        masked position of the block).
    stop_at_eos: once every position before a committed EOS is decoded, fill the rest of the
        row with EOS and stop it.
    max_length: limit on prompt + generation (None = the model's context length).
    trace: record which positions were committed at which step, with what confidence.
    sub_block_length: block-diffusion models (Fast-dLLM v2) only: decode each block in sub-blocks
        of this size, left to right (its ``small_block_size``); must divide ``block_length``, which
        must be the model's ``bd_size``. None = one sub-block per block.
    """

    gen_length: int = 128
    block_length: int = 32
    steps: int | None = None
    temperature: float = 0.0
    seed: int = 0
    cfg_scale: float = 0.0
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    stop_at_eos: bool = False
    max_length: int | None = None
    trace: bool = False
    sub_block_length: int | None = None

    def __post_init__(self):
        owner = "GenerationConfig"
        check_fields(self, owner)
        check_range(owner, "gen_length", self.gen_length, 1)
        check_range(owner, "block_length", self.block_length, 1, self.gen_length)
        if self.gen_length % self.block_length:
            raise ValueError(
                f"GenerationConfig.gen_length={self.gen_length} is not a multiple of"
                f" block_length={self.block_length}"
            )
        self._derived_steps = self.steps is None  # re-derived when gen_length / block_length change
        if self.steps is None:
            self.steps = self.gen_length
        check_range(owner, "steps", self.steps, 1)
        if self.steps > self.gen_length:
            raise ValueError(
                f"GenerationConfig.steps={self.steps} is more than gen_length={self.gen_length}: every step"
                f" commits at least one token, so at most {self.gen_length} steps can run"
            )
        if self.steps % self.num_blocks:
            raise ValueError(
                f"GenerationConfig.steps={self.steps} is not a multiple of the number of blocks"
                f" ({self.gen_length} / {self.block_length} = {self.num_blocks})"
            )
        check_range(owner, "temperature", self.temperature, 0.0)
        check_range(owner, "cfg_scale", self.cfg_scale, 0.0)
        check_range(owner, "seed", self.seed, 0, INT64[1])
        if self.max_length is not None:
            check_range(owner, "max_length", self.max_length, 1)
        if self.sub_block_length is not None:
            check_range(owner, "sub_block_length", self.sub_block_length, 1, self.block_length)
            if self.block_length % self.sub_block_length:
                raise ValueError(
                    f"GenerationConfig.sub_block_length={self.sub_block_length} does not divide"
                    f" block_length={self.block_length}: a block must split into whole sub-blocks"
                )

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block_length

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_generation(config: GenerationConfig | None = None, model=None, **settings) -> GenerationConfig:
    """The one settings resolution of every entry point (``generate``, the ``Batcher``, the CLI, the
    demo, the evaluation): ``settings`` (``GenerationConfig`` fields) on top of ``config``, with what
    depends on another setting derived again. ``steps`` not given follows a new ``gen_length`` (one
    step per token), as does a config's ``steps`` left to its default; a block-diffusion ``model``
    given no ``block_length`` at all (neither in ``settings`` nor through ``config``) decodes blocks
    of its ``bd_size``."""
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(GenerationConfig)})
    if unknown:
        raise TypeError(
            f"unknown generation setting(s) {', '.join(map(repr, unknown))}; the settings are"
            f" {', '.join(f.name for f in dataclasses.fields(GenerationConfig))}"
        )
    if config is not None and not isinstance(config, GenerationConfig):
        raise TypeError(f"config={config!r} must be a GenerationConfig (or None)")
    values = {} if config is None else {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if "steps" not in settings and (
        "gen_length" in settings or (config is not None and config._derived_steps)
    ):
        values["steps"] = None
    bd = getattr(getattr(model, "config", None), "block_size", None)
    if bd is not None and config is None and "block_length" not in settings:
        values["block_length"] = bd
    values.update(settings)
    return GenerationConfig(**values)
