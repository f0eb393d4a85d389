"""``params.yaml`` schema and validation. Every error names the offending key.

Layout::

    datasets:   {NAME: {source, split_seed, test_fraction, max_train?, max_test?, hf_path?}}
    protocols:  {NAME: {kind: random|class|memorized|mislabeled, requests,
                        fraction? (random, memorized: share of D per request), pool?, tuning_reserve?,
                        level? (memorized: high|mid|low|mix),
                        classes_per_request? (class), corrupt_fraction?, identified? (mislabeled),
                        seed? (forget sets shared by all model seeds; omitted: drawn per model seed)}}
    methods:    {NAME: {PARAM: [grid values]} | [{PARAM: [..]}, ..]}  # grid overrides; a list = union
    grid:       default | full   # a method's unlisted parameters: its default value / its built-in list
    suites:     {NAME: {dataset, model: {arch, ...}, train: {epochs, batch_size, lr, weight_decay, optimizer},
                        protocols: [..], seeds: [..], methods: [..], budget_s?, memory_mb?,
                        memorization?: {models, seed},
                        population?: {models, seed?, forget_seed?, methods, protocols?},
                        device?: auto|cpu|cuda|cuda:N}}             # default cpu (benchmark.runner.device)
    cost:       {hvp_grad_ratio, fwd_grad_ratio}          # one HVP / one forward pass, in gradient passes
    executor:   {kind: local|ray, address?, num_cpus?, cpus_per_task?, gpus_per_task?, max_retries?,
                 torch_threads?, min_units?}              # how the grid stages run their units (optional)
    tuning:     {seeds, trials, sampler: tpe|random, sampler_seed, validation_fraction, validation_seed,
                 max_retain_drop: fraction in (0, 1) | null}
                                                          # hyperparameter selection (optional; see below)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from benchmark.schema import (
    CostSection,
    DatasetSection,
    MemorizationSection,
    ModelSection,
    TrainSection,
    check_section,
)
from benchmark.unlearners.base import TrainRecipe


class ConfigError(ValueError):
    """A bad ``params.yaml``: the message starts with the dotted key at fault."""


ARCHS = ("logreg", "mlp", "cnn", "resnet18")
PROTOCOL_KINDS = ("random", "class", "memorized", "mislabeled")
# `memorized` forget sets by memorisation level (Zhao et al. 2024, RUM): the most memorised, those closest to
# 0.5, the least memorised, or a third of each (benchmark.data.protocols)
MEMORIZATION_LEVELS = ("high", "mid", "low", "mix")
OPTIMIZERS = ("adam", "sgd")
GRIDS = ("default", "full")  # methods not listed under methods: run their default / whole built-in grid
EXECUTOR_KINDS = ("local", "ray")
SAMPLERS = ("tpe", "random")  # Optuna's TPESampler / RandomSampler
MIN_TRIALS = 6
DEFAULT_TUNING_SEEDS = (100, 101, 102, 103, 104)  # tuning.seeds when params.yaml gives none


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    source: str
    split_seed: int = 0
    test_fraction: float = 0.2
    max_train: int | None = None
    max_test: int | None = None
    hf_path: str | None = None


@dataclass(frozen=True)
class ProtocolConfig:
    """One sequential deletion protocol (see :mod:`benchmark.data.protocols` for each kind's rule)."""

    name: str
    kind: str
    requests: int
    fraction: float | None = None  # random / memorized: share of D deleted per request
    classes_per_request: int = 1
    seed: int | None = None  # forget-set seed shared by every model seed; None: drawn per model seed
    pool: float | None = None  # memorized: forget sets come from this share of D, most memorised first
    corrupt_fraction: float | None = None  # mislabeled: share of D whose label is flipped before training
    identified: float = 1.0  # mislabeled: share of the flipped samples that the K requests delete
    # memorized: the evaluation draws from the even ranks of the top 2·pool of the memorisation ranking and
    # leaves the odd ranks to the tuning forget sets (as memorised as the evaluation's); False: the top pool
    tuning_reserve: bool = True
    level: str = "high"  # memorized: which memorisation level the pool holds (MEMORIZATION_LEVELS)

    def key_fields(self) -> dict[str, Any]:
        """The fields for cache keys (cells, trials, population members): every field, except ``level`` at
        its default ``high``, which the protocols had before the option existed, so adding it kept the
        cached results of every existing protocol valid."""
        fields_ = dict(vars(self))
        if self.level == "high":
            del fields_["level"]
        return fields_

    @property
    def corrupts_labels(self) -> bool:
        """True when the protocol changes training labels (its originals are trained on them)."""
        return self.kind == "mislabeled"

    @property
    def needs_memorization(self) -> bool:
        return self.kind == "memorized"


@dataclass(frozen=True)
class MemorizationConfig:
    """Feldman–Zhang memorisation estimate: ``models`` models trained on random halves of D."""

    models: int = 32
    seed: int = 1000


@dataclass(frozen=True)
class PopulationConfig:
    """Populations for the per-example distributional metrics (KLoM, NeurIPS-2023 score).

    Per protocol, on one shared forget set (the protocol's ``seed``, else ``forget_seed``), at the final
    request K: ``models`` originals and ``models`` gold retrains (the reference) plus ``models`` more retrains
    (the ``retrain`` method: another retrain, the noise floor), and ``models`` unlearned models of each
    method in ``methods`` (a bare name: its tuned headline configuration on the protocol; ``m[k=v,...]``:
    that configuration), all with seeds ``seed``, ``seed`` + 1, ...
    """

    models: int
    methods: tuple[str, ...]
    protocols: tuple[str, ...]
    seed: int = 10_000
    forget_seed: int = 0


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    dataset: str
    model: dict[str, Any]
    recipe: TrainRecipe
    protocols: tuple[str, ...]
    seeds: tuple[int, ...]
    methods: tuple[str, ...]
    budget_s: float | None = None
    memorization: MemorizationConfig = field(default_factory=MemorizationConfig)
    population: PopulationConfig | None = None
    # where models and data live (benchmark.runner.device); not in as_dict: a CPU run keeps today's keys,
    # a resolved GPU device enters the keys through SuiteRun.data_key
    device: str = "cpu"
    # hard memory limit of one cell (resident MB of its sandbox process, benchmark.runner.sandbox); not in
    # as_dict: a limit stops a runaway cell, it never changes what a finished cell computed
    memory_mb: float | None = None

    def key_fields(self) -> dict[str, Any]:
        """The suite's part of a cell's or trial's cache key: its dataset, model and recipe. Not its lists of
        protocols and seeds: a cell or trial depends on its own forget sets (in its key), not on the suite's
        other protocols and seeds."""
        return {"dataset": self.dataset, "model": self.model, "train": vars(self.recipe)}


@dataclass(frozen=True)
class ExecutorConfig:
    """How the grid stages (memorize, train, gold, tune, population, unlearn, evaluate) run their units; see
    :mod:`benchmark.runner.executor`.

    ``kind``: ``local`` (in-process, one unit after another) or ``ray``. ``address``: join a running Ray
    cluster (``auto`` or ``HOST:PORT``); None starts a private local instance of ``num_cpus`` CPUs (None:
    every core of the machine). ``cpus_per_task`` / ``gpus_per_task``: Ray resources one unit reserves;
    GPUs only for a suite whose device resolved (on the driver) to CUDA, ``gpus_per_task`` each (None: 1).
    ``max_retries``: re-runs of a unit whose worker died or that raised, before it counts as failed.
    ``torch_threads``: intra-op threads while a unit runs (None: ``UNLEARN_BENCH_THREADS``, default 1).
    ``min_units``: a stage with fewer pending units than this runs them in-process even with ``kind: ray``
    and a private local instance (starting Ray and its workers costs ~10 s on 2 cores, more than a handful
    of short units gains); never when joining a cluster (``address``).
    None of these enter a cache key: where a unit runs never changes what it computes.
    """

    kind: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float | None = None
    max_retries: int = 2
    torch_threads: int | None = None
    min_units: int = 16

    def __post_init__(self) -> None:
        key = "executor"
        if self.kind not in EXECUTOR_KINDS:
            known = ", ".join(EXECUTOR_KINDS)
            raise ConfigError(f"{key}.kind: unknown executor {self.kind!r}; known: {known}")
        if self.kind == "local" and self.address is not None:
            raise ConfigError(f"{key}.address: only valid with kind 'ray'")
        if self.address is not None and self.num_cpus is not None:
            raise ConfigError(f"{key}.num_cpus: the cluster's own when joining one (address is set)")
        for name, lo in (("num_cpus", 1), ("max_retries", 0), ("torch_threads", 1), ("min_units", 1)):
            v = getattr(self, name)
            if v is not None and v < lo:
                raise ConfigError(f"{key}.{name}: must be >= {lo}, got {v}")
        if not self.cpus_per_task > 0:
            raise ConfigError(f"{key}.cpus_per_task: must be > 0, got {self.cpus_per_task}")
        if self.gpus_per_task is not None and not self.gpus_per_task > 0:
            raise ConfigError(
                f"{key}.gpus_per_task: must be > 0, got {self.gpus_per_task} (CPU suites' tasks reserve none)"
            )


@dataclass(frozen=True)
class TuningConfig:
    """Hyperparameter selection (:mod:`benchmark.runner.tuning`), leak-free by construction.

    ``seeds``: the model and forget-set seeds of the tuning originals (disjoint from every evaluation
    seed; default five, as many as the evaluation's: the objective is their mean and the retain constraint
    holds on each one's every request, so a configuration that harms one model of several is not selected
    by luck); ``trials``: the
    same number of Optuna trials for every method (trial 0 = its default);
    ``sampler``: ``tpe`` or ``random``, seeded from ``sampler_seed``; ``validation_fraction`` of the
    training set (stratified, seeded by ``validation_seed``) is held out to measure accuracy: the test
    split is never read. ``max_retain_drop``: a configuration whose retain accuracy falls more than this
    below the tuning gold model's at any request of any tuning seed is infeasible (an Optuna constraint;
    None: no constraint).
    """

    seeds: tuple[int, ...] = DEFAULT_TUNING_SEEDS
    trials: int = MIN_TRIALS
    sampler: str = "tpe"
    sampler_seed: int = 0
    validation_fraction: float = 0.1
    validation_seed: int = 0
    max_retain_drop: float | None = 0.05


@dataclass(frozen=True)
class Params:
    datasets: dict[str, DatasetConfig]
    protocols: dict[str, ProtocolConfig]
    suites: dict[str, SuiteConfig]
    method_grids: dict[str, list[dict[str, list[Any]]]] = field(default_factory=dict)
    grid: str = "default"  # "default": one configuration per method unless methods: lists more; "full"
    hvp_grad_ratio: float = 2.0
    fwd_grad_ratio: float = 0.43
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    tuning: TuningConfig | None = None  # None: no tuning stage, every method runs its default

    def epochs_equiv(self, counts: Mapping[str, Any], n_train: int) -> float:
        """Work counters in epoch-equivalents: (grad_samples + hvp_grad_ratio · hvp_samples +
        fwd_grad_ratio · fwd_samples) / n_train (missing or None counters count 0)."""
        grad, hvp, fwd = (counts.get(k) or 0 for k in ("grad_samples", "hvp_samples", "fwd_samples"))
        return (grad + self.hvp_grad_ratio * hvp + self.fwd_grad_ratio * fwd) / n_train

    def suite(self, name: str) -> SuiteConfig:
        if name not in self.suites:
            raise ConfigError(f"suites.{name}: unknown suite; defined: {', '.join(self.suites)}")
        return self.suites[name]

    def dataset(self, name: str) -> DatasetConfig:
        if name not in self.datasets:
            raise ConfigError(f"datasets.{name}: unknown dataset; defined: {', '.join(self.datasets)}")
        return self.datasets[name]


def _mapping(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _check_keys(
    d: dict[str, Any], key: str, allowed: AbstractSet[str], required: AbstractSet[str] = frozenset()
) -> None:
    for k in d:
        if k not in allowed:
            raise ConfigError(f"{key}.{k}: unknown key; allowed: {', '.join(sorted(allowed))}")
    for k in sorted(required):
        if k not in d:
            raise ConfigError(f"{key}.{k}: missing required key")


def _typed(d: dict[str, Any], k: str, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    v = d.get(k, default)
    if v is None:
        return v
    if kind is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(t.__name__ for t in kind)
        raise ConfigError(f"{key}.{k}: expected {name}, got {v!r}")
    return v


def _seed(d: dict[str, Any], k: str, key: str, default: int | None = None) -> Any:
    """A seed: a non-negative integer. NumPy's generators (``default_rng``, ``SeedSequence``) reject negative
    ones, which would fail a stage mid-pipeline instead of here."""
    v = _typed(d, k, key, int, default)
    if v is not None and v < 0:
        raise ConfigError(f"{key}.{k}: a seed must be a non-negative integer, got {v}")
    return v


def _seed_list(seeds: Any, key: str) -> list[int]:
    """A non-empty list of distinct seeds (non-negative integers, as :func:`_seed`)."""
    if not isinstance(seeds, list) or not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds
    ):
        raise ConfigError(f"{key}: expected a non-empty list of non-negative integers, got {seeds!r}")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"{key}: duplicate seeds in {seeds!r}")
    return seeds


def _dataset(name: str, d: dict[str, Any]) -> DatasetConfig:
    sec = check_section(DatasetSection, d, f"datasets.{name}")
    return DatasetConfig(name=name, **sec.model_dump())


def _fraction(d: dict[str, Any], k: str, key: str, default: float | None = None) -> float | None:
    v = _typed(d, k, key, float, default)
    if v is not None and not 0 < v < 1:
        raise ConfigError(f"{key}.{k}: must be in (0, 1), got {v}")
    return v


_PROTOCOL_KEYS = {
    "random": {"fraction"},
    "class": {"classes_per_request"},
    "memorized": {"fraction", "pool", "tuning_reserve", "level"},
    "mislabeled": {"corrupt_fraction", "identified"},
}


def _protocol(name: str, d: dict[str, Any]) -> ProtocolConfig:
    key = f"protocols.{name}"
    d = _mapping(d, key)
    every = set().union(*_PROTOCOL_KEYS.values())
    _check_keys(d, key, {"kind", "requests", "seed", *every}, {"kind", "requests"})
    kind = d["kind"]
    if kind not in PROTOCOL_KINDS:
        raise ConfigError(f"{key}.kind: unknown kind {kind!r}; known: {', '.join(PROTOCOL_KINDS)}")
    for k in sorted(every - _PROTOCOL_KEYS[kind]):
        if k in d:
            allowed = sorted(_PROTOCOL_KEYS[kind])
            raise ConfigError(f"{key}.{k}: not valid for kind {kind!r} (its keys: {allowed})")
    requests = _typed(d, "requests", key, int)
    if requests < 1:
        raise ConfigError(f"{key}.requests: must be >= 1, got {requests}")
    fraction = _fraction(d, "fraction", key)
    if kind in ("random", "memorized"):
        if fraction is None:
            raise ConfigError(f"{key}.fraction: required for kind {kind!r}")
        if not 0 < fraction * requests < 1:
            raise ConfigError(f"{key}.fraction: requests x fraction must be in (0, 1), got {fraction}")
    pool = _fraction(d, "pool", key)
    if kind == "memorized":
        assert fraction is not None
        pool = pool if pool is not None else min(0.99, 2 * fraction * requests)
        if pool < fraction * requests:
            total = fraction * requests
            raise ConfigError(f"{key}.pool: must be >= requests x fraction = {total:g}, got {pool}")
    tuning_reserve = _typed(d, "tuning_reserve", key, bool, True)
    if kind == "memorized" and tuning_reserve and pool is not None and 2 * pool >= 1:
        raise ConfigError(f"{key}.pool: with tuning_reserve the evaluation and tuning share the top 2 x pool "
                          f"of the ranking, so pool must be < 0.5, got {pool}")  # fmt: skip
    level = _typed(d, "level", key, str, "high")
    if level not in MEMORIZATION_LEVELS:
        raise ConfigError(f"{key}.level: unknown level {level!r}; known: {', '.join(MEMORIZATION_LEVELS)}")
    classes_per_request = _typed(d, "classes_per_request", key, int, 1)
    if classes_per_request < 1:
        raise ConfigError(f"{key}.classes_per_request: must be >= 1, got {classes_per_request}")
    corrupt = _fraction(d, "corrupt_fraction", key)
    identified = _typed(d, "identified", key, float, 1.0)
    if kind == "mislabeled":
        if corrupt is None:
            raise ConfigError(f"{key}.corrupt_fraction: required for kind 'mislabeled'")
        if not 0 < identified <= 1:
            raise ConfigError(f"{key}.identified: must be in (0, 1], got {identified}")
    return ProtocolConfig(
        name=name,
        kind=kind,
        requests=requests,
        fraction=fraction,
        classes_per_request=classes_per_request,
        seed=_seed(d, "seed", key),
        pool=pool,
        corrupt_fraction=corrupt,
        identified=identified,
        tuning_reserve=tuning_reserve,
        level=level,
    )


def _suite(name: str, d: dict[str, Any], params: dict[str, Any]) -> SuiteConfig:
    from benchmark.unlearners.base import UnknownMethodError, get_unlearner

    key = f"suites.{name}"
    d = _mapping(d, key)
    _check_keys(
        d,
        key,
        {"dataset", "model", "train", "protocols", "seeds", "methods", "budget_s", "memorization",
         "population", "device", "memory_mb"},
        {"dataset", "model", "train", "protocols", "seeds", "methods"},
    )
    if d["dataset"] not in params["datasets"]:
        raise ConfigError(f"{key}.dataset: unknown dataset {d['dataset']!r}; defined under datasets:")
    model_sec = check_section(ModelSection, d["model"], f"{key}.model")
    model = dict(d["model"])  # as written: it enters the cache keys
    if model_sec.arch != "mlp" and model_sec.hidden is not None:
        raise ConfigError(f"{key}.model.hidden: only valid with arch 'mlp', got arch {model_sec.arch!r}")
    if model_sec.arch != "cnn" and (model_sec.channels is not None or model_sec.width is not None):
        raise ConfigError(f"{key}.model: channels and width are only valid with arch 'cnn'")
    train = check_section(TrainSection, d["train"], f"{key}.train")
    recipe = TrainRecipe(**train.model_dump())
    protocols = d["protocols"]
    if not isinstance(protocols, list) or not protocols:
        raise ConfigError(f"{key}.protocols: expected a non-empty list of protocol names")
    for p in protocols:
        if p not in params["protocols"]:
            raise ConfigError(f"{key}.protocols: unknown protocol {p!r}; defined under protocols:")
    seeds = _seed_list(d["seeds"], f"{key}.seeds")
    methods = d["methods"]
    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"{key}.methods: expected a non-empty list of method names")
    for m in methods:
        try:
            get_unlearner(m)
        except UnknownMethodError as exc:
            raise ConfigError(f"{key}.methods: {exc}") from None
    if len(set(methods)) != len(methods):
        raise ConfigError(f"{key}.methods: duplicate methods in {methods!r}")
    budget = _typed(d, "budget_s", key, float)
    if budget is not None and budget <= 0:
        raise ConfigError(f"{key}.budget_s: must be > 0, got {budget}")
    memory_mb = _typed(d, "memory_mb", key, float)
    if memory_mb is not None and memory_mb <= 0:
        raise ConfigError(f"{key}.memory_mb: must be > 0 (resident MB of a cell's process), got {memory_mb}")
    mem = check_section(MemorizationSection, d.get("memorization") or {}, f"{key}.memorization")
    memorization = MemorizationConfig(models=mem.models, seed=mem.seed)
    _check_class_capacity(key, protocols, params, d["dataset"])
    from benchmark.runner.device import check_device_spec

    device = _typed(d, "device", key, str, "cpu")
    try:  # the spelling only: a GPU suite validates on a CPU machine; availability is checked at run time
        check_device_spec(device, f"{key}.device")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return SuiteConfig(
        name=name,
        dataset=d["dataset"],
        model=model,
        recipe=recipe,
        protocols=tuple(protocols),
        seeds=tuple(seeds),
        methods=tuple(methods),
        budget_s=budget,
        memorization=memorization,
        population=_population(d.get("population"), f"{key}.population", protocols, methods),
        device=device,
        memory_mb=memory_mb,
    )


def _check_class_capacity(key: str, protocols: list[str], params: dict[str, Any], dataset: str) -> None:
    """A ``class`` protocol deletes ``requests x classes_per_request`` distinct classes: they must exist."""
    from benchmark.data.sources import SOURCE_CLASSES

    classes = SOURCE_CLASSES[params["datasets"][dataset]["source"]]
    for p in protocols:
        spec = params["protocols"][p]
        if spec["kind"] != "class":
            continue
        needed = spec["requests"] * spec.get("classes_per_request", 1)
        if needed > classes:
            raise ConfigError(
                f"protocols.{p}.requests: requests x classes_per_request = {needed} distinct classes, more "
                f"than the {classes} of dataset {dataset!r} (used by {key}); allowed: at most {classes}"
            )


def _population(d: Any, key: str, protocols: list[str], methods: list[str]) -> PopulationConfig | None:
    if d is None:
        return None
    d = _mapping(d, key)
    _check_keys(d, key, {"models", "seed", "forget_seed", "methods", "protocols"}, {"models", "methods"})
    models = _typed(d, "models", key, int)
    if models < 4:
        raise ConfigError(f"{key}.models: must be >= 4 (a population), got {models}")
    chosen = {}
    for k, allowed in (("methods", methods), ("protocols", protocols)):
        values = d.get(k, protocols if k == "protocols" else None)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{key}.{k}: expected a non-empty list")
        for i, v in enumerate(values):
            # a method name, or one configuration of it by its params_id, e.g. "m[a=1]"
            if not isinstance(v, str) or v.split("[")[0] not in allowed:
                raise ConfigError(f"{key}.{k}: {v!r} is not in the suite's {k} {allowed}")
            if k == "methods":
                _check_method_id(v, f"{key}.{k}[{i}]")
        chosen[k] = tuple(values)
    return PopulationConfig(
        models=models,
        methods=chosen["methods"],
        protocols=chosen["protocols"],
        seed=_seed(d, "seed", key, 10_000),
        forget_seed=_seed(d, "forget_seed", key, 0),
    )


def _id_value(text: str) -> Any:
    """A value as a params_id spells it (``str(value)``): int, float, None, True/False, else the string."""
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return {"None": None, "True": True, "False": False}.get(text, text)


def _check_method_id(method_id: str, key: str) -> None:
    """Every value of a params_id ``NAME[KEY=VALUE,...]`` inside the method's declared space."""
    from benchmark.unlearners.base import ParamError, get_unlearner

    name, _, rest = method_id.partition("[")
    if not rest:
        return
    if not rest.endswith("]"):
        raise ConfigError(f"{key}: {method_id!r}: expected NAME[KEY=VALUE,...]")
    grid: dict[str, list[Any]] = {}
    for item in re.split(r",(?=\w+=)", rest[:-1]):
        k, sep, v = item.partition("=")
        if not sep:
            raise ConfigError(f"{key}: {method_id!r}: expected NAME[KEY=VALUE,...]")
        grid[k.strip()] = [_id_value(v.strip())]
    try:
        get_unlearner(name).check_grid(grid, where=key)
    except ParamError as exc:
        raise ConfigError(str(exc)) from None


def _method_grids(d: dict[str, Any]) -> dict[str, list[dict[str, list[Any]]]]:
    """``methods.NAME`` is one grid (a mapping PARAM -> list) or a list of grids (their union)."""
    from benchmark.unlearners.base import ParamError, UnknownMethodError, get_unlearner

    grids: dict[str, list[dict[str, list[Any]]]] = {}
    for name, spec in _mapping(d, "methods").items():
        key = f"methods.{name}"
        try:
            cls = get_unlearner(name)
        except UnknownMethodError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        if isinstance(spec, list):
            if not spec:
                raise ConfigError(f"{key}: expected a grid or a non-empty list of grids")
            items = [(f"{key}[{i}]", g) for i, g in enumerate(spec)]
        else:
            items = [(key, spec)]
        grids[name] = []
        for gkey, grid in items:
            grid = _mapping(grid or {}, gkey)
            for p, values in grid.items():
                if p not in cls.params:
                    raise ConfigError(
                        f"{gkey}.{p}: method '{name}' has no parameter {p!r}; known: {sorted(cls.params)}"
                    )
                if not isinstance(values, list) or not values:
                    raise ConfigError(f"{gkey}.{p}: expected a non-empty list of values (a grid)")
            try:  # every value inside the method's declared space (benchmark.core.space)
                cls.check_grid(grid, where=gkey)
            except ParamError as exc:
                raise ConfigError(str(exc)) from None
            grids[name].append(grid)
    return grids


def _executor(d: Any) -> ExecutorConfig:
    key = "executor"
    d = _mapping(d if d is not None else {}, key)
    _check_keys(d, key, {f.name for f in fields(ExecutorConfig)})
    return ExecutorConfig(
        kind=_typed(d, "kind", key, str, "local"),
        address=_typed(d, "address", key, str),
        num_cpus=_typed(d, "num_cpus", key, int),
        cpus_per_task=_typed(d, "cpus_per_task", key, float, 1.0),
        gpus_per_task=_typed(d, "gpus_per_task", key, float),
        max_retries=_typed(d, "max_retries", key, int, 2),
        torch_threads=_typed(d, "torch_threads", key, int),
        min_units=_typed(d, "min_units", key, int, 16),
    )


def _tuning(
    d: Any, suites: dict[str, SuiteConfig], protocols: dict[str, ProtocolConfig]
) -> TuningConfig | None:
    """``tuning:``; its seeds must share nothing with an evaluation seed, population member or fixed
    forget-set seed (the selection would otherwise be judged on models or forget sets it reports)."""
    if d is None:
        return None
    key = "tuning"
    d = _mapping(d, key)
    _check_keys(d, key, {f.name for f in fields(TuningConfig)})
    seeds = _seed_list(d.get("seeds", list(DEFAULT_TUNING_SEEDS)), f"{key}.seeds")
    trials = _typed(d, "trials", key, int, MIN_TRIALS)
    if trials < MIN_TRIALS:
        raise ConfigError(f"{key}.trials: must be >= {MIN_TRIALS} (the default plus enough sampled "
                          f"configurations for a searcher to beat it; the same budget for every method), "
                          f"got {trials}")  # fmt: skip
    sampler = _typed(d, "sampler", key, str, "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{key}.sampler: unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")
    fraction = _fraction(d, "validation_fraction", key, 0.1)
    assert fraction is not None
    for name, s in suites.items():
        pop = s.population
        taken = {seed: f"suites.{name}.seeds" for seed in s.seeds}
        if pop is not None:
            where = f"suites.{name}.population (seeds {pop.seed}..{pop.seed + pop.models - 1})"
            taken.update({pop.seed + i: where for i in range(pop.models)})
        for p in s.protocols:
            fixed = protocols[p].seed
            if fixed is not None:
                taken[fixed] = f"protocols.{p}.seed"
        for seed in seeds:
            if seed in taken:
                raise ConfigError(f"{key}.seeds: seed {seed} is also an evaluation seed ({taken[seed]}); "
                                  f"tuning seeds must be disjoint from them")  # fmt: skip
    return TuningConfig(
        seeds=tuple(seeds),
        trials=trials,
        sampler=sampler,
        sampler_seed=_seed(d, "sampler_seed", key, 0),
        validation_fraction=fraction,
        validation_seed=_seed(d, "validation_seed", key, 0),
        max_retain_drop=_fraction(d, "max_retain_drop", key, 0.05),  # null in the file: None, no constraint
    )


def parse_params(raw: dict[str, Any]) -> Params:
    raw = _mapping(raw, "params.yaml")
    top = {"datasets", "protocols", "suites", "methods", "cost", "grid", "executor", "tuning"}
    _check_keys(raw, "params", top, {"datasets", "suites"})
    grid = raw.get("grid", "default")
    if grid not in GRIDS:
        raise ConfigError(f"grid: unknown value {grid!r}; known: {', '.join(GRIDS)}")
    raw.setdefault("protocols", {})
    datasets = {n: _dataset(n, d) for n, d in _mapping(raw["datasets"], "datasets").items()}
    protocols = {n: _protocol(n, d) for n, d in _mapping(raw["protocols"], "protocols").items()}
    suites = {n: _suite(n, d, raw) for n, d in _mapping(raw["suites"], "suites").items()}
    cost = check_section(CostSection, raw.get("cost") or {}, "cost")
    return Params(
        datasets=datasets,
        protocols=protocols,
        suites=suites,
        method_grids=_method_grids(raw.get("methods") or {}),
        grid=grid,
        hvp_grad_ratio=cost.hvp_grad_ratio,
        fwd_grad_ratio=cost.fwd_grad_ratio,
        executor=_executor(raw.get("executor")),
        tuning=_tuning(raw.get("tuning"), suites, protocols),
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    return parse_params(read_yaml(Path(path)))


def read_yaml(path: Path) -> Any:
    """The YAML document in ``path`` (``{}`` when empty): ``params.yaml``, a preset. A one-line ConfigError
    when the file is missing or is not valid YAML."""
    if not path.is_file():
        raise ConfigError(f"{path}: file not found (run from the repository root)")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {_yaml_error_line(exc)}") from None


def _yaml_error_line(exc: yaml.YAMLError) -> str:
    """A YAML parser error on one line: where (1-based line and column) and what, e.g. ``line 2, column 1:
    expected the node content, but found '<stream end>'`` (PyYAML's own text spans several lines)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{what}"
