"""Run a stage's units of work (an original training, a gold retrain, an unlearning cell...) in-process
or as Ray tasks.

A stage lists the units it still has to do (finished work is detected by the caller, from the keyed
artifacts, *before* submission, so it is never recomputed), then hands them to :func:`run_units` with a
top-level function ``fn(run, unit)`` that performs one unit and writes its own outputs atomically.

* ``local``: ``fn`` is called in this process, one unit after another, in the given order.
* ``ray``: one task per unit (``ray.remote(max_retries=..., retry_exceptions=True)``). A task receives only
  small picklable arguments (the unit, and once per stage the parsed params + the repository root through
  the object store); each worker process reopens the suite once and caches it. Results are collected with
  ``ray.wait`` as they finish. A worker that dies (killed, out of memory) or a unit that raises is re-run
  up to ``max_retries`` times by Ray; after that the unit is a failed :class:`UnitResult` carrying the
  reason, and the stage goes on until its whole grid is done.

Devices: the driver resolves the suite's device once (``run.device``: ``auto`` becomes ``cuda`` or ``cpu``
here, and the cache keys are computed from it). Every task carries that resolved device and the driver's
``data_key``; a worker opens its suite pinned to it (never resolving ``auto`` again) and fails the unit with
one line when it has no GPU for a GPU suite or its keys would differ from the driver's. Tasks of a GPU suite
reserve ``executor.gpus_per_task`` GPUs each (default 1; a fraction packs several units on one GPU), tasks of
a CPU suite none; a GPU suite on a Ray cluster without GPUs fails at once instead of waiting forever.

Every seed flows from the unit's own arguments and each unit sets its torch thread count, so both
backends write bit-identical artifacts on CPU (only timings and resource peaks differ). With ``ray``,
worker output is not forwarded to the driver (``log_to_driver=False``: the progress shown is the
driver's); it lands in Ray's session logs (``/tmp/ray/session_latest/logs``). When joining a cluster
(``address``), its nodes need this package installed and the repository root at the same path.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from benchmark.config import ExecutorConfig, Params
from benchmark.runner.device import DeviceError

if TYPE_CHECKING:
    from benchmark.runner.suite import SuiteRun

__all__ = [
    "ExecutorConfig",
    "Unit",
    "UnitFn",
    "UnitResult",
    "UnitsFailed",
    "ensure_ray",
    "raise_failures",
    "run_stage",
    "run_units",
    "task_gpus",
]


@dataclass(frozen=True)
class Unit:
    """One picklable unit of work: ``kind`` (original, gold, cell...), a ``key`` stable across runs and
    unique within its stage (used in progress and error messages), the suite it belongs to, and the small
    arguments ``fn`` needs (seeds, protocol, step, cache key...)."""

    kind: str
    key: str
    suite: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnitResult:
    """What became of one unit: ``value`` is what ``fn`` returned (``ok``), ``error`` the reason it did
    not (``"ExceptionType: message"``); ``wall_s`` is the successful attempt's time inside ``fn`` (NaN
    for a failure)."""

    unit: Unit
    ok: bool
    value: Any = None
    error: str = ""
    wall_s: float = float("nan")


UnitFn = Callable[[Any, Unit], Any]  # fn(run: SuiteRun | None, unit) -> a small picklable value


class UnitsFailed(RuntimeError):
    """Some units of a stage failed after their retries; everything else finished and was kept."""


def raise_failures(results: Sequence[UnitResult], desc: str) -> None:
    """Raise :class:`UnitsFailed` listing the failed units (after the grid is done), if any."""
    bad = [r for r in results if not r.ok]
    if bad:
        shown = "; ".join(f"{r.unit.key}: {r.error}" for r in bad[:5])
        more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
        raise UnitsFailed(f"{desc}: {len(bad)} of {len(results)} units failed: {shown}{more}")


def run_stage(
    run: SuiteRun,
    units: Sequence[Unit],
    fn: UnitFn,
    desc: str,
    executor: ExecutorConfig | None = None,
    on_result: Callable[[UnitResult], None] | None = None,
) -> list[UnitResult]:
    """A suite stage's units through ``executor`` (default: the suite's ``params.executor``); once the whole
    grid is done, :class:`UnitsFailed` if any unit failed (:func:`raise_failures`)."""
    results = run_units(units, fn, executor=executor or run.params.executor, desc=desc, run=run,
                        on_result=on_result)  # fmt: skip
    raise_failures(results, desc)
    return results


def run_units(
    units: Sequence[Unit],
    fn: UnitFn,
    *,
    executor: ExecutorConfig,
    desc: str,
    run: SuiteRun | None = None,
    on_result: Callable[[UnitResult], None] | None = None,
) -> list[UnitResult]:
    """Perform every unit with ``fn(run, unit)``; return one result per unit, in the order of ``units``.

    ``fn`` must be a top-level (importable) function. ``run`` is the caller's suite: passed as is to
    ``fn`` in local mode, reopened (once per worker process) from its params and root with Ray; None
    when the units need no suite. ``on_result`` is called in this process as each unit finishes.
    Blocks until every unit has finished or failed; a failure never stops the others.
    """
    units = list(units)
    if run is not None and any(u.suite != run.suite.name for u in units):
        raise ValueError(f"run_units: every unit must belong to suite {run.suite.name!r}")
    if not units:
        return []
    progress = _Progress(len(units), desc)
    try:
        if executor.kind == "local" or executor.address is None and len(units) < executor.min_units:
            return _run_local(units, fn, executor, run, progress, on_result)
        if executor.kind == "ray":
            return _run_ray(units, fn, executor, run, progress, on_result)
        raise ValueError(f"unknown executor kind {executor.kind!r}")
    finally:
        progress.close()


# --- shared --------------------------------------------------------------------------------------------


def task_gpus(cfg: ExecutorConfig, device: torch.device | None) -> float:
    """GPUs one Ray task reserves: ``cfg.gpus_per_task`` (default 1) when the driver resolved the suite to
    CUDA, 0 for a CPU suite or units without a suite (``device`` None)."""
    if device is None or device.type != "cuda":
        return 0.0
    return 1.0 if cfg.gpus_per_task is None else cfg.gpus_per_task


def _threads(cfg: ExecutorConfig) -> int:
    return cfg.torch_threads or int(os.environ.get("UNLEARN_BENCH_THREADS", "1"))


def _reason(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")


class _Progress:
    """A tqdm bar on a terminal; otherwise a log line every ``max(1, total // 20)`` units or 30 s."""

    def __init__(self, total: int, desc: str, every_s: float = 30.0) -> None:
        self.total, self.desc, self.every_s = total, desc, every_s
        self.done = self.failed = 0
        self.t0 = self.last = time.monotonic()
        self.every_n = max(1, total // 20)
        self.bar = tqdm(total=total, desc=desc, unit="unit") if sys.stderr.isatty() else None

    def update(self, result: UnitResult) -> None:
        self.done += 1
        self.failed += not result.ok
        if self.bar is not None:
            self.bar.update(1)
            if self.failed:
                self.bar.set_postfix(failed=self.failed)
        elif self.done % self.every_n == 0 or self.done == self.total:
            self.log()
        else:
            self.tick()

    def tick(self) -> None:
        if self.bar is None and time.monotonic() - self.last >= self.every_s:
            self.log()

    def log(self) -> None:
        self.last = time.monotonic()
        print(
            f"{self.desc}: {self.done}/{self.total} units done, {self.failed} failed, "
            f"{self.last - self.t0:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _finish(
    result: UnitResult, progress: _Progress, on_result: Callable[[UnitResult], None] | None
) -> UnitResult:
    progress.update(result)
    if on_result is not None:
        on_result(result)
    return result


# --- local ---------------------------------------------------------------------------------------------


def _run_local(
    units: list[Unit],
    fn: UnitFn,
    cfg: ExecutorConfig,
    run: SuiteRun | None,
    progress: _Progress,
    on_result: Callable[[UnitResult], None] | None,
) -> list[UnitResult]:
    """In-process, in order; an exception is retried like a Ray task (``max_retries`` times)."""
    before = torch.get_num_threads()
    torch.set_num_threads(_threads(cfg))
    try:
        results = []
        for unit in units:
            for _ in range(cfg.max_retries + 1):
                t0 = time.perf_counter()
                try:
                    result = UnitResult(unit, True, fn(run, unit), wall_s=time.perf_counter() - t0)
                    break
                except Exception as exc:
                    result = UnitResult(unit, False, error=_reason(exc))
            results.append(_finish(result, progress, on_result))
        return results
    finally:
        torch.set_num_threads(before)


# --- ray -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SuiteSource:
    """What a worker needs to reopen the caller's suite: ``device`` is the driver's resolved device
    (``str(run.device)``), ``data_key`` the driver's (the worker's must match); ``digest`` keys the
    per-worker cache."""

    params: Params
    root: str
    digest: str
    device: str = "cpu"
    data_key: str = ""


_WORKER_SUITES: dict[tuple[str, str], SuiteRun] = {}  # (digest, suite) -> SuiteRun, per worker process
_REMOTE: dict[str, Any] = {}  # the ray.remote wrapper of _ray_task, made once per process


def _worker_suite(source: _SuiteSource | None, suite: str) -> SuiteRun | None:
    if source is None:
        return None
    key = (source.digest, suite)
    if key not in _WORKER_SUITES:
        from benchmark.runner.suite import open_suite

        run = open_suite(source.params, suite, Path(source.root), device=source.device)
        if run.data_key != source.data_key:  # run.device raises DeviceError first on a worker without a GPU
            raise DeviceError(
                f"suites.{suite}: this worker's cache keys differ from the driver's (data {run.data_key} vs "
                f"{source.data_key}): another dataset snapshot under {source.root}?"
            )
        if len(_WORKER_SUITES) >= 2:  # a worker serves one stage at a time: keep memory bounded
            _WORKER_SUITES.clear()
        _WORKER_SUITES[key] = run
    return _WORKER_SUITES[key]


def _ray_task(fn: UnitFn, source: _SuiteSource | None, unit: Unit, threads: int) -> tuple[Any, float]:
    """The body of one Ray task: runs in a worker process."""
    torch.set_num_threads(threads)
    run = _worker_suite(source, unit.suite)
    t0 = time.perf_counter()
    value = fn(run, unit)
    return value, time.perf_counter() - t0


def ensure_ray(cfg: ExecutorConfig) -> None:
    """Start (or join) Ray once per process: a private local instance of ``num_cpus`` CPUs unless
    ``address`` names a cluster. Later calls reuse whatever is running."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a declared dependency
        raise RuntimeError("executor kind 'ray' needs the ray package: pip install 'ray>=2.40'") from exc
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "ignore_reinit_error": True,
        "logging_level": logging.WARNING,
    }
    if cfg.address is None:
        # "local": never attach to a cluster some other user started with `ray start` on this machine
        kwargs.update(address="local", num_cpus=cfg.num_cpus or os.cpu_count() or 1)
        kwargs["object_store_memory"] = 256 * 2**20  # units exchange only small arguments and results
    else:
        kwargs["address"] = cfg.address
    # Ray announces the token authentication it turns on by default for a new local instance (a WARNING
    # naming RAY_AUTH_MODE), once per stage of a run; the protection stays, the notice is silenced (any
    # other warning of that logger, e.g. authentication turned *off*, still shows)
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    notice.addFilter(_token_auth_enabled_notice)
    try:
        ray.init(**kwargs)
    finally:
        notice.removeFilter(_token_auth_enabled_notice)


def _token_auth_enabled_notice(record: logging.LogRecord) -> bool:
    """Logging filter: False (drop) for Ray's notice that it enabled token authentication by default."""
    return not record.getMessage().startswith("Token authentication is enabled")


def _check_gpus(run: SuiteRun | None, per_task: float, total: float) -> None:
    """A task that asks for more GPUs than the whole cluster has would wait forever: fail now, one line."""
    if total < per_task:
        name, device = (run.suite.name, run.device) if run is not None else ("?", "cuda")
        raise DeviceError(
            f"suites.{name}.device: resolved to {device} here, so each Ray "
            f"task needs {per_task:g} GPU(s), but the Ray cluster has {total:g} (give it GPUs, or set the "
            "suite's device to cpu)"
        )


def _run_ray(
    units: list[Unit],
    fn: UnitFn,
    cfg: ExecutorConfig,
    run: SuiteRun | None,
    progress: _Progress,
    on_result: Callable[[UnitResult], None] | None,
) -> list[UnitResult]:
    import ray
    from ray.exceptions import RayTaskError

    device = run.device if run is not None else None  # resolved here, once (DeviceError: no CUDA here)
    gpus = task_gpus(cfg, device)
    ensure_ray(cfg)
    if gpus > 0:
        _check_gpus(run, gpus, float(ray.cluster_resources().get("GPU", 0.0)))
    if "task" not in _REMOTE:
        _REMOTE["task"] = ray.remote(_ray_task)
    task = _REMOTE["task"].options(
        num_cpus=cfg.cpus_per_task,
        num_gpus=gpus,
        max_retries=cfg.max_retries,
        retry_exceptions=True,
    )
    source = None
    if run is not None:
        root = str(Path(run.layout.root).resolve())
        digest = hashlib.sha256(pickle.dumps((run.params, root, run.data_key))).hexdigest()[:16]
        source = ray.put(_SuiteSource(run.params, root, digest, str(run.device), run.data_key))
    threads = _threads(cfg)
    pending = {task.remote(fn, source, unit, threads): i for i, unit in enumerate(units)}
    results: list[UnitResult | None] = [None] * len(units)
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=5.0)
            if ready:  # collect everything else that is ready too
                seen = set(ready)
                rest = [r for r in pending if r not in seen]
                ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0] if rest else []
            for ref in ready:
                i = pending.pop(ref)
                try:
                    value, wall = ray.get(ref)
                    result = UnitResult(units[i], True, value, wall_s=wall)
                except RayTaskError as exc:  # fn raised on its last attempt
                    cause = exc.cause if getattr(exc, "cause", None) is not None else exc
                    result = UnitResult(units[i], False, error=_reason(cause))
                except ray.exceptions.RayError as exc:  # the worker died on its last attempt, ...
                    result = UnitResult(units[i], False, error=_reason(exc))
                results[i] = _finish(result, progress, on_result)
            progress.tick()
    except BaseException:  # KeyboardInterrupt: stop the rest; finished units are on disk already
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return [r for r in results if r is not None]
