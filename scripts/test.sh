#!/usr/bin/env bash
# Install, then run lint (ruff), the type check (mypy), the whole test suite (unit + integration) and the
# performance gate, offline.
# Arguments go to the first pytest call (e.g. `bash scripts/test.sh -x tests/unit`), which runs in
# PYTEST_WORKERS pytest-xdist workers (default 2); the gate always runs unless PERF_GATE=0.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DVC_NO_ANALYTICS=1
export PATH="$PWD/.venv/bin:$PATH"
ruff check benchmark tests scripts
mypy benchmark  # settings in pyproject.toml [tool.mypy]
# two pytest-xdist workers (one per core here; PYTEST_WORKERS=0 runs in one process), one test file per
# worker at a time: module-scoped fixtures (a DVC repository built once per file) are not built twice, and
# tests/conftest.py hands the longest files out first. When the performance gate follows, the tests that
# hold a `benchmark` fixture run there (timed) instead of here too (--benchmark-skip: reported as skipped)
skip_bench=()
if [ "${PERF_GATE:-1}" != 0 ]; then skip_bench=(--benchmark-skip); fi
python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "${skip_bench[@]}" "$@"
if [ "${PERF_GATE:-1}" != 0 ]; then
  # timing ratios from one run of the benchmarks vs tests/benchmarks/targets.yaml (never absolute seconds)
  # a ratio over target is measured once more before it fails the run (a real regression fails twice)
  mkdir -p .benchmarks
  bench() {
    python -m pytest tests/benchmarks -q --benchmark-enable --benchmark-only \
      --benchmark-json=.benchmarks/ci.json --benchmark-columns=min,mean,rounds
  }
  bench
  if ! python scripts/perf_gate.py .benchmarks/ci.json; then
    echo "perf gate: measuring again" >&2
    bench
    python scripts/perf_gate.py .benchmarks/ci.json
  fi
fi
