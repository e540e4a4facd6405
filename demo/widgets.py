"""Widget specs generated from the plugins' config dataclasses (never a hand-kept list).

Every registered sampler, cache, drafter and draft-length controller is a dataclass whose fields
are its parameters; ``specs(registry, name)`` turns those fields into ``ParamSpec``s (name, kind,
default, choices) and ``coerce`` turns what a widget returns back into the parameter value.
Choices come from the plugin itself: a field whose default is a registered sampler / cache /
shipped model name gets that list; a ``str`` field whose validator names its allowed values
("... is not one of ('a', 'b')") gets those. The app builds one Gradio widget per spec.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass

KINDS = ("bool", "int", "float", "str", "json", "choice", "optional-bool")
_ONE_OF = re.compile(r"not one of (\(.*?\)|\[.*?\])")
_EXPECTED = re.compile(r"expected ((?:'[^']*'(?:, | or )?)+)")
_PROBE = "\x00probe"


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of a plugin, as a widget shows it."""

    owner: str  # plugin name, e.g. "fast-dllm"
    name: str  # field name
    kind: str  # one of KINDS
    default: typing.Any
    optional: bool = False  # None is allowed (an empty widget means None)
    choices: tuple = ()  # for "choice"
    custom: bool = False  # a "choice" that also accepts free text (model folders, hub ids)
    container: str = ""  # "tuple" / "dict" / "list" for "json"

    @property
    def label(self) -> str:
        return self.name

    def widget_value(self):
        """The default as the widget holds it (optional numbers are text boxes: empty = None)."""
        if self.kind in ("int", "float") and self.optional:
            return "" if self.default is None else str(self.default)
        if self.kind == "json":
            return (
                ""
                if self.default is None
                else json.dumps(list(self.default) if isinstance(self.default, tuple) else self.default)
            )
        if self.kind == "optional-bool":
            return "None" if self.default is None else str(bool(self.default))
        if self.kind == "str":
            return "" if self.default is None else str(self.default)
        return self.default


def _strip_optional(tp):
    """(inner type, optional?) for ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional = len(args) < len(typing.get_args(tp))
        return (args[0] if len(args) == 1 else object), optional
    return tp, False


def _default(field: dataclasses.Field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _probe_choices(cls, name: str) -> tuple:
    """The allowed values a plugin's validator names for a string field, if it names them."""
    try:
        cls(**{name: _PROBE})
    except Exception as exc:  # noqa: BLE001 — any validator message may carry the list
        match = _ONE_OF.search(str(exc))
        if match:
            try:
                values = ast.literal_eval(match.group(1))
            except (ValueError, SyntaxError):
                return ()
            if all(isinstance(v, str) for v in values):
                return tuple(values)
        match = _EXPECTED.search(str(exc))
        if match:
            return tuple(re.findall(r"'([^']*)'", match.group(1)))
    return ()


def _name_lists() -> list[tuple[str, tuple, bool]]:
    """Registries whose names a parameter may hold: (what, names, accepts free text)."""
    from dllm import caches, samplers

    from .models import shipped

    return [
        ("sampler", tuple(samplers.names()), False),
        ("cache", tuple(caches.names()), False),
        ("diffusion model", tuple(shipped("diffusion")), True),
        ("causal model", tuple(shipped("causal")), True),
    ]


def spec_for_field(cls, field: dataclasses.Field, hints: dict, owner: str) -> ParamSpec:
    tp, optional = _strip_optional(hints.get(field.name, object))
    default = _default(field)
    if default is None:
        optional = True
    common = dict(owner=owner, name=field.name, default=default, optional=optional)
    if isinstance(default, str) and tp in (str, object):
        for _, names, custom in _name_lists():
            if default in names:
                return ParamSpec(kind="choice", choices=names, custom=custom, **common)
    if tp is bool:
        return ParamSpec(
            kind="optional-bool" if optional else "bool",
            choices=("None", "True", "False") if optional else (),
            **common,
        )
    if tp is int:
        return ParamSpec(kind="int", **common)
    if tp is float:
        return ParamSpec(kind="float", **common)
    if tp is str:
        choices = () if optional else _probe_choices(cls, field.name)
        if choices:
            return ParamSpec(kind="choice", choices=choices, **common)
        return ParamSpec(kind="str", **common)
    origin = typing.get_origin(tp) or tp
    if origin in (dict, list, tuple):
        return ParamSpec(kind="json", container=origin.__name__, **common)
    return ParamSpec(kind="json" if not isinstance(default, (str, int, float, bool)) else "str", **common)


def specs_for_class(cls, owner: str | None = None) -> list[ParamSpec]:
    """Specs for every init field of a config dataclass (in declaration order)."""
    owner = owner or getattr(cls, "name", cls.__name__)
    hints = typing.get_type_hints(cls)
    return [
        spec_for_field(cls, f, hints, owner)
        for f in dataclasses.fields(cls)
        if f.init and not f.name.startswith("_")
    ]


def specs(registry, name: str) -> list[ParamSpec]:
    """Specs for the plugin registered as ``name`` in ``registry`` (a module like ``dllm.samplers``)."""
    reg = getattr(registry, "_registry", registry)
    return specs_for_class(reg.cls(name), name)


def all_specs(registry) -> dict[str, list[ParamSpec]]:
    """Plugin name -> its specs, for every registered plugin."""
    return {name: specs(registry, name) for name in registry.names()}


# GenerationConfig fields the demo shows per column (trace is the demo's own business; max_length
# is the model's context).
GENERATION_HIDDEN = ("trace", "max_length")


def generation_specs() -> list[ParamSpec]:
    from dllm.config import GenerationConfig

    return [
        s for s in specs_for_class(GenerationConfig, "GenerationConfig") if s.name not in GENERATION_HIDDEN
    ]


def coerce(spec: ParamSpec, raw):
    """A widget's value -> the parameter value; ValueError naming ``owner.name`` when it is not one."""
    where = f"{spec.owner}.{spec.name}"
    if raw is None or (isinstance(raw, str) and raw.strip() == "" and spec.kind != "bool"):
        if spec.optional:
            return None
        if spec.kind == "str":
            return ""
        raise ValueError(f"{where} needs a value")
    try:
        if spec.kind == "bool":
            return bool(raw)
        if spec.kind == "optional-bool":
            text = str(raw).strip().lower()
            if text in ("none", ""):
                return None
            if text in ("true", "false"):
                return text == "true"
            raise ValueError
        if spec.kind in ("int", "float") and isinstance(raw, bool):
            raise ValueError
        if spec.kind == "int":  # text is parsed as an integer; a number box's 64.0 is 64, 2.5 is refused
            if isinstance(raw, str):
                return int(raw.strip())
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            if isinstance(raw, int):
                return raw
            raise ValueError
        if spec.kind == "float":
            return float(raw)
        if spec.kind == "json":
            value = json.loads(raw) if isinstance(raw, str) else raw
            if spec.container == "tuple" and isinstance(value, list):
                value = tuple(value)
            if spec.container and type(value).__name__ != spec.container:
                raise ValueError
            return value
        if spec.kind == "choice":  # whether it is one of them is the plugin's (or the registry's) check
            return str(raw).strip()
        return str(raw)
    except (TypeError, ValueError, json.JSONDecodeError):
        expected = {
            "int": "an integer",
            "float": "a number",
            "json": f"JSON ({spec.container or 'a value'})",
            "optional-bool": "None, True or False",
        }.get(spec.kind, spec.kind)
        raise ValueError(f"{where}={raw!r} is not {expected}") from None


def collect(spec_list: list[ParamSpec], raw_values, only_changed: bool = True) -> dict:
    """Parameters from widget values (one per spec); by default only those that differ from the default."""
    out = {}
    for spec, raw in zip(spec_list, raw_values):
        value = coerce(spec, raw)
        if not only_changed or value != spec.default:
            out[spec.name] = value
    return out
