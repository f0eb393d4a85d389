"""Conformance checks for unlearning methods, in the spirit of scikit-learn's ``check_estimator``.

``run_conformance("my_method")`` (or ``unlearn-bench check-plugin my_method``) runs a method with its
``test_params`` on a tiny self-contained problem and returns one :class:`CheckResult` per check. The problem
is built in memory, needs no pipeline output and takes a few seconds: 300 training images of scikit-learn's
digits, an MLP 64-8-10 trained by the suite's training loop, and K = 3 sequential deletion requests
(two random requests of 15 samples each, then one whole class).

The checks, in order (each PASS or FAIL with a one-line reason; a check that cannot run because an earlier
one failed is a FAIL saying so):

``registered``
    the name resolves through the registry (built-ins and entry-point plugins) to this class, and
    ``code_hash()`` works (it keys the method's cached cells).
``params_grid``
    ``params`` maps names to non-empty lists, ``test_params`` only uses names of ``params``, and the method
    can be instantiated with ``test_params`` and with every point of its grid.
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
    no call reads test data: while ``unlearn`` runs, :func:`benchmark.data.snapshot.load_snapshot`,
    :func:`benchmark.data.sources.load_source` (wherever they were imported), reading a ``test*.parquet``
    file through pyarrow or pandas, and the ``x_test``/``y_test`` tensors of any loaded
    :class:`~benchmark.data.snapshot.Snapshot` all raise :class:`TestDataAccessError` and are recorded
    (so a method that swallows the exception still fails).
``deterministic``
    a second run of the three requests from the same original model, seed and parameters (global torch
    RNG seeded with the cell seed, as the runner does) gives bit-identical weights at every step.
``budget``
    one call on request 1 with ``ctx.budget_s = B`` (default 0.5 s) and ``ctx.started`` set at the call.
    PASS iff the call either returns a model or raises :class:`BudgetExceeded` (what
    ``ctx.check_budget()`` raises), and hands control back within B + grace (default 2 s) either way.
    At ``test_params`` scale a fast method passes without checking; any loop whose length grows with the
    data or the model must call ``ctx.check_budget()`` (the reason reports how often it was called).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmark.unlearners.base import (
    _REGISTRY,
    BudgetExceeded,
    Context,
    DataView,
    Request,
    TrainRecipe,
    Unlearner,
    get_unlearner,
)

CHECKS = (
    "registered",
    "params_grid",
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


class TestDataAccessError(RuntimeError):
    """Raised when a method reaches for the test split while unlearning."""

    __test__ = False  # not a pytest test class


# --------------------------------------------------------------------------------------------------------
# the tiny problem


@dataclass(frozen=True)
class Problem:
    """A tiny unlearning problem: training data, an original model and K sequential requests."""

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    recipe: TrainRecipe
    model_spec: dict[str, Any]
    original_state: dict[str, torch.Tensor]
    requests: tuple[Request, ...]

    def make_model(self, seed: int) -> nn.Module:
        from benchmark.models.zoo import build_model

        return build_model(self.model_spec, tuple(self.x.shape[1:]), self.num_classes, seed)

    def original(self, seed: int) -> nn.Module:
        model = self.make_model(seed)
        model.load_state_dict(self.original_state)
        return model.eval()

    def fresh_requests(self) -> list[Request]:
        """Private copies of the requests, so that a method that mutates them cannot spoil the next run."""

        def copy_view(v: DataView) -> DataView:
            return DataView(v.x.clone(), v.y.clone(), v.indices.clone())

        return [
            Request(r.step, copy_view(r.forget), copy_view(r.forget_all), copy_view(r.retain), r.num_classes)
            for r in self.requests
        ]

    @property
    def n_train(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_params(self) -> int:
        from benchmark.models.zoo import count_parameters

        return count_parameters(self.make_model(0))


@functools.lru_cache(maxsize=4)
def build_problem(seed: int = 0, n_train: int = 300, random_size: int = 15) -> Problem:
    """Digits subset, MLP 64-8-10 trained 5 epochs, requests: random, random, one whole class."""
    from benchmark.data.snapshot import _to_nchw
    from benchmark.data.sources import load_source
    from benchmark.models.training import train_model

    raw = load_source("digits", split_seed=seed)
    x = _to_nchw(raw.x_train[:n_train], raw.pixel_max)
    y = torch.from_numpy(raw.y_train[:n_train].copy())
    recipe = TrainRecipe(epochs=5, batch_size=64, lr=0.01, weight_decay=1e-3, optimizer="adam")
    spec = {"arch": "mlp", "hidden": [8]}
    stub = Problem(x, y, raw.num_classes, recipe, spec, {}, ())
    model = train_model(stub.make_model(seed), x, y, recipe, seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    rng = np.random.default_rng(seed)
    order = rng.permutation(n_train)
    deleted = [np.sort(order[:random_size]), np.sort(order[random_size : 2 * random_size])]
    gone = np.concatenate(deleted)
    remaining = np.setdiff1d(np.arange(n_train), gone)
    cls = int(rng.choice(np.unique(y.numpy()[remaining])))
    deleted.append(remaining[y.numpy()[remaining] == cls])

    def view(idx: np.ndarray) -> DataView:
        t = torch.as_tensor(np.sort(idx), dtype=torch.long)
        return DataView(x[t].clone(), y[t].clone(), t)

    requests = []
    for k in range(len(deleted)):
        union = np.concatenate(deleted[: k + 1])
        requests.append(
            Request(
                step=k + 1,
                forget=view(deleted[k]),
                forget_all=view(union),
                retain=view(np.setdiff1d(np.arange(n_train), union)),
                num_classes=raw.num_classes,
            )
        )
    return Problem(x, y, raw.num_classes, recipe, spec, state, tuple(requests))


# --------------------------------------------------------------------------------------------------------
# the test-data guard


class TestDataGuard:
    """While active, every known road to the test split raises :class:`TestDataAccessError` (logged)."""

    __test__ = False

    def __init__(self) -> None:
        self.violations: list[str] = []

    def _deny(self, what: str) -> TestDataAccessError:
        self.violations.append(what)
        return TestDataAccessError(f"{what}: unlearning methods must never read test data")

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        from benchmark.data import snapshot as snapshot_mod
        from benchmark.data import sources as sources_mod

        with contextlib.ExitStack() as stack:
            for mod, name in ((snapshot_mod, "load_snapshot"), (sources_mod, "load_source")):
                original = getattr(mod, name)
                stub = self._stub(f"{mod.__name__}.{name}()")
                for holder in _modules_holding(original, name):
                    stack.enter_context(_patched(holder, name, stub))
            for attr in ("x_test", "y_test"):
                stack.enter_context(_patched(snapshot_mod.Snapshot, attr, self._test_property(attr)))
            pq = sys.modules.get("pyarrow.parquet")
            if pq is not None:
                for name in ("read_table", "ParquetFile", "ParquetDataset"):
                    if hasattr(pq, name):
                        stack.enter_context(_patched(pq, name, self._parquet_filter(getattr(pq, name), name)))
            pd = sys.modules.get("pandas")
            if pd is not None and hasattr(pd, "read_parquet"):
                stack.enter_context(_patched(pd, "read_parquet", self._parquet_filter(pd.read_parquet, "pd")))
            yield

    def _stub(self, what: str) -> Callable[..., Any]:
        def deny(*args: Any, **kwargs: Any) -> Any:
            raise self._deny(what)

        return deny

    def _test_property(self, attr: str) -> property:
        def get(obj: Any) -> Any:
            raise self._deny(f"Snapshot.{attr}")

        return property(get)

    def _parquet_filter(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        @functools.wraps(fn)
        def guarded(source: Any = None, *args: Any, **kwargs: Any) -> Any:
            if re.search(r"(^|[/\\])test[^/\\]*\.parquet$", str(source)):
                raise self._deny(f"reading {source}")
            return fn(source, *args, **kwargs)

        return guarded


def _modules_holding(obj: Any, name: str) -> list[Any]:
    """Every loaded module whose global ``name`` is ``obj`` (``from x import name`` makes copies)."""
    holders = []
    for mod in list(sys.modules.values()):
        try:
            if vars(mod).get(name) is obj:
                holders.append(mod)
        except TypeError:  # not a module-like object
            continue
    return holders


@contextlib.contextmanager
def _patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    had = name in vars(owner)
    old = vars(owner).get(name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        if had:
            setattr(owner, name, old)
        else:
            delattr(owner, name)


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
    done = [s for s in trace.steps if s.state is not None]
    if not done:
        why = "not run: no request returned a model"
        return [CheckResult("same_architecture", False, why), CheckResult("finite_weights", False, why)]
    arch = next(((s.step, d) for s in done if (d := _architecture_diff(ref, s.state))), None)
    arch_res = (
        CheckResult("same_architecture", False, f"request {arch[0]}: {arch[1]}")
        if arch
        else CheckResult("same_architecture", True, f"{len(ref)} state_dict entries match at every step")
    )
    bad = next(
        (
            (s.step, key)
            for s in done
            for key, v in s.state.items()
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
    a = [s for s in first.steps if s.state is not None]
    if not a:
        return CheckResult(check, False, "not run: no request returned a model")
    b = [s for s in second.steps if s.state is not None]
    if len(b) != len(a):
        return CheckResult(check, False, f"second run: {second.error or 'a different number of steps'}")
    for s, t in zip(a, b, strict=True):
        for key, v in s.state.items():
            w = t.state.get(key)
            if w is None or w.shape != v.shape or not torch.equal(v, w):
                diff = (
                    float((v.double() - w.double()).abs().max())
                    if w is not None and w.shape == v.shape
                    else float("nan")
                )
                return CheckResult(
                    check,
                    False,
                    f"request {s.step}: {key} differs between two seeded runs (max |diff| {diff:.3g}); "
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


def run_conformance(
    name_or_cls: str | type[Unlearner],
    params: dict[str, Any] | None = None,
    *,
    seed: int = 0,
    budget_s: float = 0.5,
    grace_s: float = 2.0,
) -> list[CheckResult]:
    """Run every conformance check on a method (registered name or class); one result per :data:`CHECKS`.

    ``params`` overrides the method's ``test_params`` (keys of its ``params`` grid).
    """
    cls, registered = _resolve(name_or_cls)
    results = [registered]
    if cls is None:
        return results + [CheckResult(c, False, "not run: method not found") for c in CHECKS[1:]]
    hp = {**cls.test_params, **(params or {})}
    results.append(_check_params(cls, hp))
    if not results[-1].passed:
        return results + [CheckResult(c, False, "not run: cannot instantiate") for c in CHECKS[2:]]
    problem = build_problem(seed)
    results.append(_check_applies(cls, hp, problem.n_params))
    if not results[-1].passed:
        return results + [CheckResult(c, False, "not run: the method skips the model") for c in CHECKS[3:]]

    guard = TestDataGuard()  # active during every unlearn call below
    first = _run_sequence(cls, hp, problem, seed, guard)
    second = _run_sequence(cls, hp, problem, seed, guard)
    budget = _check_budget(cls, hp, problem, seed, guard, budget_s, grace_s)
    results.append(_check_sequence(first, len(problem.requests)))
    results += _check_outputs(first, problem.original_state)
    results.append(_check_mutation(first))
    results.append(_check_test_data(guard))
    results.append(_check_determinism(first, second))
    results.append(budget)
    assert [r.name for r in results] == list(CHECKS)
    return results


def format_results(name: str, results: list[CheckResult]) -> str:
    """The report ``unlearn-bench check-plugin`` prints."""
    lines = [str(r) for r in results]
    n_ok = sum(r.passed for r in results)
    verdict = "conforms" if n_ok == len(results) else "does NOT conform"
    lines.append(f"{name}: {n_ok}/{len(results)} checks passed; {verdict}")
    return "\n".join(lines)
