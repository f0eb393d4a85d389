"""The test-data guard: while a method unlearns, every known road to the test split raises and is logged.

Guarded: :func:`benchmark.data.snapshot.load_snapshot` and :func:`benchmark.data.sources.load_source`
(in every module that imported them by name), the ``x_test``/``y_test`` tensors of any
:class:`~benchmark.data.snapshot.Snapshot`, and reading a ``test*.parquet`` file through pyarrow or pandas.
Each attempt raises :class:`TestDataAccessError` and is recorded in ``violations``, so a method that
swallows the exception is still caught.
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any


class TestDataAccessError(RuntimeError):
    """Raised when a method reaches for the test split while unlearning."""

    __test__ = False  # not a pytest test class


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
