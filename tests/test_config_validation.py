"""Every setting is checked where it is constructed: wrong types, NaN, ±inf and huge integers given to
any registered plugin's config, to ``GenerationConfig`` or to ``SpeculativeConfig`` raise a
``ValueError`` / ``TypeError`` naming the field — never another exception, never a silent accept."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dllm
from dllm.config import GenerationConfig, _matches, _type_hints, check_fields
from dllm.drafters import SpeculativeConfig
from dllm.drafters import length as lengths

REGISTRIES = {"sampler": dllm.samplers, "cache": dllm.caches, "drafter": dllm.drafters, "length": lengths}
CHECKED = (int, float, bool, str)


def _checkable(hint) -> bool:
    """Annotations check_fields understands (numbers, flags, strings and their optionals / lists)."""
    import types
    import typing

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType, list, tuple):
        return all(_checkable(a) for a in typing.get_args(hint) if a is not type(None) and a is not Ellipsis)
    return hint in CHECKED or origin is typing.Literal


def _fields(cls) -> list[tuple[str, object]]:
    hints = _type_hints(cls)
    return [
        (f.name, hints[f.name])
        for f in dataclasses.fields(cls)
        if f.init and not f.name.startswith("_") and f.name in hints and _checkable(hints[f.name])
    ]


def _targets():
    out = [
        ("GenerationConfig", GenerationConfig, lambda **kw: GenerationConfig(**kw)),
        ("SpeculativeConfig", SpeculativeConfig, lambda **kw: SpeculativeConfig(**kw)),
    ]
    for kind, registry in REGISTRIES.items():
        for name in registry.names():
            cls = registry._registry.cls(name)
            out.append((f"{kind} {name}", cls, lambda _n=name, _r=registry, **kw: _r.get(_n, **kw)))
    return [(label, cls, make, field, hint) for label, cls, make in out for field, hint in _fields(cls)]


TARGETS = _targets()

BAD = st.one_of(
    st.text(max_size=6),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.integers(min_value=2**63, max_value=2**80),
    st.integers(min_value=-(2**80), max_value=-(2**63) - 1),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
    st.booleans(),
    st.lists(st.integers(-3, 3), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.none(),
    st.binary(max_size=3),
)


def test_every_plugin_has_checked_fields():
    labels = {label.split(" ")[0] for label, *_ in TARGETS}
    assert {"GenerationConfig", "SpeculativeConfig", "sampler", "cache", "drafter", "length"} <= labels
    assert len(TARGETS) > 40


@pytest.mark.parametrize("label, cls, make, field, hint", TARGETS, ids=[f"{t[0]}.{t[3]}" for t in TARGETS])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=BAD)
def test_bad_values_raise_naming_the_field(label, cls, make, field, hint, value):
    try:
        obj = make(**{field: value})
    except FileNotFoundError as exc:  # a model / filter name that names nothing on disk
        assert isinstance(value, str) and "str" in str(hint), f"{label}: {exc}"
        return
    except (ValueError, TypeError) as exc:
        # the field itself, or (a relation between settings, e.g. max_length >= initial_length) another field
        owner_fields = [f.name for f in dataclasses.fields(cls)]
        assert field in str(exc) or any(f".{other}=" in str(exc) for other in owner_fields), f"{label}: {exc}"
        return
    # accepted: only a value of the annotated type, finite (or the field's documented +inf), in int64
    stored = getattr(obj, field)
    assert _matches(value, hint) or (value is None and stored is not None), (label, field, value)
    for number in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(number, float):
            is_inf_ok = (
                dataclasses.fields(cls)[[f.name for f in dataclasses.fields(cls)].index(field)].metadata.get(
                    "infinite_ok"
                )
                and number == math.inf
            )
            assert math.isfinite(number) or is_inf_ok, (label, field, value)
        if isinstance(number, int):
            assert -(2**63) <= number < 2**63, (label, field, value)


@pytest.mark.parametrize(
    "build, message",
    [
        (
            lambda: GenerationConfig(gen_length=16.0, block_length=16),
            "GenerationConfig.gen_length=16.0 has the wrong type",
        ),
        (
            lambda: GenerationConfig(temperature=float("nan")),
            "GenerationConfig.temperature=nan is not a finite number",
        ),
        (
            lambda: GenerationConfig(temperature=float("inf")),
            "GenerationConfig.temperature=inf is not a finite number",
        ),
        (
            lambda: GenerationConfig(cfg_scale=float("nan")),
            "GenerationConfig.cfg_scale=nan is not a finite number",
        ),
        (lambda: GenerationConfig(seed=2**64), "GenerationConfig.seed=18446744073709551616 is out of range"),
        (lambda: GenerationConfig(seed=-1), "GenerationConfig.seed=-1 is out of range"),
        (lambda: GenerationConfig(stop_at_eos="no"), "GenerationConfig.stop_at_eos='no' has the wrong type"),
        (
            lambda: dllm.samplers.get("fast-dllm", threshold="abc"),
            "fast-dllm.threshold='abc' has the wrong type",
        ),
        (
            lambda: dllm.samplers.get("fast-dllm", threshold=float("nan")),
            "fast-dllm.threshold=nan is not a finite",
        ),
        (lambda: dllm.samplers.get("prophet", early_threshold=float("-inf")), "prophet.early_threshold=-inf"),
        (lambda: SpeculativeConfig(top_p=float("nan")), "SpeculativeConfig.top_p=nan is not a finite number"),
        (lambda: SpeculativeConfig(seed=[0, "1"]), "SpeculativeConfig.seed=[0, '1'] has the wrong type"),
    ],
)
def test_examples_from_the_report(build, message):
    with pytest.raises(
        (ValueError, TypeError),
        match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
    ):
        build()


def test_documented_infinity_is_accepted():
    prophet = dllm.samplers.get("prophet", early_threshold=float("inf"))
    assert prophet.early_threshold == float("inf")
    check_fields(prophet)
