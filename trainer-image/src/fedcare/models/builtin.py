"""Model construction: every model standardizes its inputs, then runs a core network.

The core is a logistic regression (one linear layer), an MLP, a linear Cox model, or a user
plug-in. Outputs are logits for binary classification, predictions for regression and log
relative hazards (risk scores) for survival, with shape ``(n,)``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from fedcare.errors import SpecError
from fedcare.models.plugin import build_plugin
from fedcare.spec.job import ModelName, ModelSpec, Task

MIN_STD = 1e-6


class Standardized(nn.Module):
    """``core((x - input_mean) / input_std)``, squeezed to shape ``(n,)``.

    ``input_mean`` and ``input_std`` are float32 buffers (so they travel in the state dict and
    are averaged like weights); they start at 0 and 1 and are set by :func:`set_standardization`.
    """

    input_mean: torch.Tensor
    input_std: torch.Tensor

    def __init__(self, core: nn.Module, num_features: int) -> None:
        """Wrap ``core``, which maps ``(n, num_features)`` to ``(n, 1)`` or ``(n,)``."""
        super().__init__()
        self.register_buffer("input_mean", torch.zeros(num_features, dtype=torch.float32))
        self.register_buffer("input_std", torch.ones(num_features, dtype=torch.float32))
        self.core = core

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardize ``x`` and apply the core; returns shape ``(n,)``."""
        out: torch.Tensor = self.core((x - self.input_mean) / self.input_std)
        if out.dim() == 2 and out.shape[1] == 1:
            out = out.squeeze(1)
        return out


def build_model(spec: ModelSpec, task: Task, num_features: int, seed: int = 0) -> nn.Module:
    """The model ``spec`` describes for ``num_features`` inputs, initialized from ``seed``.

    The same ``(spec, task, num_features, seed)`` always gives the same weights; the global
    torch RNG is left as it was. Every task has one output unit. For ``survival`` the output
    layer has no bias: the Cox partial likelihood does not depend on one (it cancels out of
    every risk set), so ``cox`` is ``Linear(num_features, 1, bias=False)`` and the last layer
    of an ``mlp`` drops its bias too. Raises :class:`SpecError` for a broken plug-in, one whose
    state holds non-floating tensors, or a model name the task does not allow.
    """
    if num_features < 1:
        raise ValueError(f"num_features must be at least 1, got {num_features}")
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        model = Standardized(_core(spec, task, num_features), num_features)
    for key, value in model.state_dict().items():
        if not value.is_floating_point():
            raise SpecError(
                f"model {spec.plugin or spec.name.value!r}: state entry {key!r} has dtype "
                f"{value.dtype}; only floating-point state can be averaged across sites"
            )
    return model


def _core(spec: ModelSpec, task: Task, num_features: int) -> nn.Module:
    """The network behind the standardization step."""
    survival = task is Task.SURVIVAL
    if (spec.name is ModelName.COX) != survival and spec.name in (
        ModelName.COX,
        ModelName.LOGISTIC_REGRESSION,
    ):
        raise SpecError(f"model {spec.name.value!r} does not apply to task {task.value!r}")
    if spec.name is ModelName.COX:
        return nn.Linear(num_features, 1, bias=False)
    if spec.name is ModelName.LOGISTIC_REGRESSION:
        return nn.Linear(num_features, 1)
    if spec.name is ModelName.MLP:
        layers: list[nn.Module] = []
        width = num_features
        for units in spec.hidden_units:
            layers += [nn.Linear(width, units), nn.ReLU()]
            if spec.dropout > 0.0:
                layers.append(nn.Dropout(spec.dropout))
            width = units
        layers.append(nn.Linear(width, 1, bias=not survival))
        return nn.Sequential(*layers)
    if spec.plugin is None:
        raise SpecError("model.plugin ('module:callable') is required when name is 'plugin'")
    return build_plugin(spec.plugin, num_features, dict(spec.plugin_args))


def set_standardization(model: nn.Module, mean: npt.ArrayLike, std: npt.ArrayLike) -> None:
    """Set the model's ``input_mean`` and ``input_std`` buffers (std clamped to >= 1e-6)."""
    buf_mean = model.get_buffer("input_mean")
    buf_std = model.get_buffer("input_std")
    m = np.asarray(mean, dtype=np.float32).reshape(-1)
    s = np.fmax(np.asarray(std, dtype=np.float32).reshape(-1), np.float32(MIN_STD))
    if m.shape != tuple(buf_mean.shape) or s.shape != tuple(buf_std.shape):
        raise ValueError(
            f"standardization needs {buf_mean.shape[0]} values, got mean {m.shape} and std "
            f"{s.shape}"
        )
    with torch.no_grad():
        buf_mean.copy_(torch.from_numpy(m))
        buf_std.copy_(torch.from_numpy(s))
