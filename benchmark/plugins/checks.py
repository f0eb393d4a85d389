"""The conformance checks, in the spirit of scikit-learn's ``check_estimator``.

A method runs with its ``test_params`` on the tiny problem of :mod:`benchmark.plugins.problem`; each check
is PASS or FAIL with a one-line reason. A check that cannot run because an earlier one failed is a FAIL
saying so. The checks, in order:

``registered``
    the name resolves through the registry (built-ins and entry-point plugins) to this class, and
    ``code_hash()`` works (it keys the method's cached cells).
``params_grid``
    ``params`` maps names to non-empty lists, ``test_params`` only uses names of ``params``, and the method
    can be instantiated with ``test_params`` and with every point of its grid.
``space_declared``
    the declared parameter space (``space``, :mod:`benchmark.core.space`) names exactly the keys of
    ``params``; every value of the grid and of ``test_params`` lies inside it; every ``search`` range lies
    inside the allowed values (positive for a log scale) and contains the grid's default (a default of
    ``None``, "the method's own value", is not compared). Built-in methods must declare a space; a plugin
    without one passes with the note "no declared space (not tunable)": it accepts any value and the tuner
    leaves it alone. Static: needs only the class.
``applies``
    ``skip(n_params)`` does not skip the tiny model (it must return ``None`` or a string).
``sequential_requests``
    three sequential requests on one :class:`Context` (request k gets the model returned for k-1, as in
    the runner): every call returns an ``nn.Module``, ``ctx.state`` stays a dict and ``ctx.info`` a dict.
``same_architecture``
    every returned model has the original's ``state_dict`` keys, shapes and dtypes.
``finite_weights``
    every parameter and buffer of every returned model is finite.
``request_unchanged``
    the request's tensors (forget, forget_all, retain: x, y, indices) are bit-identical after each call.
``no_test_data``
    no ``unlearn`` call (of the three runs below) reads test data, as guarded by
    :class:`benchmark.plugins.guard.TestDataGuard` (a method that swallows the exception still fails).
``deterministic``
    a second run of the three requests from the same original model, seed and parameters (global torch
    RNG seeded with the cell seed, as the runner does) gives bit-identical weights at every step.
``budget``
    one call on request 1 with ``ctx.budget_s = B`` (default 0.5 s) and ``ctx.started`` set at the call.
    PASS iff the call either returns a model or raises :class:`BudgetExceeded` (what
    ``ctx.check_budget()`` raises), and hands control back within B + grace (default 2 s) either way.
    At ``test_params`` scale a fast method passes without checking; any loop whose length grows with the
    data or the model must call ``ctx.check_budget()`` (the reason reports how often it was called).

:class:`Evaluation` computes the checks of one method lazily and shares the expensive parts between them:
the problem, the traced request sequence (used by five checks), the second run (``deterministic``) and the
budget run are each computed at most once.
"""

from __future__ import annotations

import functools
import itertools
import re
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from benchmark.core.space import Choice, Param, ParamError, check_params, tuned
from benchmark.plugins.guard import TestDataGuard
from benchmark.plugins.problem import Problem, build_problem
from benchmark.unlearners.base import (
    _REGISTRY,
    BudgetExceeded,
    Context,
    Request,
    Unlearner,
    get_unlearner,
)

CHECKS = (
    "registered",
    "params_grid",
    "space_declared",
    "applies",
    "sequential_requests",
    "same_architecture",
    "finite_weights",
    "request_unchanged",
    "no_test_data",
    "deterministic",
    "budget",
)
MAX_GRID_POINTS = 1000  # instantiating more than this many grid points proves nothing more


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one conformance check."""

    name: str
    passed: bool
    reason: str

    @property
    def status(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def __str__(self) -> str:
        return f"{self.status}  {self.name:<20} {self.reason}"


# --------------------------------------------------------------------------------------------------------
# running a method


@dataclass
class _Step:
    step: int
    state: dict[str, torch.Tensor] | None = None  # state_dict after the call (cloned)
    returned: str = ""  # type of what unlearn returned
    mutated: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class _Trace:
    steps: list[_Step] = field(default_factory=list)
    error: str = ""  # why the sequence stopped early
    ctx_problem: str = ""


def _tensors(request: Request) -> dict[str, torch.Tensor]:
    out = {}
    for part in ("forget", "forget_all", "retain"):
        view = getattr(request, part)
        for attr in ("x", "y", "indices"):
            out[f"{part}.{attr}"] = getattr(view, attr)
    return out


def _run_sequence(
    cls: type[Unlearner], hp: dict[str, Any], problem: Problem, seed: int, guard: TestDataGuard
) -> _Trace:
    trace = _Trace()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        method = cls(**hp)
        ctx = Context(
            seed=seed, recipe=problem.recipe, make_model=problem.make_model, n_train=problem.n_train
        )
        model: Any = problem.original(seed)
        for request in problem.fresh_requests():
            before = {k: v.clone() for k, v in _tensors(request).items()}
            ctx.counters.reset()
            ctx.info = {}
            rec = _Step(request.step)
            t0 = time.perf_counter()
            try:
                with guard.active():
                    model = method.unlearn(model, request, ctx)
            except Exception as exc:
                trace.error = f"request {request.step} raised {_short(exc)}"
                break
            finally:
                rec.seconds = time.perf_counter() - t0
                after = _tensors(request)
                rec.mutated = [k for k, v in before.items() if not _same(v, after[k])]
            rec.returned = type(model).__name__
            trace.steps.append(rec)
            if not isinstance(model, nn.Module):
                trace.error = f"request {request.step} returned {rec.returned}, not an nn.Module"
                break
            rec.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if not isinstance(ctx.state, dict):
                trace.ctx_problem = f"ctx.state became {type(ctx.state).__name__} at request {request.step}"
            elif not isinstance(ctx.info, dict):
                trace.ctx_problem = f"ctx.info became {type(ctx.info).__name__} at request {request.step}"
    return trace


def _short(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters (reasons stay on one line)."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))


def _architecture_diff(ref: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> str:
    missing, extra = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
    if missing or extra:
        return f"state_dict keys differ (missing {missing[:3]}, unexpected {extra[:3]})"
    for k, v in ref.items():
        if got[k].shape != v.shape or got[k].dtype != v.dtype:
            return f"{k}: {tuple(got[k].shape)} {got[k].dtype}, expected {tuple(v.shape)} {v.dtype}"
    return ""


# --------------------------------------------------------------------------------------------------------
# the checks


def _resolve(name_or_cls: str | type[Unlearner]) -> tuple[type[Unlearner] | None, CheckResult]:
    check = "registered"
    try:
        if isinstance(name_or_cls, str):
            cls = get_unlearner(name_or_cls)
        else:
            cls = name_or_cls
            if not (isinstance(cls, type) and issubclass(cls, Unlearner)):
                return None, CheckResult(check, False, f"{cls!r} is not an Unlearner subclass")
            if not cls.name or _REGISTRY.get(cls.name) is not cls:
                return cls, CheckResult(
                    check, False, f"{cls.__name__} is not registered: decorate it with @register_unlearner"
                )
    except Exception as exc:
        return None, CheckResult(check, False, str(exc))
    try:
        digest = cls.code_hash()
    except Exception as exc:
        return cls, CheckResult(check, False, f"code_hash() failed: {_short(exc)}")
    if not re.fullmatch(r"[0-9a-f]{16}", str(digest)):
        return cls, CheckResult(check, False, f"code_hash() returned {digest!r}, expected 16 hex digits")
    return cls, CheckResult(
        check, True, f"'{cls.name}' -> {cls.__module__}.{cls.__qualname__} ({cls.origin})"
    )


def _check_params(cls: type[Unlearner], hp: dict[str, Any]) -> CheckResult:
    check = "params_grid"
    if not isinstance(cls.params, dict):
        return CheckResult(check, False, f"params is a {type(cls.params).__name__}, expected a dict")
    for k, v in cls.params.items():
        if not isinstance(k, str) or not isinstance(v, list) or not v:
            return CheckResult(check, False, f"params[{k!r}] must be a non-empty list of values, got {v!r}")
    unknown = sorted(set(cls.test_params) - set(cls.params))
    if unknown:
        return CheckResult(
            check, False, f"test_params key {unknown[0]!r} is not in params {sorted(cls.params)}"
        )
    n = 0
    for point in itertools.islice(cls.grid(), MAX_GRID_POINTS):
        n += 1
        try:
            cls(**point)
        except Exception as exc:
            return CheckResult(check, False, f"grid point {point} fails: {_short(exc)}")
    try:
        cls(**hp)
    except Exception as exc:
        return CheckResult(check, False, f"cannot instantiate with {hp}: {_short(exc)}")
    return CheckResult(check, True, f"{n} grid point(s) and test params {hp} instantiate")


def _search_problem(key: str, p: Param, default: Any) -> str:
    """Why the search range of ``p`` is unusable (outside the allowed values, empty, no default), or ''."""
    search = getattr(p, "search", None)
    if isinstance(p, Choice):
        outside = [o for o in search or () if o not in p.options]
        if not search or outside:
            return f"{key}: search {search!r} is not a non-empty subset of its options {p.options!r}"
        if default is not None and default not in search:
            return f"{key}: default {default!r} is not among the searched {search!r}"
        return ""
    try:
        lo, hi = search  # type: ignore[misc]
        p.check(lo, key)
        p.check(hi, key)
    except (TypeError, ValueError) as exc:
        return f"{key}: search {search!r} is not a range inside the allowed values ({_short(exc)})"
    if not lo <= hi or (getattr(p, "log", False) and not lo > 0):
        return f"{key}: search {search!r} is empty or, on a log scale, not positive"
    if default is not None and not lo <= default <= hi:
        return f"{key}: search {search!r} does not contain the default {default!r}"
    return ""


def _check_space(cls: type[Unlearner]) -> CheckResult:
    check = "space_declared"
    builtin = cls.__module__.startswith("benchmark.unlearners.")
    if not cls.space:
        if builtin and cls.params:
            return CheckResult(check, False, f"built-in method declares no space for {sorted(cls.params)}")
        if not cls.params:
            return CheckResult(check, True, "no parameters")
        return CheckResult(check, True, "no declared space (not tunable): any value of its grid is accepted")
    space = cls.space
    if not isinstance(space, dict) or not all(isinstance(p, Param) for p in space.values()):
        return CheckResult(check, False, "space must map parameter names to benchmark.core.space types")
    missing, extra = sorted(set(cls.params) - set(space)), sorted(set(space) - set(cls.params))
    if missing or extra:
        return CheckResult(
            check, False, f"space and params differ: undeclared {missing}, not in params {extra}"
        )
    try:
        cls.check_grid(cls.params, where=f"{cls.name}.params")
        check_params(f"{cls.name}.test_params", space, cls.test_params)
    except ParamError as exc:
        return CheckResult(check, False, str(exc))
    searched = tuned(space)
    for key, p in searched.items():
        problem = _search_problem(key, p, cls.params[key][0])
        if problem:
            return CheckResult(check, False, problem)
    names = ", ".join(searched) or "none"
    return CheckResult(check, True, f"{len(space)} parameter(s) declared, grid inside; tuned: {names}")


def _check_applies(cls: type[Unlearner], hp: dict[str, Any], n_params: int) -> CheckResult:
    try:
        reason = cls(**hp).skip(n_params)
    except Exception as exc:
        return CheckResult("applies", False, f"skip({n_params}) raised {_short(exc)}")
    if reason is not None and not isinstance(reason, str):
        return CheckResult("applies", False, f"skip() must return None or a str, got {reason!r}")
    if reason:
        return CheckResult("applies", False, f"skips the {n_params}-parameter conformance model: {reason}")
    return CheckResult("applies", True, f"applies to a {n_params}-parameter MLP")


def _check_sequence(trace: _Trace, k: int) -> CheckResult:
    if trace.error:
        return CheckResult("sequential_requests", False, trace.error)
    if trace.ctx_problem:
        return CheckResult("sequential_requests", False, trace.ctx_problem)
    secs = ", ".join(f"{s.seconds:.2f}" for s in trace.steps)
    return CheckResult("sequential_requests", True, f"{k} requests returned models ({secs} s)")


def _check_outputs(trace: _Trace, ref: dict[str, torch.Tensor]) -> list[CheckResult]:
    done = [(s.step, s.state) for s in trace.steps if s.state is not None]
    if not done:
        why = "not run: no request returned a model"
        return [CheckResult("same_architecture", False, why), CheckResult("finite_weights", False, why)]
    arch = next(((step, d) for step, state in done if (d := _architecture_diff(ref, state))), None)
    arch_res = (
        CheckResult("same_architecture", False, f"request {arch[0]}: {arch[1]}")
        if arch
        else CheckResult("same_architecture", True, f"{len(ref)} state_dict entries match at every step")
    )
    bad = next(
        (
            (step, key)
            for step, state in done
            for key, v in state.items()
            if v.is_floating_point() and not bool(torch.isfinite(v).all())
        ),
        None,
    )
    finite = (
        CheckResult("finite_weights", False, f"request {bad[0]}: {bad[1]} has NaN or inf")
        if bad
        else CheckResult("finite_weights", True, "all parameters and buffers finite")
    )
    return [arch_res, finite]


def _check_mutation(trace: _Trace) -> CheckResult:
    if not trace.steps:
        return CheckResult("request_unchanged", False, "not run: request 1 did not return")
    hit = next((s for s in trace.steps if s.mutated), None)
    if hit:
        return CheckResult(
            "request_unchanged", False, f"request {hit.step}: modified {', '.join(hit.mutated)} (copy first)"
        )
    return CheckResult("request_unchanged", True, "forget/forget_all/retain tensors untouched")


def _check_test_data(guard: TestDataGuard) -> CheckResult:
    if guard.violations:
        return CheckResult("no_test_data", False, f"touched test data: {guard.violations[0]}")
    return CheckResult("no_test_data", True, "no snapshot loads, test parquet reads or test tensors used")


def _check_determinism(first: _Trace, second: _Trace) -> CheckResult:
    check = "deterministic"
    a = [(s.step, s.state) for s in first.steps if s.state is not None]
    if not a:
        return CheckResult(check, False, "not run: no request returned a model")
    b = [(s.step, s.state) for s in second.steps if s.state is not None]
    if len(b) != len(a):
        return CheckResult(check, False, f"second run: {second.error or 'a different number of steps'}")
    for (step, state), (_, other) in zip(a, b, strict=True):
        for key, v in state.items():
            w = other.get(key)
            if w is None or w.shape != v.shape or not torch.equal(v, w):
                diff = (
                    float((v.double() - w.double()).abs().max())
                    if w is not None and w.shape == v.shape
                    else float("nan")
                )
                return CheckResult(
                    check,
                    False,
                    f"request {step}: {key} differs between two seeded runs (max |diff| {diff:.3g}); "
                    "draw randomness from ctx.generator() or torch's seeded global RNG",
                )
    return CheckResult(check, True, f"two runs identical at all {len(a)} steps")


def _check_budget(
    cls: type[Unlearner],
    hp: dict[str, Any],
    problem: Problem,
    seed: int,
    guard: TestDataGuard,
    budget_s: float,
    grace_s: float,
) -> CheckResult:
    check = "budget"
    calls = 0

    class _Counting(Context):
        def check_budget(self) -> None:
            nonlocal calls
            calls += 1
            super().check_budget()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        method = cls(**hp)
        ctx = _Counting(
            seed=seed,
            recipe=problem.recipe,
            make_model=problem.make_model,
            n_train=problem.n_train,
            budget_s=budget_s,
        )
        model = problem.original(seed)
        ctx.started = t0 = time.perf_counter()
        try:
            with guard.active():
                out = method.unlearn(model, problem.fresh_requests()[0], ctx)
            outcome = "returned a model" if isinstance(out, nn.Module) else f"returned {type(out).__name__}"
            ok = isinstance(out, nn.Module)
        except BudgetExceeded:
            outcome, ok = "raised BudgetExceeded", True
        except Exception as exc:
            outcome, ok = f"raised {_short(exc)}", False
    took = time.perf_counter() - t0
    limit = budget_s + grace_s
    tail = f"(budget {budget_s:g} s, ctx.check_budget() called {calls}x)"
    if not ok:
        return CheckResult(check, False, f"{outcome} {tail}")
    if took > limit:
        return CheckResult(
            check,
            False,
            f"{outcome} after {took:.2f} s > {limit:g} s {tail}: call ctx.check_budget() inside long loops",
        )
    return CheckResult(check, True, f"{outcome} after {took:.2f} s {tail}")


# --------------------------------------------------------------------------------------------------------
# one method's checks, sharing the expensive parts


class Evaluation:
    """The conformance checks of one method (registered name or class), computed lazily on demand.

    ``params`` overrides the method's ``test_params`` (keys of its ``params`` grid). :meth:`result` gives
    one check; the traces behind the checks are computed once and reused by every check that reads them.
    One :class:`TestDataGuard` records test-data access across the three runs (first, second, budget).
    """

    def __init__(
        self,
        name_or_cls: str | type[Unlearner],
        params: dict[str, Any] | None = None,
        *,
        seed: int = 0,
        budget_s: float = 0.5,
        grace_s: float = 2.0,
    ) -> None:
        self.name_or_cls = name_or_cls
        self.params = dict(params or {})
        self.seed = seed
        self.budget_s = budget_s
        self.grace_s = grace_s
        self.guard = TestDataGuard()  # active during every unlearn call

    # the expensive parts, each computed at most once

    @functools.cached_property
    def _resolved(self) -> tuple[type[Unlearner] | None, CheckResult]:
        return _resolve(self.name_or_cls)

    @property
    def cls(self) -> type[Unlearner] | None:
        return self._resolved[0]

    @functools.cached_property
    def hp(self) -> dict[str, Any]:
        assert self.cls is not None
        return {**self.cls.test_params, **self.params}

    @property
    def problem(self) -> Problem:
        return build_problem(self.seed)  # lru-cached: one problem per seed for the whole session

    @functools.cached_property
    def first(self) -> _Trace:
        assert self.cls is not None
        return _run_sequence(self.cls, self.hp, self.problem, self.seed, self.guard)

    @functools.cached_property
    def second(self) -> _Trace:
        assert self.cls is not None
        _ = self.first  # run order as in the runner: first, second, budget
        return _run_sequence(self.cls, self.hp, self.problem, self.seed, self.guard)

    @functools.cached_property
    def _budget(self) -> CheckResult:
        assert self.cls is not None
        _ = self.second
        return _check_budget(
            self.cls, self.hp, self.problem, self.seed, self.guard, self.budget_s, self.grace_s
        )

    # the checks

    @functools.cached_property
    def _params_grid(self) -> CheckResult:
        assert self.cls is not None
        return _check_params(self.cls, self.hp)

    @functools.cached_property
    def _space(self) -> CheckResult:
        assert self.cls is not None
        return _check_space(self.cls)

    @functools.cached_property
    def _applies(self) -> CheckResult:
        assert self.cls is not None
        return _check_applies(self.cls, self.hp, self.problem.n_params)

    def _blocked(self, check: str) -> CheckResult | None:
        """The FAIL of a check that cannot run because an earlier one failed, else ``None``."""
        at = CHECKS.index(check)
        if at >= 1 and self.cls is None:
            return CheckResult(check, False, "not run: method not found")
        if check == "space_declared":  # static: needs only the class
            return None
        if at > CHECKS.index("params_grid") and not self._params_grid.passed:
            return CheckResult(check, False, "not run: cannot instantiate")
        if at > CHECKS.index("applies") and not self._applies.passed:
            return CheckResult(check, False, "not run: the method skips the model")
        return None

    def result(self, check: str) -> CheckResult:
        """The outcome of one check (a name of :data:`CHECKS`)."""
        if check not in CHECKS:
            raise ValueError(f"unknown conformance check {check!r}; the checks are {', '.join(CHECKS)}")
        if check == "registered":
            return self._resolved[1]
        blocked = self._blocked(check)
        if blocked is not None:
            return blocked
        if check == "params_grid":
            return self._params_grid
        if check == "space_declared":
            return self._space
        if check == "applies":
            return self._applies
        if check == "sequential_requests":
            return _check_sequence(self.first, len(self.problem.requests))
        if check == "same_architecture":
            return _check_outputs(self.first, self.problem.original_state)[0]
        if check == "finite_weights":
            return _check_outputs(self.first, self.problem.original_state)[1]
        if check == "request_unchanged":
            return _check_mutation(self.first)
        if check == "no_test_data":
            _ = self._budget  # every run, so that any access is recorded
            return _check_test_data(self.guard)
        if check == "deterministic":
            return _check_determinism(self.first, self.second)
        return self._budget

    def results(self) -> list[CheckResult]:
        """Every check, in the order of :data:`CHECKS`."""
        return [self.result(c) for c in CHECKS]
