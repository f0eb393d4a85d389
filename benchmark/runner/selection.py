"""Read the tuning stage's selections (``tuning/<suite>.yaml``) for the unlearn grid.

The selection is per protocol: :func:`load_selection` maps (protocol, method) to a :class:`Selection`.
A method without an entry (not tuned yet, or no ``tuning:`` section) runs the configurations ``methods:``
lists for it, else its built-in default (:func:`benchmark.runner.cells.configured_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Selection:
    """One selected configuration: every hyperparameter, the tuned ones, the tuning trials and seconds."""

    hparams: dict[str, Any]
    tuned: tuple[str, ...]
    trials: int
    wall_s: float
    code_hash: str = ""
    feasible: bool | None = None  # met tuning.max_retain_drop (None: no constraint recorded)


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: ~10x faster on these files
_MEMO: dict[tuple[str, int, int], dict[tuple[str, str], Selection]] = {}


def load_selection(path: Path) -> dict[tuple[str, str], Selection]:
    """(protocol, method) -> :class:`Selection` from a ``tuning/<suite>.yaml``; empty if there is none.
    Memoised per process on the file's path, mtime and size (the file holds every trial: ~0.5 s to parse)."""
    path = Path(path)
    if not path.exists():
        return {}
    st = path.stat()
    stamp = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if stamp not in _MEMO:
        _MEMO[stamp] = _parse_selection(path)
    return dict(_MEMO[stamp])


def _parse_selection(path: Path) -> dict[tuple[str, str], Selection]:
    doc = yaml.load(path.read_text(), Loader=_LOADER) or {}
    out = {}
    for protocol, methods in (doc.get("protocols") or {}).items():
        for method, e in (methods or {}).items():
            out[(str(protocol), str(method))] = Selection(
                hparams=dict(e["selected"]),
                tuned=tuple(e.get("tuned") or ()),
                trials=int(e["n_trials"]),
                wall_s=float(e["cost"]["wall_s"]),
                code_hash=str(e.get("code_hash", "")),
                feasible=e.get("feasible"),
            )
    return out


def selected_label(method: str, sel: Selection, taken: set[str]) -> str:
    """The params_id of a selected configuration that is not in the method's configured grid: the method
    with its tuned parameters (``finetune[epochs=4,lr=0.0012]``); ``[default]`` when nothing is tuned;
    ``,selected`` appended if that name is already used by a grid configuration."""
    label = ",".join(f"{k}={sel.hparams[k]}" for k in sel.tuned) or "default"
    pid = f"{method}[{label}]"
    return pid if pid not in taken else f"{method}[{label},selected]"
