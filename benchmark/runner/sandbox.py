"""Run unlearning cells in a child process that can be killed: the hard time limit of a cell.

A method is arbitrary Python (a plugin can do anything its user can), and the time budget it is given
(``budget_s``) is cooperative: :meth:`~benchmark.unlearners.base.Context.check_budget`. A method that never
calls it, sleeps, or loops in native code would hold the grid forever. So every cell runs in a long-lived
child process (one per process that runs cells: the CLI, or each Ray worker), started once with
``python -m benchmark.runner.sandbox`` and fed cells over a pipe; it reopens the suite once and keeps it,
pinned to the parent's resolved device (``auto`` is never resolved again in the child).

* The child reports ``started`` when the cell begins and each request's row as it finishes it.
* The parent waits at most ``budget_s + GRACE_S`` seconds from ``started`` (no limit without a budget).
  Past that deadline it kills the child (SIGKILL), writes the cell's ``result.json`` itself: the finished
  requests' rows, a ``timeout`` row for the request that was running, ``not run`` rows for the rest
  (:func:`benchmark.runner.cells.write_timeout`), and starts a fresh child for the next cell.
* A child that dies (segfault, out-of-memory kill) fails only its cell, with the signal as the reason.
* A child stopped by SIGTERM, SIGINT or SIGHUP (:data:`INTERRUPTS`: the run itself is being stopped, e.g.
  Ctrl-C, ``kill``, a session or job ending) is an interruption, not the method's failure: its cell gets a
  ``failed`` row saying so, marked ``interrupted`` in ``result.json``, which is never a cached result, so the
  next run re-runs the cell (without this mark a resumed run reused the failure: seven MNIST-5k rows of an
  interrupted and resumed run stayed ``WorkerDied ... signal 15``).
* With a memory limit (``suites.S.memory_mb``), the parent reads the child's resident set size
  (``VmRSS`` in ``/proc/PID/status``, Linux) every :data:`MEMORY_POLL_S` seconds while a cell runs and kills
  it past the limit: a ``failed`` row whose reason gives both figures. The limit covers the whole child
  (interpreter, torch, the suite's data: a few hundred MB before any method runs), not only the method's
  own allocations; allocations between two polls can overshoot it.

The child computes exactly what the in-process code computes: same function (:func:`run_cell`), same
seeds (set from the cell), and the parent's torch intra-op thread count, so CPU results are bit-identical.
The method's class is sent by reference (module + name), so a method defined in a test module or a plugin
runs too; the child gets the parent's ``sys.path``. Set ``UNLEARN_BENCH_ISOLATE=0`` to run cells in-process
(e.g. under a debugger): then only the cooperative budget applies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from benchmark.runner.suite import SuiteRun

GRACE_S = 2.0  # past the budget, before the kill: lets a cooperative method raise BudgetExceeded itself
MEMORY_POLL_S = 0.2  # how often the parent reads a running cell's resident memory (with a memory limit)
INTERRUPTS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)  # a child ended by one: the run was stopped


def resident_mb(pid: int) -> float | None:
    """Resident set size of process ``pid`` in MB (``VmRSS``), or None where /proc does not tell."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def isolated() -> bool:
    """True unless ``UNLEARN_BENCH_ISOLATE=0``: cells run in the killable child process."""
    return os.environ.get("UNLEARN_BENCH_ISOLATE", "1") != "0"


@dataclass
class Outcome:
    """What became of one cell in the child: ``result`` (its result dict) when it finished; else ``rows``
    finished before the kill or death, ``elapsed_s`` since it started and the ``reason``."""

    result: dict[str, Any] | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    reason: str = ""
    timed_out: bool = False
    interrupted: bool = False  # the child was stopped by one of INTERRUPTS: re-run the cell next time


class Sandbox:
    """One child process running cells one at a time; restarted after a kill or a crash."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.send: Connection | None = None
        self.recv: Connection | None = None
        self.hashes: dict[str, str] = {}  # method -> code hash the child has imported


    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmark.runner.sandbox", str(to_child_r), str(from_child_w)],
            pass_fds=(to_child_r, from_child_w),
            env=env,
            stdin=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.send = Connection(to_child_w, readable=False)
        self.recv = Connection(from_child_r, writable=False)

    def close(self) -> None:
        """Stop the child (killed if it is still running a cell)."""
        for conn in (self.send, self.recv):
            if conn is not None:
                conn.close()
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
        self.proc = self.send = self.recv = None

    def run_cell(
        self, run: SuiteRun, cell: Any, key: str, limit_s: float | None, memory_mb: float | None = None
    ) -> Outcome:
        """Run ``cell`` in the child; kill it ``limit_s`` seconds after the cell started (None: no limit), or
        as soon as its resident memory exceeds ``memory_mb`` (None: no limit)."""
        from benchmark.runner.method_code import method_code_hash
        from benchmark.unlearners.base import get_unlearner

        cls = get_unlearner(cell.method)
        digest = method_code_hash(cls)
        if self.hashes.get(cell.method, digest) != digest:
            self.close()  # the method's code changed in this process (a reload): the child has the old one
        if self.proc is None or self.proc.poll() is not None:
            self.close()
            self.hashes = {}
            self._start()
        self.hashes[cell.method] = digest
        assert self.send is not None and self.recv is not None
        job = {
            "params": run.params,
            "root": str(Path(run.layout.root).resolve()),
            "suite": run.suite.name,
            "device": str(run.device),  # the parent's resolved device: the child never resolves `auto` again
            "cell": cell,
            "key": key,
            "method_cls": cls,
            "threads": torch.get_num_threads(),
        }
        self.send.send(job)
        rows: list[dict[str, Any]] = []
        started: float | None = None
        while True:
            if started is not None:
                deadline = None if limit_s is None else started + limit_s
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if memory_mb is None:
                    ready = self.recv.poll(left)
                else:
                    ready = self.recv.poll(MEMORY_POLL_S if left is None else min(MEMORY_POLL_S, left))
                    rss = resident_mb(self.proc.pid) if self.proc is not None else None
                    if rss is not None and rss > memory_mb:
                        elapsed = time.monotonic() - started
                        self.close()  # SIGKILL: over its memory limit
                        reason = f"memory limit: killed at {rss:.0f} MB resident (limit {memory_mb:g} MB)"
                        return Outcome(None, rows, elapsed, reason)
                if not ready:
                    if deadline is None or time.monotonic() < deadline:
                        continue  # nothing yet: read the memory again
                    assert limit_s is not None
                    elapsed = time.monotonic() - started
                    self.close()  # SIGKILL: the method never returned
                    reason = (
                        f"hard time limit: killed after {elapsed:.1f} s (budget {limit_s - GRACE_S:g} s + "
                        f"{GRACE_S:g} s grace) without returning"
                    )
                    return Outcome(None, rows, elapsed, reason, timed_out=True)
            else:
                self.recv.poll(None)  # a message, or EOF when the child dies
            try:
                kind, *payload = self.recv.recv()
            except (EOFError, OSError):  # the child died
                code = self.proc.wait() if self.proc is not None else None
                self.close()
                elapsed = time.monotonic() - started if started is not None else 0.0
                if code is not None and -code in INTERRUPTS:
                    name = signal.Signals(-code).name
                    reason = (
                        f"interrupted: the cell's process was stopped ({name}); "
                        "the next run re-runs the cell"
                    )
                    return Outcome(None, rows, elapsed, reason, interrupted=True)
                how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                return Outcome(None, rows, elapsed, f"WorkerDied: the cell's process ended ({how})")
            if kind == "started":
                started = time.monotonic()
            elif kind == "row":
                rows.append(payload[0])
            elif kind == "done":
                return Outcome(payload[0])
            else:  # "error": the cell raised outside the method's own error handling
                raise SandboxError(payload[0])


class SandboxError(RuntimeError):
    """The cell raised outside the method (e.g. writing its files); the message is the child's reason."""


_SANDBOX: dict[str, Sandbox] = {}  # one per process


def sandbox() -> Sandbox:
    """This process's sandbox (started on first use, stopped at exit)."""
    if "box" not in _SANDBOX:
        import atexit

        _SANDBOX["box"] = Sandbox()
        atexit.register(_SANDBOX["box"].close)
    return _SANDBOX["box"]


# --- the child ------------------------------------------------------------------------------------------


def _child(fd_in: int, fd_out: int) -> None:
    from benchmark.runner.cells import run_cell
    from benchmark.runner.executor import _reason
    from benchmark.runner.suite import open_suite
    from benchmark.unlearners.base import _REGISTRY, get_unlearner, register_unlearner

    recv, send = Connection(fd_in, writable=False), Connection(fd_out, readable=False)
    suites: dict[tuple[str, str, str], SuiteRun] = {}
    while True:
        try:
            job = recv.recv()
        except EOFError:  # the parent closed the pipe (or died)
            return
        torch.set_num_threads(job["threads"])
        cls, name = job["method_cls"], job["cell"].method
        try:
            known = get_unlearner(name)
        except KeyError:
            known = None
        if known is not cls:  # defined outside the package (a test module): register it here too
            _REGISTRY.pop(name, None)
            register_unlearner(name)(cls)
        where = (job["root"], job["suite"], job["device"])
        try:
            if where not in suites:
                suites.clear()
                root, device = Path(job["root"]), job["device"]
                suites[where] = open_suite(job["params"], job["suite"], root, device=device)
            send.send(("started",))
            report = lambda row: send.send(("row", row))  # noqa: E731
            result = run_cell(suites[where], job["cell"], job["key"], on_row=report)
        except Exception as exc:
            send.send(("error", _reason(exc)))
            continue
        send.send(("done", result))


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]))
