"""Name -> plugin class registries for samplers and caches."""

from __future__ import annotations

import dataclasses
import inspect


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str):
        def decorator(cls):
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            cls.name = name
            if dataclasses.is_dataclass(cls):
                from dllm.config import checked

                checked(cls)  # every field type-checked and finite once constructed
            self._classes[name] = cls
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._classes)

    def cls(self, name: str) -> type:
        if name not in self._classes:
            raise ValueError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._classes[name]

    def get(self, name_or_obj, **params):
        """An instance from a registered name, a plugin class, or an instance (returned as is)."""
        if isinstance(name_or_obj, str):
            cls = self.cls(name_or_obj)
        elif inspect.isclass(name_or_obj):
            cls = name_or_obj
        else:
            if params:
                raise ValueError(f"parameters {sorted(params)} given with an already-built {self.kind}")
            return name_or_obj
        fields = {f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else set()
        unknown = sorted(set(params) - fields)
        if unknown:
            raise ValueError(
                f"{self.kind} {getattr(cls, 'name', cls.__name__)!r} has no parameter(s) {unknown};"
                f" its parameters: {sorted(fields) or 'none'}"
            )
        return cls(**params)

    def describe(self) -> list[dict]:
        """Name, one-line summary and parameters (with defaults) of every plugin."""
        rows = []
        for name in self.names():
            cls = self._classes[name]
            doc = (inspect.getdoc(cls) or "").strip().splitlines()
            params = {}
            if dataclasses.is_dataclass(cls):
                for f in dataclasses.fields(cls):
                    if f.init:
                        default = (
                            f.default
                            if f.default is not dataclasses.MISSING
                            else (
                                f.default_factory() if f.default_factory is not dataclasses.MISSING else None
                            )
                        )
                        params[f.name] = default
            rows.append({"name": name, "summary": doc[0] if doc else "", "params": params})
        return rows
