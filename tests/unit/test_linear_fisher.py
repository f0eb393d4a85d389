"""The closed-form Fisher of linear layers against per-sample gradient loops (float64), and its fallbacks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.curvature import fisher_diag, flat_params
from benchmark.curvature.functional import ParamLayout
from benchmark.curvature.linear_fisher import linear_layers, linear_sq_grad_sum
from benchmark.unlearners.base import Counters


def per_sample_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """The definition, one sample and one class at a time with autograd."""
    params = [p for p in model.parameters() if p.requires_grad]
    total = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64)
    for i in range(x.shape[0]):
        logp = F.log_softmax(model(x[i : i + 1]), dim=1)[0]
        terms = (
            [(1.0, -logp[y[i]])]
            if kind == "empirical"
            else [(float(logp[c].detach().exp()), logp[c]) for c in range(logp.shape[0])]
        )
        for weight, value in terms:
            g = torch.autograd.grad(value, params, retain_graph=True)
            total += weight * torch.cat([t.reshape(-1) for t in g]).square()
    return total / x.shape[0]


def data(n: int = 9, d: int = 5, k: int = 4, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64), torch.randint(k, (n,), generator=g)


def deep_mlp() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Flatten(), nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3, bias=False), nn.GELU(), nn.Linear(3, 4)
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_closed_form_equals_the_per_sample_definition(kind):
    model, (x, y) = deep_mlp(), data()
    layout = ParamLayout(model)
    assert (
        linear_sq_grad_sum(model, layout.names, layout.unflatten(flat_params(model)), {}, x, y, kind)
        is not None
    )
    counter = Counters()
    got = fisher_diag(model, x, y, kind=kind, chunk_size=4, counter=counter)  # chunks of 4, 4, 1
    torch.testing.assert_close(got, per_sample_loop(model, x, y, kind), rtol=1e-12, atol=1e-15)
    assert counter.grad_samples == 9 * (1 if kind == "empirical" else 4)  # the same count as per-sample


def test_frozen_layers_are_left_out_and_the_rest_is_exact():
    model, (x, y) = deep_mlp(), data()
    for p in model[1].parameters():
        p.requires_grad_(False)
    layout = ParamLayout(model)
    got = fisher_diag(model, x, y, kind="empirical")
    assert got.numel() == layout.dim == 3 * 6 + 4 * 3 + 4
    torch.testing.assert_close(got, per_sample_loop(model, x, y, "empirical"), rtol=1e-12, atol=1e-15)


def test_a_float32_model_at_float64_weights_is_computed_in_float64():
    model, (x, y) = deep_mlp(), data()
    model32 = deep_mlp().float()
    got = fisher_diag(model32, x.float(), y, kind="true", w=flat_params(model32).double())
    assert got.dtype == torch.float64
    torch.testing.assert_close(
        got, per_sample_loop(model, x.float().double(), y, "true"), rtol=1e-12, atol=1e-15
    )


class Tied(nn.Module):
    """One linear layer applied twice: the per-sample gradient is a sum of two outer products."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(5, 5)
        self.head = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.inner(torch.tanh(self.inner(x)))))


class Sequence(nn.Module):
    """A linear layer over a sequence (n, t, in): the outer product per sample sums over positions."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(5, 3)
        self.head = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.proj(x.view(x.shape[0], 1, 5).expand(-1, 2, -1))).mean(1))


def shared_weight() -> nn.Module:
    first = nn.Linear(5, 5)
    second = nn.Linear(5, 5)
    second.weight = first.weight  # tied weights across two modules
    return nn.Sequential(first, nn.Tanh(), second, nn.Tanh(), nn.Linear(5, 4))


def with_layernorm() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 6), nn.LayerNorm(6), nn.ReLU(), nn.Linear(6, 4))


def small_conv() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 5)), nn.Conv1d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6, 4)
    )


@pytest.mark.parametrize("build", [Tied, Sequence, shared_weight, with_layernorm, small_conv])
@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_models_outside_the_identity_fall_back_to_per_sample_gradients(build, kind):
    torch.manual_seed(1)
    model = build().double().eval()
    (x, y) = data()
    layout = ParamLayout(model)
    params = layout.unflatten(flat_params(model))
    assert linear_sq_grad_sum(model, layout.names, params, {}, x, y, kind) is None
    torch.testing.assert_close(
        fisher_diag(model, x, y, kind=kind), per_sample_loop(model, x, y, kind), rtol=1e-12, atol=1e-15
    )


def test_linear_layers_maps_names_to_roles():
    model = deep_mlp()
    owner = linear_layers(model, ParamLayout(model).names)
    assert owner is not None
    assert {n: role for n, (_, role) in owner.items()} == {
        "1.weight": "weight",
        "1.bias": "bias",
        "3.weight": "weight",
        "5.weight": "weight",
        "5.bias": "bias",
    }
    assert linear_layers(with_layernorm(), ParamLayout(with_layernorm()).names) is None


def test_a_model_in_training_mode_is_left_to_the_per_sample_code():
    model, (x, y) = deep_mlp().train(), data()
    layout = ParamLayout(model)
    assert (
        linear_sq_grad_sum(model, layout.names, layout.unflatten(flat_params(model)), {}, x, y, "empirical")
        is None
    )
    torch.testing.assert_close(
        fisher_diag(model, x, y), per_sample_loop(model, x, y, "empirical"), rtol=1e-12, atol=1e-15
    )
