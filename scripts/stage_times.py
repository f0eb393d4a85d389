"""Filter for `dvc repro` output: prefix each line with the elapsed time and print, at the end, how long each
stage ran (from its "Running stage 'NAME'" line to the next stage's, or to the end)."""

from __future__ import annotations

import re
import sys
import time

STAGE = re.compile(r"Running stage '([^']+)'")


def main() -> int:
    t0 = time.monotonic()
    current: tuple[str, float] | None = None
    spans: list[tuple[str, float]] = []
    for line in sys.stdin:
        now = time.monotonic()
        match = STAGE.search(line)
        if match:
            if current:
                spans.append((current[0], now - current[1]))
            current = (match.group(1), now)
        elapsed = int(now - t0)
        sys.stdout.write(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {line}")
        sys.stdout.flush()
    end = time.monotonic()
    if current:
        spans.append((current[0], end - current[1]))
    if spans:
        print("\nstage timings (wall seconds):")
        for name, secs in spans:
            print(f"  {name:<40} {secs:8.1f}")
        print(f"  {'total':<40} {end - t0:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
