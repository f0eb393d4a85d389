"""Third-party methods for real: an entry-point plugin found through a ``*.dist-info`` on ``sys.path``
(no pip install), a broken one reported by name, and a new method running only its own cells."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.config import parse_params
from benchmark.plugins import CHECKS, run_conformance
from benchmark.runner.artifacts import Layout
from benchmark.runner.cells import expand_cells, run_unlearning
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.training import train_gold, train_originals
from benchmark.unlearners.base import (
    available_unlearners,
    get_unlearner,
    plugin_errors,
    reset_discovery,
)

PLUGIN_SRC = '''\
"""An external unlearning method, shipped in its own distribution."""

import torch
from torch import nn

from benchmark.unlearners.base import Unlearner


class AcmeShrink(Unlearner):
    """w+ = (1 - rate) w, then a few seeded SGD steps on the retain set."""

    params = {"rate": [0.01, 0.1], "steps": [5]}
    test_params = {"steps": 1}

    def unlearn(self, model, request, ctx):
        gen = ctx.generator(request.step)
        opt = torch.optim.SGD(model.parameters(), lr=ctx.recipe.lr)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1 - self.hparams["rate"])
        for _ in range(self.hparams["steps"]):
            ctx.check_budget()
            idx = torch.randint(len(request.retain), (32,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(request.retain.x[idx]), request.retain.y[idx]).backward()
            opt.step()
            ctx.counters.grad_samples += 32
        return model
'''


def write_dist(site: Path, dist: str, version: str, modules: dict[str, str], entry_points: dict[str, str]):
    """A minimal installed distribution: the modules plus ``<dist>-<version>.dist-info`` (what pip writes)."""
    for name, src in modules.items():
        (site / f"{name}.py").write_text(src)
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[benchmark.unlearners]\n{eps}\n")
    rows = []
    for name in modules:
        data = (site / f"{name}.py").read_bytes()
        rows.append(f"{name}.py,sha256={hashlib.sha256(data).hexdigest()},{len(data)}")
    rows += [f"{info.name}/{f},," for f in ("METADATA", "entry_points.txt", "RECORD")]
    (info / "RECORD").write_text("\n".join(rows) + "\n")
    return info


@pytest.fixture
def site(tmp_path, monkeypatch):
    """tmp_path as a site-packages holding two plugin distributions: one good, one broken."""
    site = tmp_path / "site"
    site.mkdir()
    write_dist(
        site,
        "acme-unlearn",
        "1.2.0",
        {"acme_unlearn": PLUGIN_SRC},
        {"acme_shrink": "acme_unlearn:AcmeShrink"},
    )
    write_dist(
        site,
        "broken-unlearn",
        "0.1",
        {"broken_unlearn": "import no_such_dependency_xyz\n"},
        {"broken_method": "broken_unlearn:Method"},
    )
    available_unlearners()  # the built-ins are discovered before the plugins appear
    monkeypatch.syspath_prepend(str(site))
    reset_discovery()
    yield site
    reset_discovery()
    for mod in ("acme_unlearn", "broken_unlearn", "clash"):
        sys.modules.pop(mod, None)


@pytest.mark.integration
def test_entry_point_plugin_is_discovered_with_origin_and_hash(site, capsys):
    cls = get_unlearner("acme_shrink")
    assert cls.__name__ == "AcmeShrink" and cls.name == "acme_shrink"
    assert cls.origin == "plugin:acme-unlearn"
    digest = cls.code_hash()
    assert len(digest) == 16 and int(digest, 16) >= 0
    # the hash covers the file, the distribution's version and its RECORD
    assert digest != hashlib.sha256((site / "acme_unlearn.py").read_bytes()).hexdigest()[:16]

    assert main(["methods"]) == 0  # `unlearn-bench methods`
    lines = capsys.readouterr().out.splitlines()
    row = next(line for line in lines if line.startswith("acme_shrink "))
    assert "plugin:acme-unlearn" in row and digest in row and "rate=[0.01, 0.1]" in row
    broken = next(line for line in lines if line.startswith("broken_method "))
    assert "BROKEN PLUGIN" in broken and "no_such_dependency_xyz" in broken


@pytest.mark.integration
def test_broken_plugin_is_reported_and_the_others_still_load(site):
    errors = plugin_errors()
    assert set(errors) == {"broken_method"}
    assert (
        errors["broken_method"].startswith("ModuleNotFoundError")
        and "no_such_dependency_xyz" in errors["broken_method"]
    )
    methods = available_unlearners()
    assert {"original", "finetune", "cure_newton", "acme_shrink"} <= set(methods)
    assert "broken_method" not in methods
    with pytest.raises(KeyError, match="plugin failed to load: ModuleNotFoundError"):
        get_unlearner("broken_method")


@pytest.mark.integration
def test_plugin_passes_the_conformance_checks(site, capsys):
    results = run_conformance("acme_shrink")
    assert all(r.passed for r in results), "\n".join(map(str, results))
    assert main(["check-plugin", "acme_shrink"]) == 0
    out, n = capsys.readouterr().out, len(CHECKS)
    assert f"acme_shrink: {n}/{n} checks passed; conforms" in out
    # the plugin declares no space: it passes, and the report notes that the tuner leaves it alone
    assert "PASS  space_declared       no declared space (not tunable)" in out


@pytest.mark.integration
def test_a_new_version_changes_the_plugin_code_hash(site):
    before = get_unlearner("acme_shrink").code_hash()
    info = site / "acme_unlearn-1.2.0.dist-info"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-unlearn\nVersion: 1.3.0\n")
    assert get_unlearner("acme_shrink").code_hash() != before


@pytest.mark.integration
def test_plugin_name_clash_or_non_class_is_an_error(site):
    (site / "clash.py").write_text(
        "from benchmark.unlearners.finetune import Finetune as Clash\nhelper = len\n"
    )
    write_dist(site, "clash-unlearn", "1.0", {}, {"original": "clash:Clash", "not_a_class": "clash:helper"})
    reset_discovery()
    errors = plugin_errors()
    assert "original" in errors and "already taken" in errors["original"]
    assert get_unlearner("original").origin == "builtin"
    assert get_unlearner("finetune").origin == "builtin"
    assert "not an Unlearner subclass" in errors["not_a_class"]
    assert "acme_shrink" in available_unlearners()


# --------------------------------------------------------------------------------------------------------
# adding a method to a suite runs only that method's cells


def tiny_params(methods: list[str]):
    return parse_params(
        {
            "datasets": {"digits": {"source": "digits"}},
            "protocols": {
                "random": {"kind": "random", "requests": 2, "fraction": 0.02},
                "class": {"kind": "class", "requests": 2},
            },
            "methods": {"finetune": {"epochs": [1]}, "gradient_ascent": {"epochs": [1]}},
            "suites": {
                "t": {
                    "dataset": "digits",
                    "model": {"arch": "logreg"},
                    "train": {"epochs": 2, "batch_size": 128, "lr": 0.01},
                    "protocols": ["random", "class"],
                    "seeds": [0],
                    "methods": methods,
                }
            },
        }
    )


def results(root: Path) -> dict[Path, tuple[int, str]]:
    return {
        p: (p.stat().st_mtime_ns, p.read_text()) for p in sorted(root.glob("runs/t/cells/**/result.json"))
    }


@pytest.mark.integration
def test_adding_a_method_runs_only_its_cells(tmp_path):
    params = tiny_params(["original", "finetune"])
    fetch_dataset(params, "digits", Layout(tmp_path))
    run = open_suite(params, "t", tmp_path)
    write_protocols(run)
    assert train_originals(run) == 1
    assert train_gold(run) == 4  # 2 protocols x 2 steps
    assert run_unlearning(run) == {"run": 4, "cached": 0}  # 2 methods x 2 protocols
    old = results(tmp_path)
    assert len(old) == 4

    params = tiny_params(["original", "finetune", "gradient_ascent"])  # a method joins the suite
    run = open_suite(params, "t", tmp_path)
    assert write_protocols(run)  # rewritten identically: same seeds, same forget sets
    assert train_originals(run) == 0
    assert train_gold(run) == 0
    assert run_unlearning(run) == {"run": 2, "cached": 4}
    new = results(tmp_path)
    assert {p: new[p] for p in old} == old  # old result.json files untouched (same mtime, same bytes)
    added = sorted(set(new) - set(old))
    assert [p.parent.parent.name for p in added] == ["gradient_ascent", "gradient_ascent"]
    assert run_unlearning(run) == {"run": 0, "cached": len(expand_cells(run))}
