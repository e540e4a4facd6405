"""The dependency direction, read from the source with ``ast`` (nothing is imported).

Levels, highest first (ARCHITECTURE.md, "Conventions"); a module imports from its own package
and from packages of a lower level, never from one above it nor from another package of its own
level. Faces may import anything.

    70  face          dllm.cli (+ dllm.__main__), dllm.demo, dllm.serving (the Batcher the demo
                      and the server hand arriving requests to), dllm.server (``dllm serve``)
    60  tools         dllm.eval (the harness), dllm.zoo (the training recipes); neither imports
                      the other
    50  public API    dllm (``dllm/__init__.py``: load, generate, speculate, the registries)
    40  drafters      dllm.drafters: the drafter plugins (ar, deer, denoise, diffuspec, onepass,
                      ngram) and their registry
    30  step kinds    dllm.generate (``Denoising``), dllm.drafters.loop (``Speculative``, with the
                      round's parts: drafters/base, runner, verify, length)
    25  engine        dllm.engine: the running batch; it imports no step kind, plugin or face
    20  plugins       dllm.samplers, dllm.caches (each a registry and its plugins)
    15  models        dllm.models (the model, its attention, its per-layer hook interface)
    10  core state    dllm.config, state, canvas, logits, selection, metrics, prompts,
                      registry, confidence_filter
     0  leaves        dllm.shipped (the shipped-data lookup), dllm.tasks (the task generators):
                      they import nothing of dllm

This spells out ARCHITECTURE.md's order (face -> eval / drafters -> engine and step kinds ->
models, samplers, caches -> core state): the public API sits between the tools that use it and
the drafters it exports, the engine under the step kinds that run on it, the models under the
plugins (a cache implements the model's ``LayerHook``).

Rules on top of the levels:

- The core (``dllm/**``: the top-level modules, models, eval, zoo, tasks) imports no plugin
  module (a module of ``dllm.samplers`` / ``dllm.caches`` / ``dllm.drafters`` but the registries,
  ``drafters/loop.py`` and ``drafters/length.py``); it reaches plugins through the registries:
  their functions (``get``, ``names``, ...), the interface a plugin implements (``Sampler``,
  ``Cache``, ``Drafter``: the Learn2PD trainer's replay is a sampler) and the names the registry
  re-exports from the step kind (``speculate``, ``SpeculativeConfig``).
- Plugins import only the core and the registries: a sampler or a cache imports no other plugin
  package; a drafter uses samplers and caches through their registries only (the ``dllm``
  drafter); inside a package a plugin imports the package's shared modules and, where it says so,
  the sibling it builds on (``DOCUMENTED_SIBLINGS``).
- ``dllm/models`` imports no cache policy.
- Below the public API nothing reads the top package's namespace (``dllm/__init__``): no
  ``import dllm``, no ``from dllm import X``, no ``import dllm.generate as ...`` (there
  ``dllm.generate`` is the function); import the module itself
  (``import dllm.samplers as sampler_registry``, ``from dllm.samplers import get``).
- Lazy imports (inside a function) are dependencies like the others and follow the same rules;
  the only upward edges allowed are registry lookups, which name a plugin at run time
  (``drafters/loop.py``'s ``from . import get``: the step kind looks its drafter up by name).

Import graph by package (generated from the imports: ``python tests/test_layering.py``; ``*``:
only inside functions):

    dllm.cli            -> dllm*, dllm.caches*, dllm.demo*, dllm.drafters*, dllm.drafters.loop*,
                           dllm.eval*, dllm.models*, dllm.samplers*, dllm.server*, dllm.shipped*,
                           dllm core*
    dllm.demo           -> dllm, dllm.caches*, dllm.drafters*, dllm.drafters.loop, dllm.eval*,
                           dllm.models*, dllm.samplers*, dllm.serving, dllm.zoo*, dllm core
    dllm.serving        -> dllm.caches, dllm.drafters.loop*, dllm.engine, dllm.generate*, dllm.models*,
                           dllm.samplers, dllm core
    dllm.server         -> dllm*, dllm.caches*, dllm.cli*, dllm.drafters.loop*, dllm.engine*,
                           dllm.models*, dllm.samplers*, dllm.serving*, dllm core
    dllm.eval           -> dllm, dllm.caches, dllm.drafters, dllm.drafters.loop, dllm.models,
                           dllm.samplers, dllm.shipped, dllm.tasks, dllm core
    dllm.zoo            -> dllm, dllm.generate*, dllm.models, dllm.samplers, dllm.shipped, dllm.tasks,
                           dllm core
    dllm                -> dllm.caches, dllm.drafters*, dllm.generate, dllm.models, dllm.samplers,
                           dllm core
    dllm.drafters       -> dllm.caches*, dllm.drafters.loop, dllm.generate*, dllm.models*,
                           dllm.samplers*, dllm.tasks*, dllm core
    dllm.drafters.loop  -> dllm.drafters*, dllm.engine, dllm.models*, dllm core
    dllm.generate       -> dllm.caches, dllm.engine, dllm.models, dllm.samplers, dllm core
    dllm.engine         ->
    dllm.samplers       -> dllm.shipped, dllm core
    dllm.caches         -> dllm.models, dllm core
    dllm.models         -> dllm.shipped*
    dllm core           ->
    dllm.shipped        ->
    dllm.tasks          ->
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pyproject.toml's package-dir: these top-level folders install as subpackages of dllm
PACKAGE_DIRS = {
    "samplers": "dllm.samplers",
    "caches": "dllm.caches",
    "drafters": "dllm.drafters",
    "demo": "dllm.demo",
}
SOURCE_DIRS = ("dllm", *PACKAGE_DIRS)

# (rank, package, its modules): a module belongs to the package of its longest matching name
LEVELS = [
    (70, "dllm.cli", ("dllm.cli", "dllm.__main__")),
    (70, "dllm.demo", ("dllm.demo",)),
    (70, "dllm.serving", ("dllm.serving",)),
    (70, "dllm.server", ("dllm.server",)),
    (60, "dllm.eval", ("dllm.eval",)),
    (60, "dllm.zoo", ("dllm.zoo",)),
    (50, "dllm", ()),  # dllm/__init__.py only (see package_of)
    (40, "dllm.drafters", ("dllm.drafters",)),
    (
        30,
        "dllm.drafters.loop",
        (
            "dllm.drafters.loop",
            "dllm.drafters.base",
            "dllm.drafters.runner",
            "dllm.drafters.verify",
            "dllm.drafters.length",
        ),
    ),
    (30, "dllm.generate", ("dllm.generate",)),
    (25, "dllm.engine", ("dllm.engine",)),
    (20, "dllm.samplers", ("dllm.samplers",)),
    (20, "dllm.caches", ("dllm.caches",)),
    (15, "dllm.models", ("dllm.models",)),
    (
        10,
        "dllm core",
        (
            "dllm.config",
            "dllm.state",
            "dllm.canvas",
            "dllm.logits",
            "dllm.selection",
            "dllm.metrics",
            "dllm.prompts",
            "dllm.registry",
            "dllm.confidence_filter",
        ),
    ),
    (0, "dllm.shipped", ("dllm.shipped",)),
    (0, "dllm.tasks", ("dllm.tasks",)),
]
RANK = {package: rank for rank, package, _ in LEVELS}
FACES = {package for rank, package, _ in LEVELS if rank == 70}
API_RANK = RANK["dllm"]
LEAVES = ("dllm.shipped", "dllm.tasks")
STEP_KINDS = ("dllm.generate", "dllm.drafters.loop")

PLUGIN_PACKAGES = ("dllm.samplers", "dllm.caches", "dllm.drafters")
REGISTRY_MODULES = {*PLUGIN_PACKAGES, "dllm.drafters.length"}  # drafters/length.py: the length registry
REGISTRY_NAMES = {"get", "names", "describe", "register", "cls"}
INTERFACES = {"dllm.samplers": {"Sampler"}, "dllm.caches": {"Cache"}, "dllm.drafters": {"Drafter"}}
NOT_PLUGIN_MODULES = {"dllm.drafters.loop", "dllm.drafters.length"}  # the step kind and a registry
# what a plugin module may import from its own package besides the registry: the shared modules
SHARED = {
    "dllm.samplers": {"dllm.samplers.base"},
    "dllm.caches": {"dllm.caches.base"},
    "dllm.drafters": {
        "dllm.drafters.base",
        "dllm.drafters.runner",
        "dllm.drafters.verify",
        "dllm.drafters.length",
    },
}
DOCUMENTED_SIBLINGS = {
    ("dllm.samplers.learn2pd", "dllm.samplers.eotp"),  # Learn2PD's end-of-text rule is EoTP's
    ("dllm.drafters.deer", "dllm.drafters.onepass"),  # DEER is the one-pass drafter with its model
    ("dllm.drafters.diffuspec", "dllm.drafters.ngram"),  # ngram.py is DiffuSpec's path-score proxy
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] in PACKAGE_DIRS:
        parts = PACKAGE_DIRS[parts[0]].split(".") + parts[1:]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_name(path: Path) -> str:
    """The package a relative import in ``path`` starts from."""
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _files(*folders: str, top_level: bool = False) -> list[Path]:
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    return sorted(files + (list((ROOT / "dllm").glob("*.py")) if top_level else []))


def _all_files() -> list[Path]:
    return _files(*(folder for folder in SOURCE_DIRS if (ROOT / folder).is_dir()))


def imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name)`` for every import in the file (``name`` None for ``import module``);
    relative imports are resolved against the file's package, ``from pkg import sub`` is listed
    both as ``pkg``/``sub`` and as the module ``pkg.sub``."""
    package = _package_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _from_module(node, package)
            for alias in node.names:
                found.append((node.lineno, module, alias.name))
                found.append((node.lineno, f"{module}.{alias.name}", None))
    return found


def _from_module(node: ast.ImportFrom, package: str) -> str:
    base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
    return ".".join(base + ([node.module] if node.module else []))


@dataclass(frozen=True)
class Edge:
    """One imported module (``name`` None) or one name imported from a module."""

    source: str  # the importing module
    path: Path
    line: int
    target: str  # the module imported, or the module the name is imported from
    name: str | None
    lazy: bool  # inside a function
    form: str  # "import" (``import a.b [as c]``) or "from" (``from a import b``)
    reads: str  # the module whose namespace the statement reads (``from X import``: X)

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _known_modules() -> set[str]:
    return {_module_name(p) for p in _all_files()}


def edges(path: Path, known: set[str] | None = None) -> list[Edge]:
    """Every dllm import of the file, ``from pkg import sub`` resolved to the module ``pkg.sub``
    when that is a module (a file under ROOT, or ``known``)."""
    known = _known_modules() if known is None else known
    source, package = _module_name(path), _package_name(path)
    found: list[Edge] = []

    def visit(node, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = lazy or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append(
                        Edge(source, path, child.lineno, alias.name, None, inner, "import", alias.name)
                    )
            elif isinstance(child, ast.ImportFrom):
                module = _from_module(child, package)
                for alias in child.names:
                    sub = f"{module}.{alias.name}"
                    target, name = (sub, None) if sub in known else (module, alias.name)
                    found.append(Edge(source, path, child.lineno, target, name, inner, "from", module))
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return [e for e in found if e.target == "dllm" or e.target.startswith("dllm.")]


def package_of(module: str) -> str:
    """The package (a row of ``LEVELS``) of a dllm module."""
    if module == "dllm":
        return "dllm"
    best = None
    for _, package, members in LEVELS:
        for member in members:
            if (module == member or module.startswith(member + ".")) and (
                best is None or len(member) > len(best[1])
            ):
                best = (package, member)
    if best is None:
        raise KeyError(f"{module} is in no package of LEVELS: give it a level")
    return best[0]


def _is_registry_lookup(edge: Edge) -> bool:
    return edge.target in REGISTRY_MODULES and (edge.name is None or edge.name in REGISTRY_NAMES)


def level_violations(path: Path, known: set[str] | None = None) -> list[str]:
    """Imports of a package above the file's or of another package of its level (faces: none)."""
    bad = []
    for edge in edges(path, known):
        source, target = package_of(edge.source), package_of(edge.target)
        if source in FACES or source == target or _is_registry_lookup(edge):
            continue
        if RANK[target] >= RANK[source]:
            where = "above it" if RANK[target] > RANK[source] else "of its own level"
            bad.append(f"{edge.where()} ({source}) imports {edge.target} ({target}, a package {where})")
    return bad


def _reexports(package: str) -> dict[str, str]:
    """Name -> the module it comes from, for the names a plugin package's ``__init__`` imports."""
    init = ROOT / package.removeprefix("dllm.").replace(".", "/") / "__init__.py"
    if not init.exists():
        return {}
    found = {}
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            module = _from_module(node, package)
            for alias in node.names:
                found[alias.asname or alias.name] = module
    return found


def _plugin_package(module: str) -> str | None:
    return next((p for p in PLUGIN_PACKAGES if module == p or module.startswith(p + ".")), None)


def _is_plugin_module(module: str) -> bool:
    package = _plugin_package(module)
    return package is not None and module != package and module not in NOT_PLUGIN_MODULES


def core_violations(path: Path, known: set[str] | None = None) -> list[str]:
    """Imports of a plugin module (or of a name a registry has from one) by a core module."""
    bad = []
    for edge in edges(path, known):
        if _is_plugin_module(edge.target):
            bad.append(f"{edge.where()} imports {edge.target}")
        elif edge.target in PLUGIN_PACKAGES and edge.name is not None:
            origin = _reexports(edge.target).get(edge.name)
            allowed = edge.name in REGISTRY_NAMES | INTERFACES[edge.target] or (
                origin is not None and not _is_plugin_module(origin)
            )
            if not allowed:
                bad.append(
                    f"{edge.where()} imports {edge.name} from {edge.target}"
                    " (not a registry function, the plugin interface or the step kind's)"
                )
    return bad


def plugin_violations(path: Path, known: set[str] | None = None) -> list[str]:
    """A plugin importing another plugin package (but a drafter's registry lookups), or a sibling
    plugin of its own package that is not documented."""
    bad = []
    own = _plugin_package(_module_name(path))
    for edge in edges(path, known):
        other = _plugin_package(edge.target)
        if other is None:
            continue
        if other != own:
            lookup = edge.target == other and (edge.name is None or edge.name in REGISTRY_NAMES)
            if not (own == "dllm.drafters" and other in ("dllm.samplers", "dllm.caches") and lookup):
                bad.append(f"{edge.where()} imports {edge.target}{'.' + edge.name if edge.name else ''}")
        elif (
            edge.target != own
            and edge.target not in SHARED[own]
            and _module_name(path) != own
            and (edge.source, edge.target) not in DOCUMENTED_SIBLINGS
        ):
            bad.append(f"{edge.where()} imports its sibling {edge.target} (not a shared module)")
    return bad


def _shadowed_by_the_api() -> set[str]:
    """Submodule names that ``dllm/__init__`` binds to something else (``generate``: the function)."""
    init, known = ROOT / "dllm" / "__init__.py", _known_modules()
    shadowed = set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            module = _from_module(node, "dllm")
            for alias in node.names:
                bound = alias.asname or alias.name
                if f"dllm.{bound}" in known and f"{module}.{alias.name}" != f"dllm.{bound}":
                    shadowed.add(bound)
    return shadowed


def api_violations(path: Path, known: set[str] | None = None, shadowed: set[str] = frozenset()) -> list[str]:
    """Reads of the top package's namespace (``dllm/__init__``) by a module below the public API."""
    bad = []
    for edge in edges(path, known):
        if edge.form == "from" and edge.reads == "dllm":
            bad.append(f"{edge.where()}: from dllm import {edge.name or edge.target.rpartition('.')[2]}")
        elif edge.form == "import" and (edge.target == "dllm" or edge.target.split(".")[1] in shadowed):
            bad.append(f"{edge.where()}: import {edge.target} (reads dllm/__init__'s namespace)")
    return bad


def _check(check, files) -> list[str]:
    known = _known_modules()
    return list(dict.fromkeys(v for path in files for v in check(path, known)))  # once per line


def test_every_module_has_a_level():
    unplaced = []
    for path in _all_files():
        try:
            package_of(_module_name(path))
        except KeyError as exc:
            unplaced.append(str(exc))
    assert not unplaced, "\n".join(unplaced)


def test_no_package_imports_one_above_it():
    bad = _check(level_violations, _all_files())
    assert not bad, "upward (or same-level) imports:\n" + "\n".join(bad)


def test_the_leaves_import_nothing_of_dllm():
    files = [p for p in _all_files() if package_of(_module_name(p)) in LEAVES]
    assert ROOT / "dllm" / "shipped.py" in files and ROOT / "dllm" / "tasks" / "base.py" in files
    bad = [
        f"{e.where()} imports {e.target}"
        for path in files
        for e in edges(path)
        if package_of(e.target) != package_of(e.source)
    ]
    assert not bad, "the leaves (shipped data, task generators) import dllm:\n" + "\n".join(bad)


def test_the_engine_imports_no_step_kind_plugin_or_face():
    bad = [
        f"{e.where()} imports {e.target}"
        for e in edges(ROOT / "dllm" / "engine.py")
        if package_of(e.target) in (*STEP_KINDS, *PLUGIN_PACKAGES, *FACES, "dllm", "dllm.eval", "dllm.zoo")
    ]
    assert not bad, "\n".join(bad)


def test_models_import_no_cache_policy():
    bad = [
        f"{e.where()} imports {e.target}"
        for path in _files("dllm/models")
        for e in edges(path)
        if e.target == "dllm.caches" or e.target.startswith("dllm.caches.")
    ]
    assert not bad, "dllm/models must not import dllm.caches:\n" + "\n".join(bad)


def test_core_imports_plugins_only_through_the_registries():
    files = _files("dllm")
    for name in (
        "generate.py",
        "engine.py",
        "serving.py",
        "models/transformer.py",
        "eval/runner.py",
        "zoo/learn2pd_train.py",
    ):
        assert ROOT / "dllm" / name in files
    bad = _check(core_violations, files)
    assert not bad, "core modules import plugin modules:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["samplers", "caches", "drafters"])
def test_plugins_import_only_the_core_and_the_registries(package):
    bad = _check(plugin_violations, _files(package))
    assert not bad, f"{package}/ imports another plugin package or an undocumented sibling:\n" + "\n".join(
        bad
    )


def test_below_the_public_api_nothing_reads_dllm_init():
    shadowed = _shadowed_by_the_api()
    assert "generate" in shadowed  # dllm.generate is the function there, not the module
    files = [p for p in _all_files() if RANK[package_of(_module_name(p))] < API_RANK]
    known = _known_modules()
    bad = [v for path in files for v in api_violations(path, known, shadowed)]
    assert not bad, "import the module itself, not through dllm/__init__:\n" + "\n".join(bad)


def package_graph() -> dict[str, dict[str, bool]]:
    """Package -> {imported package: True when only imported inside functions}."""
    graph: dict[str, dict[str, bool]] = {package: {} for _, package, _ in LEVELS}
    for path in _all_files():
        for e in edges(path):
            source, target = package_of(e.source), package_of(e.target)
            if source != target:
                graph[source][target] = graph[source].get(target, True) and e.lazy
    return graph


def graph_table(width: int = 104) -> str:
    """The graph as the docstring shows it: one package a row, long rows wrapped."""
    graph = package_graph()
    indent = " " * 4
    column = max(map(len, graph)) + 2
    lines = []
    for package, targets in graph.items():
        line = f"{indent}{package:<{column}}->"
        for i, target in enumerate(sorted(targets, key=_sort_key)):
            item = target + ("*" if targets[target] else "") + ("," if i < len(targets) - 1 else "")
            if len(line) + 1 + len(item) > width:
                lines.append(line)
                line = indent + " " * (column + 2)
            line += " " + item
        lines.append(line)
    return "\n".join(lines)


def _sort_key(package: str):
    return (package == "dllm core", package)


def test_the_graph_in_the_docstring_is_current():
    table = graph_table()
    assert table in (__doc__ or ""), (
        f"the imports changed: paste this (python tests/test_layering.py):\n{table}"
    )


def test_importing_a_core_module_loads_no_drafter_eval_zoo_or_face():
    """Every module of dllm runs ``dllm/__init__`` first; it loads the drafters on first use only."""
    code = (
        "import sys, dllm.generate, dllm.shipped, dllm.tasks, dllm.models\n"
        "print(sorted({m.split('.')[1] for m in sys.modules if m.startswith('dllm.')}))\n"
        "import dllm\n"
        "assert dllm.speculate is dllm.drafters.speculate and 'ar' in dllm.drafters.names()\n"
        "from dllm import drafters, speculate\n"
        "assert {'drafters', 'speculate'} <= set(dir(dllm))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = set(ast.literal_eval(out.stdout.splitlines()[0]))
    assert not loaded & {"drafters", "eval", "zoo", "demo", "cli", "serving"}, loaded


# modules the synthetic files below import (their folder holds only the one file under test)
SOME_MODULES = {"dllm.tasks", "dllm.canvas", "dllm.samplers", "dllm.samplers.base", "dllm.caches.dual"}
SOME_MODULES |= {"dllm.drafters.loop", "dllm.drafters.length", "dllm.drafters.ngram"}


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from dllm.samplers.base import best_candidate", True),
        ("import dllm.caches.elastic", True),
        ("from dllm.samplers import Wrapper", True),
        ("from dllm.caches import dual", True),
        ("from dllm.samplers.base import Sampler", True),
        ("from dllm.samplers import Sampler", False),  # the interface, through the registry package
        ("from dllm import samplers as sampler_registry", False),
        ("import dllm.samplers", False),
        ("from dllm.samplers import get", False),
        ("from dllm.drafters import length", False),
        ("from dllm.drafters.loop import as_verifier", False),
        ("from dllm.drafters.ngram import fit", True),
        ("def f():\n    from dllm.caches.attention import attend", True),
    ],
)
def test_the_check_sees_each_kind_of_import(tmp_path, monkeypatch, source, expected):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "dllm").mkdir()
    path = tmp_path / "dllm" / "generate.py"
    path.write_text(source + "\n")
    assert bool(core_violations(path, SOME_MODULES)) is expected


@pytest.mark.parametrize(
    "file,source,check,expected",
    [
        ("dllm/engine.py", "from dllm.generate import Denoising", level_violations, True),
        (
            "dllm/engine.py",
            "def f():\n    from dllm.drafters.loop import Speculative",
            level_violations,
            True,
        ),
        ("dllm/generate.py", "from dllm.drafters.loop import Speculative", level_violations, True),
        ("dllm/serving.py", "from dllm.drafters.loop import Speculative", level_violations, False),
        ("drafters/ngram.py", "def f():\n    from dllm.eval import tasks", level_violations, True),
        ("drafters/ngram.py", "import dllm.tasks as task_lib", level_violations, False),
        ("drafters/loop.py", "def f():\n    from . import get", level_violations, False),
        ("drafters/loop.py", "from .ar import ARDrafter", level_violations, True),
        (
            "dllm/models/loading.py",
            "def f():\n    from dllm.zoo import shipped_models",
            level_violations,
            True,
        ),
        ("dllm/shipped.py", "import dllm.config", level_violations, True),
        ("dllm/eval/mock.py", "from dllm.zoo.tokenizer import load_tokenizer", level_violations, True),
        ("samplers/x.py", "from dllm.caches import get", plugin_violations, True),
        ("drafters/x.py", "from dllm.caches import get", plugin_violations, False),
        ("drafters/x.py", "import dllm.samplers as sampler_registry", plugin_violations, False),
        ("drafters/x.py", "from dllm.samplers.llada import LLaDASampler", plugin_violations, True),
        ("samplers/x.py", "from .llada import uniform_schedule", plugin_violations, True),
        ("samplers/x.py", "from .base import Sampler", plugin_violations, False),
        ("dllm/generate.py", "from dllm import samplers", api_violations, True),
        ("dllm/generate.py", "from . import canvas", api_violations, True),
        ("dllm/generate.py", "import dllm", api_violations, True),
        ("dllm/generate.py", "import dllm.samplers as sampler_registry", api_violations, False),
        ("drafters/x.py", "def f():\n    import dllm.generate as g", api_violations, True),
    ],
)
def test_each_rule_sees_its_violation(tmp_path, monkeypatch, file, source, check, expected):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    path = tmp_path / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source + "\n")
    kwargs = {"shadowed": {"generate"}} if check is api_violations else {}
    assert bool(check(path, SOME_MODULES, **kwargs)) is expected


def test_relative_imports_are_resolved(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "dllm" / "models").mkdir(parents=True)
    path = tmp_path / "dllm" / "models" / "transformer.py"
    path.write_text("from .attention import attend\nfrom ..caches.base import StepPlan\n")
    modules = {module for _, module, _ in imports(path)}
    assert {"dllm.models.attention", "dllm.caches.base"} <= modules
    (tmp_path / "samplers").mkdir()
    plugin = tmp_path / "samplers" / "x.py"
    plugin.write_text("from . import register\nfrom .base import Sampler\n")
    assert {(e.target, e.name) for e in edges(plugin, set())} == {
        ("dllm.samplers", "register"),
        ("dllm.samplers.base", "Sampler"),
    }


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


if __name__ == "__main__":
    print(graph_table())
