"""Shared fixtures. Tests never touch the network: the HF hub is forced offline."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# first: importing the package pins the CPU kernels, and OpenBLAS's only before torch loads NumPy
import benchmark  # noqa: E402, F401

# isort: split
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ.get("UNLEARN_BENCH_THREADS", "1")))


SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
# scripts/test.sh runs two pytest-xdist workers that take one test file at a time in collection order: the
# longest files (`--durations`: each runs whole DVC DAGs) go first so that the short files fill in beside
# them and both workers finish together (handed out last, one of them kept a core alone for minutes)
LONGEST_FIRST = ("tests/integration/test_presets_dag.py", "tests/integration/test_pipeline.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move the files in LONGEST_FIRST to the front, in that order; every other test keeps its place."""

    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def script() -> Callable[[str], ModuleType]:
    """``script(name)``: ``scripts/<name>.py`` imported as a module (the scripts are not a package)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load
