"""Performance gate: ratios of pytest-benchmark timings from one run, against tests/benchmarks/targets.yaml.

    pytest tests/benchmarks --benchmark-enable --benchmark-only --benchmark-json=.benchmarks/run.json
    python scripts/perf_gate.py .benchmarks/run.json [--targets tests/benchmarks/targets.yaml]

Every target is ``stat(numerator) / stat(denominator) · scale ≤ max`` with both timings from the same
JSON (the same machine, the same run), so the gate holds on shared, differently sized machines where an
absolute-seconds baseline would not. Prints a table; exits 1 when a ratio is over its target and 2 when
a benchmark the targets name is missing from the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

DEFAULT_TARGETS = Path(__file__).resolve().parents[1] / "tests" / "benchmarks" / "targets.yaml"


def check(bench_json: dict, targets: dict) -> tuple[list[dict], list[str]]:
    """Rows (name, ratio, max, ok) for each target, and the benchmark names that are missing."""
    stats = {b["name"]: b["stats"] for b in bench_json.get("benchmarks", [])}
    rows, missing = [], []
    for name, t in targets["targets"].items():
        stat = t.get("stat", "min")
        num, den = t["numerator"], t["denominator"]
        absent = [b for b in (num, den) if b not in stats]
        if absent:
            missing += absent
            continue
        ratio = stats[num][stat] / stats[den][stat] * float(t.get("scale", 1.0))
        rows.append({"target": name, "ratio": ratio, "max": float(t["max"]), "ok": ratio <= float(t["max"])})
    return rows, missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench_json", type=Path)
    ap.add_argument("--targets", type=Path, default=DEFAULT_TARGETS)
    args = ap.parse_args(argv)
    for path in (args.bench_json, args.targets):
        if not path.is_file():
            print(f"perf gate: {path} not found", file=sys.stderr)
            return 2
    rows, missing = check(json.loads(args.bench_json.read_text()), yaml.safe_load(args.targets.read_text()))
    for r in rows:
        verdict = "ok" if r["ok"] else "OVER TARGET"
        print(f"{r['target']:45s} {r['ratio']:8.3f}  (max {r['max']:g})  {verdict}")
    if missing:
        names = sorted(set(missing))
        print(f"perf gate: benchmarks missing from {args.bench_json}: {names}", file=sys.stderr)
        return 2
    failed = [r["target"] for r in rows if not r["ok"]]
    if failed:
        print(f"perf gate: over target: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"perf gate: {len(rows)} ratios within target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
