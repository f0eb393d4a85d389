"""The tuning stage on a tiny digits suite: leak-free data, one budget, cached trials, the selection used.

Toy methods declare a small space here (the built-ins' spaces are not this test's subject).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
import yaml

from benchmark.config import ConfigError, parse_params
from benchmark.core.space import Choice, Float, Int
from benchmark.data.protocols import cumulative
from benchmark.plugins.guard import TestDataAccessError, TestDataGuard
from benchmark.runner.artifacts import Layout, write_json
from benchmark.runner.cells import expand_cells
from benchmark.runner.prepare import fetch_dataset, write_protocols
from benchmark.runner.suite import open_suite
from benchmark.runner.tuning import run_tuning, tune_study
from benchmark.runner.tuning_data import tuning_data
from benchmark.unlearners.base import _REGISTRY, Unlearner, register_unlearner


class ToyStep(Unlearner):
    """``steps`` full-batch SGD steps of rate ``lr`` on the retain set."""

    space = {
        "lr": Float(low=0, low_open=True, search=(1e-3, 1.0), log=True),
        "steps": Int(low=1, search=(1, 3)),
    }
    params = {"lr": [0.1], "steps": [1]}

    def unlearn(self, model, request, ctx):
        opt = torch.optim.SGD(model.parameters(), lr=self.hparams["lr"])
        x, y = request.retain.x, request.retain.y
        for _ in range(self.hparams["steps"]):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            ctx.counters.grad_samples += len(y)
        return model


class ToyFails(ToyStep):
    """Fails for every configuration but its default: the failed trials must not stop the study."""

    def unlearn(self, model, request, ctx):
        if self.hparams != {"lr": 0.1, "steps": 1}:
            raise RuntimeError("only the default works")
        return super().unlearn(model, request, ctx)


class ToyFragile(ToyStep):
    """Leaves every model alone except tuning seed 101's, whose weights it zeroes: harm on one seed in two."""

    def unlearn(self, model, request, ctx):
        if ctx.seed == 101:
            with torch.no_grad():
                for p in model.parameters():
                    p.zero_()
        return model


TOYS = {"toy_step": ToyStep, "toy_fails": ToyFails, "toy_fragile": ToyFragile}


def _raw(methods: list[str], **tuning) -> dict:
    return {
        "datasets": {"digits": {"source": "digits"}},
        "protocols": {
            "random": {"kind": "random", "requests": 2, "fraction": 0.02},
            "class": {"kind": "class", "requests": 2},
            "memorized": {"kind": "memorized", "requests": 2, "fraction": 0.01, "pool": 0.05},
            "mislabeled": {"kind": "mislabeled", "requests": 2, "corrupt_fraction": 0.05},
        },
        "executor": {"kind": "local"},
        "tuning": {"seeds": [100], "trials": 6, "sampler_seed": 0, "validation_fraction": 0.1, **tuning},
        "suites": {
            "t": {
                "dataset": "digits",
                "model": {"arch": "logreg"},
                "train": {"epochs": 2, "batch_size": 128, "lr": 0.01},
                "protocols": ["random", "class", "memorized", "mislabeled"],
                "seeds": [0, 1],
                "methods": methods,
                "population": {"models": 4, "methods": ["original"], "protocols": ["random"]},
            }
        },
    }


@pytest.fixture(scope="module", autouse=True)
def toys():
    for name, cls in TOYS.items():
        _REGISTRY.pop(name, None)
        register_unlearner(name)(cls)
    yield
    for name in TOYS:
        _REGISTRY.pop(name, None)


def _prepare(root, raw):
    params = parse_params(raw)
    fetch_dataset(params, "digits", Layout(root))
    run = open_suite(params, "t", root)
    scores = np.random.default_rng(0).random(run.n_train)  # memorisation scores: any fixed ranking will do
    write_json(run.layout.memorization_path("t"), {"scores": scores.tolist()})
    write_protocols(run)
    return run


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A whole tiny tune, run under the test-data guard: any read of the test split raises and is logged."""
    root = tmp_path_factory.mktemp("tune")
    run = _prepare(root, _raw(["original", "toy_step", "toy_fails"]))
    guard = TestDataGuard()
    with guard.active():
        counts = run_tuning(run)
    return run, counts, guard


def _doc(run) -> dict:
    return yaml.safe_load(run.layout.tuning_path("t").read_text())


def test_trial_keys_hold_the_suites_data_model_and_recipe_not_its_other_protocols(tuned):
    """Dropping `random` from the suite leaves every other protocol's trial keys (so its cached trials) as
    they were: the tuning forget sets, which do depend on the evaluation's, did not change."""
    from benchmark.runner.cells import base_config
    from benchmark.runner.method_code import method_code_hash
    from benchmark.runner.tuning import trial_key
    from benchmark.runner.tuning_data import TuningData

    run = tuned[0]
    raw = _raw(["original", "toy_step", "toy_fails"])
    raw["suites"]["t"]["protocols"] = ["class", "memorized", "mislabeled"]
    del raw["suites"]["t"]["population"]  # it was on `random` (no other protocol's forget sets change)
    fewer = open_suite(parse_params(raw), "t", run.layout.root)

    def key(r, protocol):
        td = TuningData(r, r.params.tuning)
        code = method_code_hash("toy_step")
        return trial_key(r, td, protocol, "toy_step", base_config(r, "toy_step"), code)

    for protocol in ("class", "memorized", "mislabeled"):
        assert key(fewer, protocol) == key(run, protocol), protocol
    raw["suites"]["t"]["train"]["lr"] = 0.02  # another recipe: other trials
    other = open_suite(parse_params(raw), "t", run.layout.root)
    assert key(other, "class") != key(run, "class")


# --- config ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tuning", "suite", "match"),
    [
        ({"seeds": [1]}, {}, r"^tuning\.seeds: seed 1 is also an evaluation seed \(suites\.t\.seeds\)"),
        ({"seeds": [10_002]}, {"population": {"models": 4, "methods": ["original"]}},
         r"^tuning\.seeds: .*population"),
        ({"trials": 5}, {}, r"^tuning\.trials: must be >= 6"),
        ({"validation_fraction": 1.0}, {}, r"^tuning\.validation_fraction: must be in \(0, 1\)"),
        ({"sampler": "grid"}, {}, r"^tuning\.sampler: unknown sampler"),
        ({"max_retain_drop": 1.5}, {}, r"^tuning\.max_retain_drop: must be in \(0, 1\)"),
        ({"max_retain_drop": "5%"}, {}, r"^tuning\.max_retain_drop: expected float"),
    ],
)
def test_validate_rejects_bad_tuning(tuning, suite, match):
    raw = _raw(["original"], **tuning)
    raw["suites"]["t"].pop("population")
    raw["suites"]["t"].update(suite)
    with pytest.raises(ConfigError, match=match):
        parse_params(raw)


def test_validate_rejects_a_protocols_fixed_seed():
    raw = _raw(["original"])
    raw["protocols"]["random"]["seed"] = 100
    with pytest.raises(ConfigError, match=r"^tuning\.seeds: seed 100 .*protocols\.random\.seed"):
        parse_params(raw)


def test_the_utility_constraint_defaults_to_five_points_and_null_turns_it_off():
    assert parse_params(_raw(["original"])).tuning.max_retain_drop == 0.05
    assert parse_params(_raw(["original"], max_retain_drop=None)).tuning.max_retain_drop is None
    assert parse_params(_raw(["original"], max_retain_drop=0.02)).tuning.max_retain_drop == 0.02


def test_validate_accepts_the_repository_params():
    from benchmark.config import load_params

    params = load_params("params.yaml")
    assert params.tuning is not None and params.tuning.trials >= 6


# --- leak guards -------------------------------------------------------------------------------------------
def test_tuning_never_reads_test_data(tuned):
    run, counts, guard = tuned
    assert guard.violations == []
    assert counts["studies"] == 3 * 4 and counts["computed"] > 0
    with pytest.raises(TestDataAccessError):
        _ = tuning_data(run).snapshot.x_test


def test_tuning_forget_sets_are_disjoint_from_the_evaluation_ones(tuned):
    run = tuned[0]
    td = tuning_data(run)
    assert len(np.intersect1d(td.train_idx, td.val_idx)) == 0
    assert len(td.train_idx) + len(td.val_idx) == run.n_train
    # stratified: every class in the validation split in proportion (+-1 sample)
    y = td.labels
    for c in range(10):
        expected = (y == c).sum() * len(td.val_idx) / len(y)
        assert abs((y[td.val_idx] == c).sum() - expected) <= 1
    for protocol in ("random", "memorized", "mislabeled", "class"):
        reqs = td.requests(protocol, 100)
        gone = cumulative(reqs, len(reqs))
        assert np.isin(gone, td.train_idx).all()  # never the validation split
        evals = [cumulative(run.requests(protocol, s), 2) for s in (0, 1)]
        if protocol == "class":  # classes may coincide: the models, seeds and splits differ
            continue
        for ev in evals:
            assert len(np.intersect1d(gone, ev)) == 0, protocol
        if protocol == "random":  # the population's shared forget set too
            assert len(np.intersect1d(gone, cumulative(run.requests(protocol, "pop"), 2))) == 0
        if protocol == "memorized":  # the ranks the evaluation left to tuning: as memorised as its own
            from benchmark.runner.memorization import load_memorization

            rank = np.argsort(np.argsort(-load_memorization(run), kind="stable"))  # 0 = most memorised
            tune_rank, eval_rank = rank[gone].mean(), rank[np.unique(np.concatenate(evals))].mean()
            assert tune_rank <= 1.25 * eval_rank, (tune_rank, eval_rank)  # without the reserve: 2x
        # as many samples per request as a draw from the whole tuning train set
        if protocol in ("random", "memorized"):
            size = round(run.protocol(protocol).fraction * len(td.train_idx))
            assert all(abs(len(r) - size) <= 1 for r in reqs)
    bad = td.corruption("mislabeled", 100)
    for s in (0, 1):
        assert len(np.intersect1d(bad[0], run.corruption("mislabeled", s)[0])) == 0
    assert (bad[1] != td.labels[bad[0]]).all()


# --- search ------------------------------------------------------------------------------------------------
def test_every_method_gets_the_same_budget_and_failures_are_recorded(tuned):
    doc = _doc(tuned[0])
    assert doc["objective"] == "tow_auc_val"
    for protocol in ("random", "class", "memorized", "mislabeled"):
        step = doc["protocols"][protocol]["toy_step"]
        assert step["n_trials"] == 6 and len(step["trials"]) == 6
        assert step["trials"][0]["params"] == {"lr": 0.1, "steps": 1}  # trial 0: the default
        assert step["tuned"] == ["lr", "steps"]
        ok = [t for t in step["trials"] if t["status"] == "ok"]
        feasible = [t for t in ok if t["feasible"]]
        assert step["best_value"] == max(t["value"] for t in feasible or ok)
        assert step["feasible"] == bool(feasible)
        assert 0 <= step["best_value"] <= 1
        assert step["cost"]["epochs_equiv"] > 0 and step["cost"]["wall_s"] > 0
        assert step["selected"] == {**step["trials"][step["best_trial"]]["params"]}
        fails = doc["protocols"][protocol]["toy_fails"]
        assert fails["n_trials"] == 6
        assert [t["status"] for t in fails["trials"]] == ["ok"] + ["failed"] * 5
        for t in fails["trials"][1:]:
            assert t["value"] == -math.inf and "only the default works" in t["reason"]
        assert fails["selected"] == {"lr": 0.1, "steps": 1} and fails["best_trial"] == 0
        # no tuned parameter: one trial, its default
        orig = doc["protocols"][protocol]["original"]
        assert orig["n_trials"] == 1 and orig["tuned"] == [] and len(orig["trials"]) == 1


# --- utility constraint ------------------------------------------------------------------------------------
def _records(rng: np.random.Generator, n: int) -> list[dict]:
    out = []
    for i in range(n):
        ok = rng.random() > 0.15
        out.append({"number": i, "params": {"lr": float(rng.uniform(0.01, 1.0))},
                    "status": "ok" if ok else "failed", "value": float(rng.random()) if ok else -math.inf,
                    "retain_drop": float(rng.uniform(-0.01, 0.1)) if ok else math.inf})
    return out


def test_the_selection_is_optunas_best_feasible_trial():
    """``select_trial`` against Optuna's own constrained ``best_trial`` on the same records (random records,
    some infeasible, some failed), and its rule when nothing is feasible: the smallest violation."""
    import optuna

    from benchmark.runner.tuning import _rebuilt_study, select_trial

    dists = {"lr": optuna.distributions.FloatDistribution(0.01, 1.0)}
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(200):
        records = _records(rng, 6)
        feasible = [r for r in records if r["status"] == "ok" and r["retain_drop"] <= 0.05]
        if not feasible:
            continue
        study = _rebuilt_study(records, dists, optuna.samplers.RandomSampler(seed=0), 0.05)
        assert select_trial(records, 0.05)["number"] == study.best_trial.number
        assert select_trial(records, None)["value"] == max(r["value"] for r in records)  # no constraint
        checked += 1
    assert checked > 100
    none_ok = [{"number": 0, "status": "ok", "value": 0.9, "retain_drop": 0.30},
               {"number": 1, "status": "ok", "value": 0.2, "retain_drop": 0.08},
               {"number": 2, "status": "failed", "value": -math.inf, "retain_drop": math.inf}]
    assert select_trial(none_ok, 0.05)["number"] == 1
    assert select_trial(none_ok, None)["number"] == 0


def test_the_retain_drop_is_golds_retain_accuracy_minus_the_unlearned_one(tuned):
    """``original`` leaves the model as it is: its recorded drop is max over steps of gold's retain accuracy
    minus the original's, recomputed here from the tuning models; every trial's ``feasible`` flag is the
    constraint's verdict."""
    run = tuned[0]
    td = tuning_data(run)
    doc = _doc(run)
    assert doc["config"]["max_retain_drop"] == 0.05
    for protocol in ("random", "class"):
        seed = td.cfg.seeds[0]
        original = td.load_original(seed, protocol)
        drops = [td.gold_accuracies(protocol, seed, k)[1] - td.accuracies(original, protocol, seed, k)[1]
                 for k in run.steps(protocol)]
        recorded = doc["protocols"][protocol]["original"]["trials"][0]["retain_drop"]
        assert recorded == pytest.approx(max(drops), abs=1e-6)
        for t in doc["protocols"][protocol]["toy_step"]["trials"]:
            assert t["feasible"] == (t["retain_drop"] <= 0.05)


def test_every_tuning_seed_counts_for_the_objective_and_the_constraint(tmp_path):
    """With two tuning seeds the objective is the mean of the seeds' ToW AUCs and the retain drop the worst
    request of either: a configuration that wrecks one model of two is infeasible, though the other seed
    alone would pass it."""
    from benchmark.runner.tuning import run_trial, violation

    run = _prepare(tmp_path, _raw(["original"], seeds=[100, 101]))
    run_tuning(run)  # trains both seeds' tuning originals and golds
    td = tuning_data(run)
    rec = run_trial(run, td, "random", "toy_fragile", {"lr": 0.1, "steps": 1})
    assert rec["status"] == "ok" and len(rec["tow"]) == 2
    auc = [sum(t) / len(t) for t in rec["tow"]]
    assert rec["value"] == pytest.approx(sum(auc) / 2)
    untouched = run_trial(run, td, "random", "original", {})
    assert auc[0] == pytest.approx(sum(untouched["tow"][0]) / len(untouched["tow"][0]))  # seed 100: untouched
    assert auc[1] < 0.5 * auc[0]
    assert untouched["retain_drop"] <= 0.05 < rec["retain_drop"]
    assert rec["retain_drop"] > 0.5 and violation(rec, 0.05) > 0
    # each seed's own worst request: seed 100's is original's there, seed 101's is the trial's
    assert rec["retain_drop_by_seed"][0] == pytest.approx(untouched["retain_drop_by_seed"][0])
    assert rec["retain_drop_by_seed"][1] == rec["retain_drop"]


def test_rerun_computes_nothing_and_a_new_method_tunes_alone(tuned):
    run = tuned[0]
    before = run.layout.tuning_path("t").read_bytes()
    import benchmark.runner.tuning as tuning_mod

    def no_study(*args, **kwargs):
        raise AssertionError("a stored study was run again")

    with pytest.MonkeyPatch.context() as mp:  # every study is stored whole: none is rebuilt or run
        mp.setattr(tuning_mod, "tune_study_unit", no_study)
        assert run_tuning(run)["computed"] == 0
    assert run.layout.tuning_path("t").read_bytes() == before  # unchanged inputs: the same file
    raw = _raw(["original", "toy_step", "toy_fails", "finetune"])
    more = open_suite(parse_params(raw), "t", run.layout.root)
    counts = run_tuning(more)
    n_new = sum(e["finetune"]["n_trials"] for e in _doc(more)["protocols"].values())
    assert counts["computed"] == n_new  # only finetune's trials ran
    assert _doc(more)["protocols"]["random"]["toy_step"] == _doc(run)["protocols"]["random"]["toy_step"]


def _tune_computing_nothing(run) -> dict[str, int]:
    """``run_tuning(run)``, failing if any study or tuning gold is computed."""
    import benchmark.runner.tuning as tuning_mod

    def must_not_run(*args, **kwargs):
        raise AssertionError("a study or a tuning gold was computed")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tuning_mod, "tune_study_unit", must_not_run)
        mp.setattr(tuning_mod, "train_tuning_gold", must_not_run)
        return run_tuning(run)


def test_a_fresh_clone_reuses_the_committed_selection_whose_study_keys_match(tuned, tmp_path):
    """A checkout with ``tuning/t.yaml`` but none of the studies or trials behind it (a fresh clone) runs no
    study and trains no tuning gold when every entry's recorded key is the current study key, and rewrites
    the same bytes; an entry whose key differs (its inputs changed) is re-tuned, alone."""

    run = tuned[0]
    committed = run.layout.tuning_path("t").read_bytes()
    doc = _doc(run)
    n_studies = sum(len(methods) for methods in doc["protocols"].values())
    assert all(len(e["key"]) == 16 for methods in doc["protocols"].values() for e in methods.values())
    methods = list(next(iter(doc["protocols"].values())))  # the suite that wrote the file (order included)
    clone = _prepare(tmp_path, _raw(methods))
    path = clone.layout.tuning_path("t")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(committed)
    counts = _tune_computing_nothing(clone)
    assert counts["computed"] == 0 and counts["committed"] == n_studies
    assert path.read_bytes() == committed
    stale = yaml.safe_load(committed)
    # as if toy_step's inputs had changed (its definition with them, so the recipe too)
    stale["protocols"]["random"]["toy_step"].update(key="0" * 16, recipe="0" * 16)
    path.write_text(yaml.safe_dump(stale, sort_keys=False))
    counts = run_tuning(clone)
    assert counts["committed"] == n_studies - 1
    assert counts["computed"] == doc["protocols"]["random"]["toy_step"]["n_trials"]
    again, first = _doc(clone)["protocols"], doc["protocols"]
    for protocol in first:
        for method in first[protocol]:
            a, b = again[protocol][method], first[protocol][method]
            if (protocol, method) != ("random", "toy_step"):
                assert a == b  # reused as committed
            else:  # recomputed: the same study (its wall times aside)
                assert (a["key"], a["selected"], a["best_value"], a["best_trial"]) == (
                    b["key"], b["selected"], b["best_value"], b["best_trial"])
                assert [(t["params"], t["value"]) for t in a["trials"]] == [
                    (t["params"], t["value"]) for t in b["trials"]]


def test_committed_studies_are_reused_by_recipe_where_the_tuning_originals_have_other_bits(tuned, tmp_path):
    """Another CPU vendor trains the tuning originals with other last bits, so no study key matches: an entry
    whose recorded recipe (the study's definition) is current is reused as committed, key and bytes
    included, instead of re-tuning; an entry whose recipe changed is re-tuned."""
    import benchmark.runner.tuning as tuning_mod

    run = tuned[0]
    committed = run.layout.tuning_path("t").read_bytes()
    doc = _doc(run)
    n_studies = sum(len(methods) for methods in doc["protocols"].values())
    assert all(len(e["recipe"]) == 16 for methods in doc["protocols"].values() for e in methods.values())
    methods = list(next(iter(doc["protocols"].values())))
    clone = _prepare(tmp_path, _raw(methods))
    path = clone.layout.tuning_path("t")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(committed)
    td = tuning_data(clone)
    originals_units = tuning_mod.tuning_model_units(clone)[0]
    tuning_mod.run_stage(clone, originals_units, tuning_mod.train_tuning_original, "tuning originals")
    originals = sorted(td.dir.glob("originals/**/seed*.pt"))
    assert originals
    for f in originals:  # one last bit of one weight: what another machine's kernels give
        state = torch.load(f, weights_only=True)
        name = next(k for k, v in state.items() if v.is_floating_point())
        flat = state[name].view(-1)
        flat[0] = torch.nextafter(flat[0], torch.tensor(math.inf, dtype=flat.dtype))
        torch.save(state, f)
    assert all(tuning_mod.study_key(clone, p, m) != e["key"] for p, ms in doc["protocols"].items()
               for m, e in ms.items())  # fmt: skip
    counts = _tune_computing_nothing(clone)
    assert (counts["computed"], counts["committed"], counts["foreign"]) == (0, n_studies, n_studies)
    assert path.read_bytes() == committed
    stale = yaml.safe_load(committed)
    stale["protocols"]["random"]["toy_step"]["recipe"] = "0" * 16  # as if toy_step's definition had changed
    path.write_text(yaml.safe_dump(stale, sort_keys=False))
    counts = run_tuning(clone)
    assert (counts["committed"], counts["foreign"]) == (n_studies - 1, n_studies - 1)
    assert counts["computed"] == doc["protocols"]["random"]["toy_step"]["n_trials"]
    redone = _doc(clone)["protocols"]["random"]["toy_step"]
    assert redone["recipe"] == doc["protocols"]["random"]["toy_step"]["recipe"]
    assert redone["key"] == tuning_mod.study_key(clone, "random", "toy_step") != doc["protocols"]["random"][
        "toy_step"]["key"]


def test_same_seeds_select_the_same_configuration(tuned, tmp_path):
    run = tuned[0]
    other = _prepare(tmp_path, _raw(["original", "toy_step", "toy_fails"]))
    run_tuning(other, ["toy_step"])
    a, b = _doc(run)["protocols"], _doc(other)["protocols"]
    for protocol in a:
        sa, sb = a[protocol]["toy_step"], b[protocol]["toy_step"]
        assert sa["selected"] == sb["selected"] and sa["best_value"] == sb["best_value"]
        assert [t["params"] for t in sa["trials"]] == [t["params"] for t in sb["trials"]]
    # another sampler seed proposes other points
    raw = _raw(["original", "toy_step"], sampler_seed=1)
    third = open_suite(parse_params(raw), "t", tmp_path)
    run_tuning(third, ["toy_step"])
    c = _doc(third)["protocols"]["random"]["toy_step"]
    first = [t["params"] for t in a["random"]["toy_step"]["trials"]]
    assert [t["params"] for t in c["trials"]][1:] != first[1:]


# --- use ---------------------------------------------------------------------------------------------------
def test_the_unlearn_grid_runs_the_selected_configuration(tuned):
    run = tuned[0]
    doc = _doc(run)["protocols"]
    raw = _raw(["original", "toy_step", "toy_fails"])
    # the first listed configuration is the base (replaced by the selection); a further one stays as a row
    raw["methods"] = {"toy_fails": [{}, {"steps": [2]}]}
    params = parse_params(raw)
    grid_run = open_suite(params, "t", run.layout.root)
    cells = expand_cells(grid_run)
    for protocol in ("random", "class", "memorized", "mislabeled"):
        step = [c for c in cells if c.method == "toy_step" and c.protocol == protocol]
        assert {c.seed for c in step} == {0, 1} and len(step) == 2  # the default is replaced
        sel = doc[protocol]["toy_step"]["selected"]
        assert all(c.hparams == sel and c.selected and c.tuning_trials == 6 for c in step)
        assert all(c.tuning_s > 0 for c in step)
        assert all(c.tuning_feasible is doc[protocol]["toy_step"]["feasible"] for c in step)
        if sel != {"lr": 0.1, "steps": 1}:
            assert step[0].params_id == f"toy_step[lr={sel['lr']},steps={sel['steps']}]"
        fails = [c for c in cells if c.method == "toy_fails" and c.protocol == protocol]
        # every trial fails: the selection is trial 0, the base (bare name, flagged); the extra row stays
        expected = {("toy_fails", True), ("toy_fails[steps=2]", False)}
        assert {(c.params_id, c.selected) for c in fails} == expected
        orig = [c for c in cells if c.method == "original" and c.protocol == protocol]
        assert all(c.params_id == "original" and c.selected for c in orig)
    # without a tuning section, the built-in defaults as before
    raw = copy.deepcopy(_raw(["original", "toy_step"]))
    raw.pop("tuning")
    plain = expand_cells(open_suite(parse_params(raw), "t", run.layout.root))
    assert all(c.params_id in ("original", "toy_step") and not c.selected for c in plain)


class ToyMode(ToyStep):
    """ToyStep with a parameter no study searches: ``mode`` scales the rate (``half``: lr / 2)."""

    space = {**ToyStep.space, "mode": Choice(options=("full", "half"))}
    params = {**ToyStep.params, "mode": ["full"]}

    def unlearn(self, model, request, ctx):
        if self.hparams["mode"] == "half":
            self.hparams = {**self.hparams, "lr": self.hparams["lr"] / 2}
        return super().unlearn(model, request, ctx)


def test_a_listed_base_configuration_is_trial_zero_and_keeps_its_unsearched_values(tuned):
    """``methods:`` sets a method's base in the suite: trial 0 is that configuration, every trial keeps the
    values the study does not search (as ``fisher: empirical`` for fisher_forgetting), and the selection
    replaces the base row in the unlearn grid."""
    run = tuned[0]
    _REGISTRY.pop("toy_mode", None)
    register_unlearner("toy_mode")(ToyMode)
    try:
        raw = _raw(["original", "toy_mode"])
        raw["methods"] = {"toy_mode": {"mode": ["half"], "steps": [2]}}
        grid_run = open_suite(parse_params(raw), "t", run.layout.root)
        study = tune_study(grid_run, "random", "toy_mode")
        assert study["trials"][0]["hparams"] == {"lr": 0.1, "mode": "half", "steps": 2}
        assert len(study["trials"]) == 6 and all(t["hparams"]["mode"] == "half" for t in study["trials"])
        assert study["tuned"] == ["lr", "steps"] and study["selected"]["mode"] == "half"
    finally:
        _REGISTRY.pop("toy_mode", None)


def test_a_population_method_is_its_selected_configuration(tuned):
    """A bare population method name is the configuration the tune stage selected for the protocol (the
    headline row); ``method[k=v]`` is the base configuration with those values; a bad key: one line."""
    from benchmark.runner.population import _method_config

    run = tuned[0]
    doc = _doc(run)["protocols"]
    raw = _raw(["original", "toy_step", "toy_fails"])
    raw["suites"]["t"]["population"]["methods"] = ["original", "toy_step", "toy_step[steps=2]"]
    pop_run = open_suite(parse_params(raw), "t", run.layout.root)
    cells = {(c.protocol, c.method): c for c in expand_cells(pop_run) if c.selected}
    for protocol in ("random", "class"):
        method, params_id, hp = _method_config(pop_run, "toy_step", protocol)
        assert hp == doc[protocol]["toy_step"]["selected"]
        assert params_id == cells[(protocol, "toy_step")].params_id
    assert _method_config(pop_run, "toy_step[steps=2]", "random") == (
        "toy_step", "toy_step[steps=2]", {"lr": 0.1, "steps": 2})
    with pytest.raises(ConfigError, match="'depth' is not a parameter of toy_step"):
        _method_config(pop_run, "toy_step[depth=2]", "random")
