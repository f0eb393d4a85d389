"""The CI performance gate: ratios of timings from one pytest-benchmark run against the targets file."""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def perf_gate(script):
    return script("perf_gate")


def bench(**mins: float) -> dict:
    return {"benchmarks": [{"name": n, "stats": {"min": m, "mean": 2 * m}} for n, m in mins.items()]}


TARGETS = {
    "targets": {
        "hvp": {"numerator": "hvp", "denominator": "grad", "max": 2.2},
        "request": {"numerator": "req", "denominator": "epoch", "scale": 1 / 30, "max": 0.05},
    }
}


def test_ratios_use_the_min_and_the_scale(perf_gate):
    rows, missing = perf_gate.check(bench(hvp=2.0, grad=1.0, req=1.0, epoch=1.0), TARGETS)
    assert missing == []
    assert [(r["target"], round(r["ratio"], 6), r["ok"]) for r in rows] == [
        ("hvp", 2.0, True),
        ("request", round(1 / 30, 6), True),
    ]
    rows, _ = perf_gate.check(bench(hvp=2.5, grad=1.0, req=2.0, epoch=1.0), TARGETS)
    assert [r["ok"] for r in rows] == [False, False]


def test_exit_codes_and_the_default_targets_file(perf_gate, tmp_path, capsys):
    targets = tmp_path / "t.yaml"
    targets.write_text(yaml.safe_dump(TARGETS))
    ok, over, partial = (tmp_path / f"{n}.json" for n in ("ok", "over", "partial"))
    ok.write_text(json.dumps(bench(hvp=2.0, grad=1.0, req=1.0, epoch=1.0)))
    over.write_text(json.dumps(bench(hvp=3.0, grad=1.0, req=1.0, epoch=1.0)))
    partial.write_text(json.dumps(bench(hvp=2.0, grad=1.0)))
    assert perf_gate.main([str(ok), "--targets", str(targets)]) == 0
    assert perf_gate.main([str(over), "--targets", str(targets)]) == 1
    assert "over target: hvp" in capsys.readouterr().err
    assert perf_gate.main([str(partial), "--targets", str(targets)]) == 2
    assert perf_gate.main([str(tmp_path / "none.json"), "--targets", str(targets)]) == 2
    assert "none.json not found" in capsys.readouterr().err
    # the repository's targets name benchmarks that exist in tests/benchmarks
    default = yaml.safe_load(perf_gate.DEFAULT_TARGETS.read_text())
    source = "".join(p.read_text() for p in (ROOT / "tests" / "benchmarks").glob("test_*.py"))
    for t in default["targets"].values():
        for name in (t["numerator"], t["denominator"]):
            assert name.split("[")[0] in source and (
                "[" not in name or name.split("[")[1].rstrip("]") in source
            )
