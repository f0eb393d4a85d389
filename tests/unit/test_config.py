import copy
from pathlib import Path

import pytest
import yaml

from benchmark.config import ConfigError, ExecutorConfig, load_params, parse_params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_default_params_are_valid(raw):
    params = parse_params(raw)
    assert {"digits-mlp", "mnist5k-mlp"} <= set(params.suites)
    for suite in params.suites.values():
        assert len(suite.seeds) >= 5
        assert {"random", "class", "memorized"} <= set(suite.protocols)
        # KLoM CI < 10 % of the gap; mnist5k-mlp's population is the klom-mnist preset's (the cold-run budget)
        if suite.name == "digits-mlp":
            assert suite.population is not None and suite.population.models >= 20
        else:
            assert suite.population is None
        expected = {"original", "retrain", "finetune", "gradient_ascent", "cure_newton_krylov"}
        assert expected <= set(suite.methods)
    assert all(p.requests == 5 for p in params.protocols.values())


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (
            lambda r: r["suites"]["digits-mlp"].update(methods=["original", "no_such_method"]),
            "suites.digits-mlp.methods",
        ),
        (lambda r: r["suites"]["digits-mlp"].update(colour="blue"), "suites.digits-mlp.colour"),
        (lambda r: r["suites"]["digits-mlp"]["train"].update(epochs="ten"), "suites.digits-mlp.train.epochs"),
        (lambda r: r["suites"]["digits-mlp"]["model"].update(arch="vit"), "suites.digits-mlp.model.arch"),
        (lambda r: r["suites"]["digits-mlp"].update(protocols=["nope"]), "suites.digits-mlp.protocols"),
        (lambda r: r["protocols"]["random"].update(kind="weird"), "protocols.random.kind"),
        (lambda r: r["datasets"]["digits"].update(source="imagenet"), "datasets.digits.source"),
        (
            lambda r: r["methods"].update(finetune={"epochs": [1], "momentum": [0.9]}),
            "methods.finetune.momentum",
        ),
        (lambda r: r["methods"].update(bogus={}), "methods.bogus"),
        (
            lambda r: r["methods"].update(cure_newton_krylov=[{"iters": [1]}, {"hvp_batch": 32}]),
            "methods.cure_newton_krylov[1].hvp_batch",
        ),
        (lambda r: r["methods"].update(cure_newton_krylov=[]), "methods.cure_newton_krylov"),
        (lambda r: r["methods"].update(cure_newton_krylov=[{"kk": [1]}]), "methods.cure_newton_krylov[0].kk"),
        (lambda r: r.update(extra=1), "params.extra"),
        (lambda r: r["protocols"].update(m={"kind": "memorized", "requests": 5}), "protocols.m.fraction"),
        (
            lambda r: r["protocols"].update(m={"kind": "memorized", "requests": 5, "fraction": 0.01,
                                               "pool": 0.02}),  # fmt: skip
            "protocols.m.pool",
        ),
        (
            lambda r: r["protocols"].update(m={"kind": "memorized", "requests": 5, "fraction": 0.01,
                                               "pool": 0.6}),  # fmt: skip
            "protocols.m.pool",  # evaluation + tuning reserve would need the top 120 %
        ),
        (
            lambda r: r["protocols"].update(m={"kind": "memorized", "requests": 5, "fraction": 0.01,
                                               "tuning_reserve": "yes"}),  # fmt: skip
            "protocols.m.tuning_reserve",
        ),
        (lambda r: r["protocols"]["random"].update(tuning_reserve=True), "protocols.random.tuning_reserve"),
        (lambda r: r["protocols"]["memorized"].update(level="highest"), "protocols.memorized.level"),
        (lambda r: r["protocols"]["random"].update(level="mix"), "protocols.random.level"),
        (
            lambda r: r["protocols"].update(m={"kind": "mislabeled", "requests": 5}),
            "protocols.m.corrupt_fraction",
        ),
        (
            lambda r: r["protocols"].update(m={"kind": "mislabeled", "requests": 5, "corrupt_fraction": 1.5}),
            "protocols.m.corrupt_fraction",
        ),
        (lambda r: r["protocols"]["class"].update(fraction=0.1), "protocols.class.fraction"),
        (
            lambda r: r["protocols"]["class"].update(classes_per_request=0),
            "protocols.class.classes_per_request",
        ),
        (lambda r: r["suites"]["digits-mlp"].update(seeds=[0, 0]), "suites.digits-mlp.seeds"),
        # seeds are non-negative (NumPy's generators reject the others, mid-pipeline) and never booleans
        (
            lambda r: r["suites"]["digits-mlp"].update(seeds=[0, 1, -2]),
            "suites.digits-mlp.seeds: expected a non-empty list of non-negative integers",
        ),
        (lambda r: r["suites"]["digits-mlp"].update(seeds=[0, True]), "suites.digits-mlp.seeds"),
        (lambda r: r["tuning"].update(seeds=[100, -101]), "tuning.seeds"),
        (lambda r: r["tuning"].update(sampler_seed=-1), "tuning.sampler_seed: a seed must be"),
        (lambda r: r["tuning"].update(validation_seed=-3), "tuning.validation_seed: a seed must be"),
        (
            lambda r: r["suites"]["digits-mlp"].update(memorization={"models": 32, "seed": -1}),
            "suites.digits-mlp.memorization.seed",
        ),
        (
            lambda r: r["suites"]["digits-mlp"]["population"].update(seed=-10),
            "suites.digits-mlp.population.seed: a seed must be",
        ),
        (
            lambda r: r["suites"]["digits-mlp"]["population"].update(forget_seed=-1),
            "suites.digits-mlp.population.forget_seed: a seed must be",
        ),
        (lambda r: r["protocols"]["random"].update(seed=-7), "protocols.random.seed: a seed must be"),
        (lambda r: r["suites"]["digits-mlp"].update(budget_s=-5), "suites.digits-mlp.budget_s"),
        (
            lambda r: r["suites"]["digits-mlp"].update(population={"models": 8, "methods": ["nope"]}),
            "suites.digits-mlp.population.methods",
        ),
        (
            lambda r: r["suites"]["digits-mlp"].update(population={"models": 2, "methods": ["original"]}),
            "suites.digits-mlp.population.models",
        ),
        (
            lambda r: r["suites"]["digits-mlp"].update(memorization={"models": 1}),
            "suites.digits-mlp.memorization.models",
        ),
        (lambda r: r.update(executor={"kind": "dask"}), "executor.kind"),
        (lambda r: r.update(executor={"kind": "local", "address": "auto"}), "executor.address"),
        (lambda r: r.update(executor={"kind": "ray", "address": "auto", "num_cpus": 2}), "executor.num_cpus"),
        (lambda r: r.update(executor={"kind": "ray", "num_cpus": 0}), "executor.num_cpus"),
        (lambda r: r.update(executor={"kind": "ray", "num_cpus": "two"}), "executor.num_cpus"),
        (lambda r: r.update(executor={"kind": "ray", "cpus_per_task": 0}), "executor.cpus_per_task"),
        (lambda r: r.update(executor={"kind": "ray", "gpus_per_task": -1}), "executor.gpus_per_task"),
        (lambda r: r.update(executor={"kind": "ray", "max_retries": -1}), "executor.max_retries"),
        (lambda r: r.update(executor={"kind": "ray", "torch_threads": 0}), "executor.torch_threads"),
        (lambda r: r.update(executor={"kind": "ray", "workers": 3}), "executor.workers"),
        (lambda r: r.update(executor=["ray"]), "executor"),
        # values outside a method's declared space (benchmark.core.space), in a grid or a population id
        (lambda r: r["methods"].update(finetune={"epochs": [3, 0]}), "methods.finetune.epochs: got 0"),
        (
            lambda r: r["methods"].update(cure_newton_krylov=[{}, {"k": [10, 2.5]}]),
            "methods.cure_newton_krylov[1].k: got 2.5",
        ),
        (lambda r: r["methods"].update(ssd={"lambda": [-1.0]}), "methods.ssd.lambda: got -1.0"),
        (
            lambda r: r["suites"]["digits-mlp"]["population"].update(methods=["finetune[epochs=0]"]),
            "suites.digits-mlp.population.methods[0].epochs: got 0",
        ),
        (
            lambda r: r["suites"]["digits-mlp"]["population"].update(methods=["finetune[momentum=0.9]"]),
            "suites.digits-mlp.population.methods[0].momentum: no such parameter",
        ),
        (
            lambda r: r["suites"]["digits-mlp"]["population"].update(methods=["finetune[epochs=2"]),
            "suites.digits-mlp.population.methods[0]: 'finetune[epochs=2'",
        ),
    ],
)
def test_bad_config_names_the_key(raw, mutate, key):
    bad = copy.deepcopy(raw)
    mutate(bad)
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    assert str(err.value).startswith(key), str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_suite_is_named(raw):
    with pytest.raises(ConfigError, match="suites.nope"):
        parse_params(raw).suite("nope")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("suites: [1,\n", "line 2, column 1: expected the node content, but found '<stream end>'"),
        ("a: 1\n b: 2\n", "line 2, column 3: mapping values are not allowed here"),
        ("a: 'open\n", "line 2, column 1: found unexpected end of stream"),
    ],
)
def test_invalid_yaml_is_one_line_naming_where(tmp_path, text, where):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_params(path)
    assert str(err.value) == f"{path}: invalid YAML: {where}"


def test_a_list_of_grids_is_their_union_with_ids_naming_what_varies(raw):
    from types import SimpleNamespace

    from benchmark.runner.cells import expand_cells

    raw = copy.deepcopy(raw)
    grids = [{}, {"iters": [1, 2], "hvp_batch": [32]}, {"iters": [10]}]
    raw["methods"]["cure_newton_krylov"] = grids
    raw["suites"]["digits-mlp"].update(methods=["cure_newton_krylov"], seeds=[0], protocols=["random"])
    raw["suites"]["digits-mlp"].pop("population")
    params = parse_params(raw)
    assert params.method_grids["cure_newton_krylov"] == grids
    run = SimpleNamespace(params=params, suite=params.suite("digits-mlp"))  # what expand_cells reads
    ids = [c.params_id for c in expand_cells(run)]
    # {} and {iters: [10]} are the same configuration (the default iters cap is 10): listed once, under
    # the bare method name (the default configuration is the leaderboard's headline row)
    assert ids == [
        "cure_newton_krylov",
        "cure_newton_krylov[hvp_batch=32,iters=1]",
        "cure_newton_krylov[hvp_batch=32,iters=2]",
    ]


def test_epochs_equivalents_weigh_each_counter_by_its_cost_ratio(raw):
    params = parse_params(raw)
    hvp, fwd = params.hvp_grad_ratio, params.fwd_grad_ratio
    counts = {"grad_samples": 400, "hvp_samples": 100, "fwd_samples": 50, "hvps": 3}
    assert params.epochs_equiv(counts, 200) == pytest.approx((400 + hvp * 100 + fwd * 50) / 200, rel=1e-15)
    assert params.epochs_equiv({"grad_samples": 200, "fwd_samples": None}, 100) == 2.0  # missing/None: 0


def test_executor_section_defaults_to_local_and_parses_ray(raw):
    params = parse_params({k: v for k, v in raw.items() if k != "executor"})
    assert params.executor == ExecutorConfig()
    assert params.executor.kind == "local" and params.executor.max_retries == 2
    cfg = parse_params({**raw, "executor": {"kind": "ray", "num_cpus": 2, "gpus_per_task": 0.5}}).executor
    assert (cfg.kind, cfg.num_cpus, cfg.address, cfg.cpus_per_task, cfg.gpus_per_task) == (
        "ray",
        2,
        None,
        1.0,
        0.5,
    )
    cfg = parse_params({**raw, "executor": {"kind": "ray", "address": "auto", "torch_threads": 2}}).executor
    assert (cfg.address, cfg.num_cpus, cfg.torch_threads) == ("auto", None, 2)


def test_a_value_outside_the_declared_space_fails_validation_in_one_line(raw):
    bad = copy.deepcopy(raw)
    bad["methods"]["cure_newton_krylov"] = {"precision": ["foo"]}
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    message = "methods.cure_newton_krylov.precision: got 'foo'; allowed: one of 'float64', 'model'"
    assert str(err.value) == message
    bad = copy.deepcopy(raw)
    pop = bad["suites"]["digits-mlp"]["population"]
    pop["methods"] = [m.replace("precision=model", "precision=half") for m in pop["methods"]]
    with pytest.raises(ConfigError) as err:
        parse_params(bad)
    assert str(err.value) == (
        "suites.digits-mlp.population.methods[4].precision: got 'half'; allowed: one of 'float64', 'model'"
    )


def test_population_ids_read_values_as_params_ids_spell_them():
    from benchmark.config import _id_value

    for value in (0, 256, 0.0, 1e-06, 0.999, 2.5e-4, None, True, False, "model", "class_sorted"):
        parsed = _id_value(str(value))
        assert parsed == value and type(parsed) is type(value)
