"""Named presets: YAML overlays on ``params.yaml`` for runs larger than the default pipeline.

A preset ``NAME`` is ``presets/NAME.yaml`` at the repository root. :func:`apply_preset` merges it into the
parameters — mappings key by key, recursively; any other value (lists included) replaced; a key set to
``null`` removed (as in JSON Merge Patch, RFC 7386), so a preset can drop the default suites and datasets —
and the result is validated like ``params.yaml`` before anything is written.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from benchmark.config import ConfigError, parse_params, read_yaml


def merge(base: Any, overlay: Any) -> Any:
    """``overlay`` on ``base``: mappings merged key by key (recursively), a key whose overlay value is None
    removed, everything else replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = copy.deepcopy(base)
        for k, v in overlay.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge(out[k], v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(overlay)


def available_presets(root: Path) -> list[str]:
    return sorted(p.stem for p in (Path(root) / "presets").glob("*.yaml"))


def apply_preset(name: str, params_path: Path, root: Path = Path(".")) -> dict[str, Any]:
    """params.yaml with preset ``name`` merged in (validated); a ConfigError names any problem."""
    path = Path(root) / "presets" / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(available_presets(root)) or "none"
        raise ConfigError(f"preset {name!r}: no {path}; known presets: {known}")
    merged = merge(read_yaml(Path(params_path)), read_yaml(path))
    parse_params(copy.deepcopy(merged))  # every key checked before anything is written
    return merged
