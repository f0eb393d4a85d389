"""Pydantic schemas of the leaf sections of ``params.yaml`` (types, ranges, known values, unknown keys).

:mod:`benchmark.config` validates each section through :func:`check_section`, which turns pydantic's
:class:`~pydantic.ValidationError` into a one-line error naming the dotted key, what is allowed and the
value given, e.g. ``suites.s.train.epochs: Input should be greater than 0, got 0``. Cross-section rules
(a suite's protocols exist, requests x classes fit the dataset, unique seeds...) stay in the config module.
Models are strict: ``"3"`` is not an int and ``true`` is not a number, so a typo never turns into a value.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]


class Section(BaseModel):
    """A strict section: unknown keys and coercions (``"3"`` -> 3, ``true`` -> 1) are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatasetSection(Section):
    source: Literal["digits", "mnist5k", "fashion_mnist", "cifar10"]
    split_seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    test_fraction: Fraction = 0.2
    max_train: PositiveInt | None = None
    max_test: PositiveInt | None = None
    hf_path: str | None = None


class TrainSection(Section):
    epochs: PositiveInt
    batch_size: PositiveInt
    lr: PositiveFloat
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    optimizer: Literal["adam", "sgd"] = "adam"


class ModelSection(Section):
    arch: Literal["logreg", "mlp", "cnn", "resnet18"]
    hidden: list[PositiveInt] | None = None  # mlp: hidden widths (may be empty: a linear model)
    activation: Literal["relu", "tanh", "gelu"] = "relu"
    channels: Annotated[list[PositiveInt], Field(min_length=2, max_length=2)] | None = None  # cnn
    width: PositiveInt | None = None  # cnn: the hidden linear layer


class CostSection(Section):
    hvp_grad_ratio: PositiveFloat = 2.0
    fwd_grad_ratio: PositiveFloat = 0.43


class MemorizationSection(Section):
    models: Annotated[int, Field(ge=2)] = 32
    seed: Annotated[int, Field(ge=0)] = 1000  # NumPy's generators take non-negative seeds only


S = TypeVar("S", bound=Section)


def check_section(schema: type[S], data: Any, key: str) -> S:
    """``schema`` validated from ``data``; a :class:`~benchmark.config.ConfigError` naming the first bad
    key (``key`` + the location inside the section) otherwise."""
    from benchmark.config import ConfigError

    if not isinstance(data, dict):
        raise ConfigError(f"{key}: expected a mapping, got {type(data).__name__}")
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, key, schema)) from None


def one_line(exc: ValidationError, key: str, schema: type[BaseModel]) -> str:
    """The first error of ``exc`` as ``dotted.key: what is allowed, got value``."""
    err = exc.errors(include_url=False)[0]
    loc = ".".join([key, *(str(p) for p in err["loc"])])
    if err["type"] == "extra_forbidden":
        return f"{loc}: unknown key; allowed: {', '.join(sorted(schema.model_fields))}"
    if err["type"] == "missing":
        return f"{loc}: missing required key"
    return f"{loc}: {err['msg']}, got {err['input']!r}"
