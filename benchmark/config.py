"""``params.yaml`` schema and validation. Every error names the offending key.

Layout::

    datasets:   {NAME: {source, split_seed, test_fraction, max_train?, max_test?, hf_path?}}
    protocols:  {NAME: {kind: random|class, requests, fraction? (random), classes_per_request? (class),
                        seed? (forget sets shared by all model seeds; omitted: drawn per model seed)}}
    methods:    {NAME: {PARAM: [grid values]} | [{PARAM: [..]}, ..]}  # grid overrides; a list = union
    suites:     {NAME: {dataset, model: {arch, ...}, train: {epochs, batch_size, lr, weight_decay, optimizer},
                        protocols: [..], seeds: [..], methods: [..], budget_s?}}
    cost:       {hvp_grad_ratio, fwd_grad_ratio}          # one HVP / one forward pass, in gradient passes
    executor:   {kind: local|ray, address?, num_cpus?, cpus_per_task?, gpus_per_task?, max_retries?,
                 torch_threads?}                          # how the grid stages run their units (optional)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from benchmark.unlearners.base import TrainRecipe


class ConfigError(ValueError):
    """A bad ``params.yaml``: the message starts with the dotted key at fault."""


ARCHS = ("logreg", "mlp", "cnn", "resnet18")
PROTOCOL_KINDS = ("random", "class")
OPTIMIZERS = ("adam", "sgd")
EXECUTOR_KINDS = ("local", "ray")


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
    name: str
    kind: str
    requests: int
    fraction: float | None = None
    classes_per_request: int = 1
    seed: int | None = None  # forget-set seed shared by every model seed; None: drawn per model seed


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "train": vars(self.recipe),
            "protocols": list(self.protocols),
            "seeds": list(self.seeds),
        }


@dataclass(frozen=True)
class ExecutorConfig:
    """How the grid stages (train, gold, unlearn) run their units; see :mod:`benchmark.runner.executor`.

    ``kind``: ``local`` (in-process, one unit after another) or ``ray``. ``address``: join a running Ray
    cluster (``auto`` or ``HOST:PORT``); None starts a private local instance of ``num_cpus`` CPUs (None:
    every core of the machine). ``cpus_per_task`` / ``gpus_per_task``: Ray resources one unit reserves.
    ``max_retries``: re-runs of a unit whose worker died or that raised, before it counts as failed.
    ``torch_threads``: intra-op threads while a unit runs (None: ``UNLEARN_BENCH_THREADS``, default 1).
    None of these enter a cache key: where a unit runs never changes what it computes.
    """

    kind: str = "local"
    address: str | None = None
    num_cpus: int | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_retries: int = 2
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        key = "executor"
        if self.kind not in EXECUTOR_KINDS:
            known = ", ".join(EXECUTOR_KINDS)
            raise ConfigError(f"{key}.kind: unknown executor {self.kind!r}; known: {known}")
        if self.kind == "local" and self.address is not None:
            raise ConfigError(f"{key}.address: only valid with kind 'ray'")
        if self.address is not None and self.num_cpus is not None:
            raise ConfigError(f"{key}.num_cpus: the cluster's own when joining one (address is set)")
        for name, lo in (("num_cpus", 1), ("max_retries", 0), ("torch_threads", 1)):
            v = getattr(self, name)
            if v is not None and v < lo:
                raise ConfigError(f"{key}.{name}: must be >= {lo}, got {v}")
        if not self.cpus_per_task > 0:
            raise ConfigError(f"{key}.cpus_per_task: must be > 0, got {self.cpus_per_task}")
        if not self.gpus_per_task >= 0:
            raise ConfigError(f"{key}.gpus_per_task: must be >= 0, got {self.gpus_per_task}")


@dataclass(frozen=True)
class Params:
    datasets: dict[str, DatasetConfig]
    protocols: dict[str, ProtocolConfig]
    suites: dict[str, SuiteConfig]
    method_grids: dict[str, list[dict[str, list[Any]]]] = field(default_factory=dict)
    hvp_grad_ratio: float = 2.0
    fwd_grad_ratio: float = 0.43
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

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


def _check_keys(d: dict[str, Any], key: str, allowed: set[str], required: set[str] = frozenset()) -> None:
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


def _dataset(name: str, d: dict[str, Any]) -> DatasetConfig:
    key = f"datasets.{name}"
    d = _mapping(d, key)
    _check_keys(
        d, key, {"source", "split_seed", "test_fraction", "max_train", "max_test", "hf_path"}, {"source"}
    )
    from benchmark.data.sources import SOURCE_NAMES

    if d["source"] not in SOURCE_NAMES:
        raise ConfigError(f"{key}.source: unknown source {d['source']!r}; known: {', '.join(SOURCE_NAMES)}")
    frac = _typed(d, "test_fraction", key, float, 0.2)
    if not 0 < frac < 1:
        raise ConfigError(f"{key}.test_fraction: must be in (0, 1), got {frac}")
    return DatasetConfig(
        name=name,
        source=d["source"],
        split_seed=_typed(d, "split_seed", key, int, 0),
        test_fraction=frac,
        max_train=_typed(d, "max_train", key, int),
        max_test=_typed(d, "max_test", key, int),
        hf_path=_typed(d, "hf_path", key, str),
    )


def _protocol(name: str, d: dict[str, Any]) -> ProtocolConfig:
    key = f"protocols.{name}"
    d = _mapping(d, key)
    _check_keys(d, key, {"kind", "requests", "fraction", "classes_per_request", "seed"}, {"kind", "requests"})
    kind = d["kind"]
    if kind not in PROTOCOL_KINDS:
        raise ConfigError(f"{key}.kind: unknown kind {kind!r}; known: {', '.join(PROTOCOL_KINDS)}")
    requests = _typed(d, "requests", key, int)
    if requests < 1:
        raise ConfigError(f"{key}.requests: must be >= 1, got {requests}")
    fraction = _typed(d, "fraction", key, float)
    if kind == "random":
        if fraction is None:
            raise ConfigError(f"{key}.fraction: required for kind 'random'")
        if not 0 < fraction * requests < 1:
            raise ConfigError(f"{key}.fraction: requests x fraction must be in (0, 1), got {fraction}")
    elif fraction is not None:
        raise ConfigError(f"{key}.fraction: only valid for kind 'random'")
    return ProtocolConfig(
        name=name,
        kind=kind,
        requests=requests,
        fraction=fraction,
        classes_per_request=_typed(d, "classes_per_request", key, int, 1),
        seed=_typed(d, "seed", key, int),
    )


def _suite(name: str, d: dict[str, Any], params: dict[str, Any]) -> SuiteConfig:
    from benchmark.unlearners.base import UnknownMethodError, get_unlearner

    key = f"suites.{name}"
    d = _mapping(d, key)
    _check_keys(
        d,
        key,
        {"dataset", "model", "train", "protocols", "seeds", "methods", "budget_s"},
        {"dataset", "model", "train", "protocols", "seeds", "methods"},
    )
    if d["dataset"] not in params["datasets"]:
        raise ConfigError(f"{key}.dataset: unknown dataset {d['dataset']!r}; defined under datasets:")
    model = dict(_mapping(d["model"], f"{key}.model"))
    if model.get("arch") not in ARCHS:
        raise ConfigError(f"{key}.model.arch: unknown architecture {model.get('arch')!r}; known: {ARCHS}")
    _check_keys(model, f"{key}.model", {"arch", "hidden", "activation", "channels", "width"})
    train = _mapping(d["train"], f"{key}.train")
    tkey = f"{key}.train"
    _check_keys(
        train,
        tkey,
        {"epochs", "batch_size", "lr", "weight_decay", "optimizer"},
        {"epochs", "batch_size", "lr"},
    )
    optimizer = _typed(train, "optimizer", tkey, str, "adam")
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"{tkey}.optimizer: unknown optimizer {optimizer!r}; known: {OPTIMIZERS}")
    recipe = TrainRecipe(
        epochs=_typed(train, "epochs", tkey, int),
        batch_size=_typed(train, "batch_size", tkey, int),
        lr=_typed(train, "lr", tkey, float),
        weight_decay=_typed(train, "weight_decay", tkey, float, 0.0),
        optimizer=optimizer,
    )
    protocols = d["protocols"]
    if not isinstance(protocols, list) or not protocols:
        raise ConfigError(f"{key}.protocols: expected a non-empty list of protocol names")
    for p in protocols:
        if p not in params["protocols"]:
            raise ConfigError(f"{key}.protocols: unknown protocol {p!r}; defined under protocols:")
    seeds = d["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise ConfigError(f"{key}.seeds: expected a non-empty list of integers, got {seeds!r}")
    methods = d["methods"]
    if not isinstance(methods, list) or not methods:
        raise ConfigError(f"{key}.methods: expected a non-empty list of method names")
    for m in methods:
        try:
            get_unlearner(m)
        except UnknownMethodError as exc:
            raise ConfigError(f"{key}.methods: {exc}") from None
    budget = _typed(d, "budget_s", key, float)
    return SuiteConfig(
        name=name,
        dataset=d["dataset"],
        model=model,
        recipe=recipe,
        protocols=tuple(protocols),
        seeds=tuple(seeds),
        methods=tuple(methods),
        budget_s=budget,
    )


def _method_grids(d: dict[str, Any]) -> dict[str, list[dict[str, list[Any]]]]:
    """``methods.NAME`` is one grid (a mapping PARAM -> list) or a list of grids (their union)."""
    from benchmark.unlearners.base import UnknownMethodError, get_unlearner

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
        gpus_per_task=_typed(d, "gpus_per_task", key, float, 0.0),
        max_retries=_typed(d, "max_retries", key, int, 2),
        torch_threads=_typed(d, "torch_threads", key, int),
    )


def parse_params(raw: dict[str, Any]) -> Params:
    raw = _mapping(raw, "params.yaml")
    top = {"datasets", "protocols", "suites", "methods", "cost", "executor"}
    _check_keys(raw, "params", top, {"datasets", "suites"})
    raw.setdefault("protocols", {})
    datasets = {n: _dataset(n, d) for n, d in _mapping(raw["datasets"], "datasets").items()}
    protocols = {n: _protocol(n, d) for n, d in _mapping(raw["protocols"], "protocols").items()}
    suites = {n: _suite(n, d, raw) for n, d in _mapping(raw["suites"], "suites").items()}
    cost = _mapping(raw.get("cost") or {}, "cost")
    _check_keys(cost, "cost", {"hvp_grad_ratio", "fwd_grad_ratio"})
    return Params(
        datasets=datasets,
        protocols=protocols,
        suites=suites,
        method_grids=_method_grids(raw.get("methods") or {}),
        hvp_grad_ratio=_typed(cost, "hvp_grad_ratio", "cost", float, 2.0),
        fwd_grad_ratio=_typed(cost, "fwd_grad_ratio", "cost", float, 0.43),
        executor=_executor(raw.get("executor")),
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: file not found (run from the repository root)")
    with path.open() as f:
        try:
            raw = yaml.safe_load(f) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    return parse_params(raw)
