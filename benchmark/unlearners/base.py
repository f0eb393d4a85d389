"""The unlearner contract, the registry and plugin discovery.

A method is a class registered with :func:`register_unlearner`::

    @register_unlearner("cure_newton")
    class CubicNewton(Unlearner):
        space = {"L": Float(low=0, low_open=True, search=(0.01, 10), log=True), "iters": Int(low=0)}
        params = {"L": [1.0], "iters": [3]}   # built-in grid, expanded like benchopt; first = default
        test_params = {"iters": 1}             # tiny config for the conformance checks
        def unlearn(self, model, request, ctx) -> nn.Module: ...

``unlearn`` is called once per deletion request, in order: request k receives the model returned
for request k-1. It never sees test data. The request types live in :mod:`benchmark.core.types`, the
parameter space types in :mod:`benchmark.core.space`; both are re-exported here for plugins.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import inspect
import itertools
import pkgutil
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.core.space import Param, ParamError, check_params, infer_space
from benchmark.core.types import Counters, DataView, Request, TrainRecipe

__all__ = [
    "BudgetExceeded",
    "Context",
    "Counters",
    "DataView",
    "Param",
    "ParamError",
    "Request",
    "TrainRecipe",
    "UnknownMethodError",
    "Unlearner",
    "available_unlearners",
    "get_unlearner",
    "plugin_errors",
    "register_unlearner",
]

ENTRY_POINT_GROUP = "benchmark.unlearners"


class BudgetExceeded(RuntimeError):
    """Raised by :meth:`Context.check_budget` when a cell runs past its time budget."""


class UnknownMethodError(KeyError):
    """An unlearner name that no registered or installed method provides."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass
class Context:
    """Everything a method may use besides the model and the request."""

    seed: int
    recipe: TrainRecipe
    make_model: Callable[[int], nn.Module]  # make_model(seed): a fresh model of the suite architecture
    n_train: int  # |D|, to express costs in epoch-equivalents
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    budget_s: float | None = None
    counters: Counters = field(default_factory=Counters)
    state: dict[str, Any] = field(default_factory=dict)  # persists across the K requests of a cell
    info: dict[str, Any] = field(default_factory=dict)  # per-request diagnostics, stored in the result row
    started: float = field(default_factory=time.perf_counter)

    def generator(self, offset: int = 0) -> torch.Generator:
        """A torch generator seeded from the cell seed (``offset`` separates independent streams)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + offset)

    def check_budget(self) -> None:
        """Methods with long loops call this; the runner also checks between requests."""
        if self.budget_s is not None and time.perf_counter() - self.started > self.budget_s:
            raise BudgetExceeded(f"time budget of {self.budget_s:.0f}s exceeded")


class Unlearner:
    """Base class of every unlearning method.

    Subclasses set ``name`` (through the decorator), ``space`` (the typed parameter space:
    key -> :class:`~benchmark.core.space.Param`), ``params`` (the built-in grid: key -> list of values, the
    first one the default) and ``test_params`` (one small configuration), and implement :meth:`unlearn`.
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, list[Any]]] = {}
    space: ClassVar[dict[str, Param]] = {}
    test_params: ClassVar[dict[str, Any]] = {}
    origin: ClassVar[str] = "builtin"

    def __init__(self, **hparams: Any) -> None:
        space = self.declared_space()
        defaults = {k: v[0] for k, v in self.params.items()}
        self.hparams: dict[str, Any] = check_params(self.name, space, {**defaults, **hparams})

    @classmethod
    def declared_space(cls) -> dict[str, Param]:
        """The method's typed parameter space (:mod:`benchmark.core.space`): ``space`` when the class
        declares one, else a permissive space over the keys of its grid (plugins written before spaces)."""
        return dict(cls.space) if cls.space else infer_space(cls.params)

    @classmethod
    def check_grid(cls, grid: dict[str, list[Any]], where: str | None = None) -> None:
        """Raise :class:`ParamError` (``where.param: got ...; allowed: ...``) for the first value of
        ``grid`` outside the declared space."""
        space = cls.declared_space()
        for key in sorted(grid):
            for value in grid[key]:
                check_params(where or cls.name, space, {key: value})

    def skip(self, n_params: int) -> str | None:
        """Return a reason when the method does not apply to a model with ``n_params`` parameters."""
        return None

    def unlearn(self, model: nn.Module, request: Request, ctx: Context) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def grid(
        cls, overrides: dict[str, list[Any]] | None = None, full: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Expand the parameter grid (``overrides`` replaces the lists of the keys it names).

        ``full=False`` starts from the default configuration (the first value of every list of ``params``)
        instead of the whole built-in grid; ``overrides`` still expand."""
        base = cls.params if full else {k: v[:1] for k, v in cls.params.items()}
        space = {**base, **(overrides or {})}
        keys = sorted(space)
        for values in itertools.product(*(space[k] for k in keys)):
            yield dict(zip(keys, values, strict=True))

    @classmethod
    def code_hash(cls) -> str:
        """sha256 of the method's source file (built-ins) or distribution RECORD (installed plugins)."""
        return _code_hash(cls)


_REGISTRY: dict[str, type[Unlearner]] = {}
_PLUGIN_ERRORS: dict[str, str] = {}
_DISCOVERED = False


def register_unlearner(name: str) -> Callable[[type[Unlearner]], type[Unlearner]]:
    """Class decorator: register an :class:`Unlearner` subclass under ``name``."""

    def decorate(cls: type[Unlearner]) -> type[Unlearner]:
        if not (isinstance(cls, type) and issubclass(cls, Unlearner)):
            raise TypeError(f"@register_unlearner({name!r}) must decorate an Unlearner subclass")
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"unlearner {name!r} is already registered by {_REGISTRY[name].__module__}")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorate


def _discover() -> None:
    """Import the built-in methods, then every entry point of group ``benchmark.unlearners``."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    import benchmark.unlearners as package

    for info in pkgutil.iter_modules(package.__path__):  # one file per built-in method
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{package.__name__}.{info.name}")

    try:
        entry_points = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception as exc:  # a malformed *.dist-info must not take the built-ins down
        _PLUGIN_ERRORS["<entry points>"] = f"{type(exc).__name__}: {exc}"
        entry_points = []
    for ep in entry_points:
        try:
            obj = ep.load()
            if not (isinstance(obj, type) and issubclass(obj, Unlearner)):
                raise TypeError(f"entry point {ep.value!r} is {obj!r}, not an Unlearner subclass")
            if ep.name in _REGISTRY and _REGISTRY[ep.name] is not obj:
                other = _REGISTRY[ep.name]
                raise ValueError(f"name {ep.name!r} is already taken by {other.__module__} ({other.origin})")
            register_unlearner(ep.name)(obj)
            obj.origin = f"plugin:{ep.dist.name if ep.dist else ep.value}"
        except Exception as exc:  # a broken plugin must not take the others down
            _PLUGIN_ERRORS[ep.name] = f"{type(exc).__name__}: {exc}"


def reset_discovery() -> None:
    """Forget entry-point plugins and rescan on next use (for tests that install a plugin on sys.path)."""
    global _DISCOVERED
    for name in [n for n, cls in _REGISTRY.items() if cls.origin.startswith("plugin:")]:
        del _REGISTRY[name]
    _PLUGIN_ERRORS.clear()
    _DISCOVERED = False
    importlib.invalidate_caches()  # also drops importlib.metadata's cached view of sys.path


def available_unlearners() -> dict[str, type[Unlearner]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def plugin_errors() -> dict[str, str]:
    _discover()
    return dict(_PLUGIN_ERRORS)


def get_unlearner(name: str) -> type[Unlearner]:
    _discover()
    if name not in _REGISTRY:
        hint = f" (plugin failed to load: {_PLUGIN_ERRORS[name]})" if name in _PLUGIN_ERRORS else ""
        raise UnknownMethodError(f"unknown method '{name}'{hint}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def _benchmark_dependencies(module: types.ModuleType) -> list[str]:
    """Names of the ``benchmark.*`` modules that ``module`` references, transitively, sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        mod = todo.pop()
        for value in list(vars(mod).values()):
            name = (
                value.__name__ if isinstance(value, types.ModuleType) else getattr(value, "__module__", None)
            )
            if (
                isinstance(name, str)
                and name.startswith("benchmark.")
                and name not in seen
                and name in sys.modules
                and getattr(sys.modules[name], "__file__", None)
            ):
                seen.add(name)
                todo.append(sys.modules[name])
    seen.discard(module.__name__)
    return sorted(seen)


def code_fingerprint(source: bytes) -> bytes:
    """The code of a Python source without its prose: the AST with every docstring removed, dumped without
    line numbers (comments never reach the AST). Editing a docstring or a comment, or re-wrapping lines,
    leaves it unchanged; any change to what runs changes it. A file that does not parse is used as is."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):  # fmt: skip
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, include_attributes=False).encode()


def _code_hash(cls: type) -> str:
    """Built-ins: the method's file plus every ``benchmark`` module it uses, transitively (a change in a
    shared helper such as ``benchmark.curvature`` re-runs the methods that use it, and only those).
    Installed plugins: the defining file, the distribution's version and its RECORD.
    Files are hashed by :func:`code_fingerprint`: docstrings and comments do not count, so documentation
    edits re-run no cell."""
    module = inspect.getmodule(cls)
    path = Path(inspect.getfile(cls))
    digest = hashlib.sha256(code_fingerprint(path.read_bytes()))
    if module is not None and module.__name__.startswith("benchmark."):
        for dep in _benchmark_dependencies(module):
            digest.update(dep.encode())
            digest.update(code_fingerprint(Path(sys.modules[dep].__file__ or "").read_bytes()))
    elif module is not None:
        try:  # installed plugin: fold in the distribution's version and RECORD
            dist_name = metadata.packages_distributions().get(module.__name__.split(".")[0], [None])[0]
            if dist_name:
                dist = metadata.distribution(dist_name)
                digest.update(dist.version.encode())
                digest.update((dist.read_text("RECORD") or "").encode())
        except Exception:
            pass
    return digest.hexdigest()[:16]
