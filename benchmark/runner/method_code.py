"""A method's code hash, memoised per process.

:meth:`benchmark.unlearners.base.Unlearner.code_hash` parses the method's file and every ``benchmark``
module it uses (about 50 ms); the unlearn, tune, population and evaluate stages need it for every cell,
trial and member key, so a stage over ~400 cached cells spent ~20 s re-parsing unchanged files. The memo
is per class object and ``code_hash`` implementation (a reloaded plugin is a new class) and is dropped when the method's own file changes
on disk (its mtime or size); a change to a helper module shows in the next process, i.e. the next stage.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from benchmark.unlearners.base import Unlearner, get_unlearner

_MEMO: dict[tuple[type, object], tuple[tuple[int, int], str]] = {}


def method_code_hash(method: str | type[Unlearner]) -> str:
    """``code_hash()`` of the method (a registered name or the class), computed once per process and file
    version."""
    cls = get_unlearner(method) if isinstance(method, str) else method
    try:
        st = Path(inspect.getfile(cls)).stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except (OSError, TypeError):  # no file (a class made at run time): never memoised
        return cls.code_hash()
    key = (cls, getattr(cls.code_hash, "__func__", cls.code_hash))  # a patched code_hash is a new entry
    hit = _MEMO.get(key)
    if hit is None or hit[0] != stamp:
        hit = _MEMO[key] = (stamp, cls.code_hash())
    return hit[1]
