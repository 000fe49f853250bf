"""Model construction: built-in families, plug-ins, standardization, determinism."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fedcare.errors import SpecError
from fedcare.models import build_model, set_standardization
from fedcare.spec.job import ModelName, ModelSpec, Task

BINARY = Task.BINARY_CLASSIFICATION
MLP = ModelSpec(name=ModelName.MLP, hidden_units=[8, 4])
LOGISTIC = ModelSpec(name=ModelName.LOGISTIC_REGRESSION)

PLUGIN_SOURCE = """
import torch
from torch import nn


def tiny(num_features, width=3, scale=1.0):
    return nn.Sequential(nn.Linear(num_features, int(width)), nn.Tanh(), nn.Linear(int(width), 1))


def flat(num_features):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(num_features))

        def forward(self, x):
            return x @ self.w

    return Flat()


def not_a_module(num_features):
    return "a string"


def raises(num_features):
    raise RuntimeError("boom")


def batchnorm(num_features):
    return nn.Sequential(nn.BatchNorm1d(num_features), nn.Linear(num_features, 1))


NOT_CALLABLE = 3
"""


@pytest.fixture
def plugin_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"fedcare_test_plugin_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def plugin_spec(reference: str, **args: int | float | str | bool) -> ModelSpec:
    return ModelSpec(name=ModelName.PLUGIN, plugin=reference, plugin_args=args)


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("spec", [MLP, LOGISTIC], ids=["mlp", "logistic"])
def test_same_seed_same_weights_other_seed_other_weights(spec: ModelSpec) -> None:
    a = build_model(spec, BINARY, 5, seed=1)
    b = build_model(spec, BINARY, 5, seed=1)
    c = build_model(spec, BINARY, 5, seed=2)
    assert same_state(a, b)
    assert not same_state(a, c)


def test_build_model_leaves_the_global_rng_alone() -> None:
    before = torch.random.get_rng_state()
    build_model(MLP, BINARY, 5, seed=9)
    assert torch.equal(before, torch.random.get_rng_state())


@pytest.mark.parametrize("spec", [MLP, LOGISTIC], ids=["mlp", "logistic"])
@pytest.mark.parametrize("task", list(Task))
def test_output_has_shape_n(spec: ModelSpec, task: Task) -> None:
    if task is Task.SURVIVAL and spec is LOGISTIC:
        spec = ModelSpec(name=ModelName.COX)  # the linear model of survival
    model = build_model(spec, task, 5)
    assert model(torch.randn(7, 5)).shape == (7,)


def test_state_dict_holds_only_float_tensors_with_stable_keys() -> None:
    state = build_model(MLP, BINARY, 5).state_dict()
    assert list(state) == list(build_model(MLP, BINARY, 5, seed=3).state_dict())
    assert {"input_mean", "input_std"} <= set(state)
    assert all(v.dtype == torch.float32 for v in state.values())
    assert state["input_mean"].shape == (5,)
    torch.testing.assert_close(state["input_mean"], torch.zeros(5))
    torch.testing.assert_close(state["input_std"], torch.ones(5))


def test_logistic_regression_is_one_linear_layer() -> None:
    model = build_model(LOGISTIC, BINARY, 6)
    assert sum(p.numel() for p in model.parameters()) == 6 + 1


def test_mlp_layer_sizes() -> None:
    model = build_model(MLP, BINARY, 6)
    assert sum(p.numel() for p in model.parameters()) == (6 * 8 + 8) + (8 * 4 + 4) + (4 + 1)
    no_hidden = build_model(ModelSpec(name=ModelName.MLP, hidden_units=[]), BINARY, 6)
    assert sum(p.numel() for p in no_hidden.parameters()) == 7


def test_dropout_is_active_in_training_mode_only() -> None:
    spec = ModelSpec(name=ModelName.MLP, hidden_units=[64], dropout=0.5)
    model = build_model(spec, BINARY, 4)
    x = torch.randn(32, 4)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    plain = build_model(ModelSpec(name=ModelName.MLP, hidden_units=[64]), BINARY, 4)
    assert torch.equal(plain(x), plain(x))


def test_standardization_is_applied_before_the_core() -> None:
    model = build_model(LOGISTIC, BINARY, 3)
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mean, std = np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 0.5])
    expected = model(torch.from_numpy(((x.numpy() - mean) / std).astype(np.float32)))
    set_standardization(model, mean, std)
    torch.testing.assert_close(model(x), expected)


def test_standardization_clamps_std_and_checks_length() -> None:
    model = build_model(LOGISTIC, BINARY, 2)
    set_standardization(model, np.zeros(2), np.array([0.0, 3.0]))
    std = model.state_dict()["input_std"]
    assert std[0].item() == pytest.approx(1e-6) and std[1].item() == 3.0
    with pytest.raises(ValueError, match="2 values"):
        set_standardization(model, np.zeros(3), np.ones(3))


def test_plugin_with_args(plugin_module: str) -> None:
    spec = plugin_spec(f"{plugin_module}:tiny", width=5)
    model = build_model(spec, BINARY, 4, seed=2)
    assert model(torch.randn(3, 4)).shape == (3,)
    assert sum(p.numel() for p in model.parameters()) == (4 * 5 + 5) + (5 + 1)
    assert same_state(model, build_model(spec, BINARY, 4, seed=2))
    assert "input_mean" in model.state_dict()


def test_plugin_returning_flat_output(plugin_module: str) -> None:
    model = build_model(plugin_spec(f"{plugin_module}:flat"), Task.REGRESSION, 4)
    assert model(torch.ones(2, 4)).tolist() == [4.0, 4.0]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("fedcare_no_such_module_xyz:make", "cannot import module 'fedcare_no_such_module_xyz'"),
        ("{mod}:missing", "has no callable 'missing'"),
        ("{mod}:NOT_CALLABLE", "has no callable 'NOT_CALLABLE'"),
        ("{mod}:not_a_module", "returned str, expected a torch.nn.Module"),
        ("{mod}:raises", "RuntimeError: boom"),
        ("{mod}:batchnorm", "num_batches_tracked"),
    ],
)
def test_plugin_errors(plugin_module: str, reference: str, expected: str) -> None:
    reference = reference.format(mod=plugin_module)
    with pytest.raises(SpecError) as info:
        build_model(plugin_spec(reference), BINARY, 4)
    message = str(info.value)
    assert expected in message
    assert reference in message
    assert "\n" not in message


def test_plugin_called_with_unknown_args(plugin_module: str) -> None:
    with pytest.raises(SpecError, match="unexpected keyword"):
        build_model(plugin_spec(f"{plugin_module}:tiny", depth=3), BINARY, 4)
