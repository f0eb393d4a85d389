"""`dvc exp run -S KEY=VALUE` rewrites params.yaml with DVC's own override writer: the shipped file must
survive it (no YAML corruption, no anchor expansion surprises) for any key a user may set."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides

from benchmark.config import parse_params

ROOT = Path(__file__).resolve().parents[2]

CASES = [
    ("methods.finetune.epochs=[2]", ("methods", "finetune", "epochs"), [2]),
    ("methods.cure_newton.iters=[3]", ("methods", "cure_newton", "iters"), [3]),
    ("suites.digits-mlp.seeds=[0,1,2]", ("suites", "digits-mlp", "seeds"), [0, 1, 2]),
    ("protocols.memorized.pool=0.05", ("protocols", "memorized", "pool"), 0.05),
    ("grid=full", ("grid",), "full"),
    ("executor.kind=local", ("executor", "kind"), "local"),
    ("suites.digits-mlp.population.models=60", ("suites", "digits-mlp", "population", "models"), 60),
]


def _get(d, path):
    for k in path:
        d = d[k]
    return d


@pytest.mark.parametrize(("override", "path", "value"), CASES, ids=[c[0] for c in CASES])
def test_dvc_override_writer_keeps_params_yaml_valid(tmp_path, override, path, value):
    target = tmp_path / "params.yaml"
    shutil.copy(ROOT / "params.yaml", target)
    before = yaml.safe_load(target.read_text())
    apply_overrides(target, [override])
    after = yaml.safe_load(target.read_text())  # raises if DVC corrupted the file
    assert _get(after, path) == value
    expected = copy.deepcopy(before)
    parent = _get(expected, path[:-1]) if len(path) > 1 else expected
    parent[path[-1]] = value
    assert after == expected  # nothing else moved
    parse_params(after)


def test_no_anchors_or_end_of_line_comments_on_lists_of_mappings():
    text = (ROOT / "params.yaml").read_text()
    assert "&" not in text and "*methods" not in text  # DVC expands anchors when it rewrites the file
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if lines[i + 1].strip().startswith("- {"):  # the key above a list of inline mappings
            assert "#" not in line, f"params.yaml line {i + 1}: end-of-line comment before a list of mappings"
