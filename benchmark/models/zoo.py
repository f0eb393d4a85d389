"""Model zoo: logistic regression, MLP, a small CNN, and torchvision's ResNet-18 with a CIFAR-sized stem.

``build_model(spec, input_shape, num_classes, seed)`` initialises deterministically from ``seed``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation: unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def mlp(in_features: int, hidden: list[int], num_classes: int, activation: str = "relu") -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), _activation(activation)]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def small_cnn(
    input_shape: tuple[int, int, int],
    num_classes: int,
    channels: tuple[int, int] = (16, 32),
    width: int = 64,
    activation: str = "relu",
) -> nn.Sequential:
    """conv3x3-act-maxpool ×2, then a hidden linear layer: the paper-style small CNN."""
    c, h, w = input_shape
    c1, c2 = channels
    feat_h, feat_w = h // 4, w // 4
    return nn.Sequential(
        nn.Conv2d(c, c1, 3, padding=1),
        _activation(activation),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        _activation(activation),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * feat_h * feat_w, width),
        _activation(activation),
        nn.Linear(width, num_classes),
    )


def resnet18(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """torchvision ResNet-18 with the CIFAR stem: 3×3 stride-1 first conv, no max-pool."""
    import torchvision  # here, not at module level: importing it costs ~2 s of every stage's start-up

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


def build_model(
    spec: dict[str, Any], input_shape: tuple[int, int, int], num_classes: int, seed: int
) -> nn.Module:
    """Instantiate ``spec['arch']`` with weights drawn from ``torch.manual_seed(seed)``."""
    arch = spec["arch"]
    activation = spec.get("activation", "relu")
    in_features = input_shape[0] * input_shape[1] * input_shape[2]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "logreg":
            model: nn.Module = nn.Sequential(nn.Flatten(), nn.Linear(in_features, num_classes))
        elif arch == "mlp":
            model = mlp(in_features, list(spec.get("hidden", [64])), num_classes, activation)
        elif arch == "cnn":
            model = small_cnn(
                input_shape,
                num_classes,
                tuple(spec.get("channels", (16, 32))),
                int(spec.get("width", 64)),
                activation,
            )
        elif arch == "resnet18":
            model = resnet18(input_shape, num_classes)
        else:
            raise ValueError(f"model.arch: unknown architecture {arch!r}")
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
