"""The dependency direction, read from the source with ``ast`` (nothing is imported).

- ``dllm/models`` (the model, its attention and its per-layer hook interface) imports no cache
  policy: nothing from ``dllm.caches``.
- The core (``dllm/*.py``, ``dllm/models``, ``dllm/eval``) imports no plugin module
  (``dllm.samplers.<plugin>``, ``dllm.caches.<plugin>``, their ``base``); it reaches plugins only
  through the registries (``from dllm import samplers``; ``dllm.samplers.get(...)``).
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PACKAGES = ("dllm.samplers", "dllm.caches")
REGISTRY_NAMES = {"get", "names", "describe", "register", "cls"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import in the file (``name`` None for ``import module``);
    relative imports are resolved against the file's package, ``from pkg import sub`` is listed
    both as ``pkg``/``sub`` and as the module ``pkg.sub``."""
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                found.append((node.lineno, module, alias.name))
                found.append((node.lineno, f"{module}.{alias.name}", None))
    return found


def _files(*folders: str, top_level: bool = False) -> list[Path]:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    return sorted(files + (list((ROOT / "dllm").glob("*.py")) if top_level else []))


def _is_plugin_module(module: str) -> bool:
    return any(module.startswith(package + ".") for package in PLUGIN_PACKAGES)


def core_violations(path: Path) -> list[str]:
    bad = []
    for line, module, name in imports(path):
        if name is None and _is_plugin_module(module) and module.rpartition(".")[2] not in REGISTRY_NAMES:
            bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
        elif module in PLUGIN_PACKAGES and name is not None and name not in REGISTRY_NAMES:
            bad.append(
                f"{path.relative_to(ROOT)}:{line} imports {name} from {module} (not a registry function)"
            )
    return bad


def test_models_import_no_cache_policy():
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _files("dllm/models")
        for line, module, _ in imports(path)
        if module == "dllm.caches" or module.startswith("dllm.caches.")
    ]
    assert not bad, "dllm/models must not import dllm.caches:\n" + "\n".join(bad)


def test_core_imports_plugins_only_through_the_registries():
    files = _files("dllm/models", "dllm/eval", top_level=True)
    assert ROOT / "dllm" / "generate.py" in files and ROOT / "dllm" / "models" / "transformer.py" in files
    bad = [v for path in files for v in core_violations(path)]
    assert not bad, "core modules import plugin modules:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from dllm.samplers.base import best_candidate", True),
        ("import dllm.caches.elastic", True),
        ("from dllm.samplers import Sampler", True),
        ("from dllm.caches import dual", True),
        ("from dllm import samplers as sampler_registry", False),
        ("import dllm.samplers", False),
        ("from dllm.samplers import get", False),
        ("def f():\n    from dllm.caches.attention import attend", True),
    ],
)
def test_the_check_sees_each_kind_of_import(tmp_path, monkeypatch, source, expected):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "dllm").mkdir()
    path = tmp_path / "dllm" / "generate.py"
    path.write_text(source + "\n")
    assert bool(core_violations(path)) is expected


def test_relative_imports_are_resolved(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "dllm" / "models").mkdir(parents=True)
    path = tmp_path / "dllm" / "models" / "transformer.py"
    path.write_text("from .attention import attend\nfrom ..caches.base import StepPlan\n")
    modules = {module for _, module, _ in imports(path)}
    assert {"dllm.models.attention", "dllm.caches.base"} <= modules


def _looked_up(path: Path, owner: str) -> set[str]:
    """Attributes the file reads on ``owner`` / ``self.owner``, and names it asks
    ``getattr(plugin, name)``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            value = node.value
            if (isinstance(value, ast.Name) and value.id == owner) or (
                isinstance(value, ast.Attribute)
                and value.attr == owner
                and isinstance(value.value, ast.Name)
                and value.value.id == "self"
            ):
                found.add(node.attr)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in ("plugin", owner)
            and isinstance(node.args[1], ast.Constant)
        ):
            found.add(node.args[1].value)
    return found


@pytest.mark.parametrize(
    "owner,base", [("sampler", "dllm.samplers.base:Sampler"), ("cache", "dllm.caches.base:Cache")]
)
def test_every_hook_the_core_looks_up_is_declared_with_a_docstring(owner, base):
    import importlib

    module, name = base.split(":")
    cls = getattr(importlib.import_module(module), name)
    files = _files("dllm/eval", top_level=True)
    used = set().union(*(_looked_up(path, owner) for path in files)) - {"name"}
    assert {"select" if owner == "sampler" else "plan", "unsupported_reason"} <= used
    for hook in sorted(used):
        member = getattr(cls, hook, None)
        assert member is not None, (
            f"{owner} hook {hook!r} is looked up by the core but not declared on {base}"
        )
        if callable(member):
            assert (member.__doc__ or "").strip(), f"{base}.{hook} has no docstring"
