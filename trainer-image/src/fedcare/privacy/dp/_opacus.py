"""Typed wrappers around the parts of Opacus fedcare uses (Opacus ships no type stubs).

Everything untyped is touched here only, so the rest of :mod:`fedcare.privacy.dp` is checked
by ``mypy --strict``. Opacus is an optional dependency (the ``train`` extra): importing this
module without it raises :class:`~fedcare.privacy.dp.errors.DpError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, cast

import numpy as np
import torch
from torch import nn

from fedcare.privacy.dp.errors import DpError

try:
    from opacus.accountants import create_accountant  # type: ignore[import-untyped]
    from opacus.accountants.utils import (  # type: ignore[import-untyped]
        get_noise_multiplier as _get_noise_multiplier,
    )
    from opacus.grad_sample.utils import prepare_module  # type: ignore[import-untyped]
    from opacus.optimizers import (  # type: ignore[import-untyped]
        DPOptimizer,
        DPOptimizerFastGradientClipping,
    )
    from opacus.utils.fast_gradient_clipping_utils import (  # type: ignore[import-untyped]
        DPLossFastGradientClipping,
    )
    from opacus.validators.module_validator import (  # type: ignore[import-untyped]
        ModuleValidator,
    )
except ImportError as exc:  # pragma: no cover - the train extra is installed in CI
    raise DpError(
        f"differential privacy needs Opacus (pip install 'fedcare[train]'): {exc}"
    ) from exc

#: ``(noise_multiplier, sample_rate, steps)`` runs, as Opacus' accountants keep them.
History = list[tuple[float, float, int]]

#: Warnings Opacus or torch emit that say nothing about the outcome: torch's note that full
#: backward hooks fire on module outputs when the inputs need no gradient (true for any first
#: layer, on every step), Opacus' secure-RNG reminder, and the RDP conversion's note that the
#: best order is at the end of the searched range (the epsilon is still a valid upper bound,
#: only not the tightest one).
_NOISE_WARNINGS = (
    "Full backward hook is firing when gradients are computed with respect to module outputs",
    "Secure RNG turned off",
    "Optimal order is the",
)


@contextmanager
def quiet_opacus() -> Iterator[None]:
    """Silence the per-step warnings listed in ``_NOISE_WARNINGS`` (and only those)."""
    with warnings.catch_warnings():
        for text in _NOISE_WARNINGS:
            warnings.filterwarnings("ignore", message=f".*{text}.*")
        yield


def epsilon_of(history: Sequence[tuple[float, float, int]], delta: float, mechanism: str) -> float:
    """Epsilon at ``delta`` of the composed runs in ``history``, by Opacus' ``mechanism``
    accountant (``"rdp"`` or ``"prv"``); 0 for an empty history."""
    if not history:
        return 0.0
    accountant = create_accountant(mechanism=mechanism)
    accountant.history = [(float(s), float(q), int(k)) for s, q, k in history]
    # PRV at sample rate 1 takes log(1 - q) = log(0) inside a numpy ``where`` whose branch
    # discards it: harmless, but numpy warns.
    with quiet_opacus(), np.errstate(divide="ignore"):
        return float(accountant.get_epsilon(delta=delta))


def noise_multiplier_for(
    *, target_epsilon: float, delta: float, sample_rate: float, steps: int, mechanism: str
) -> float:
    """The smallest noise multiplier (within Opacus' 0.01 epsilon tolerance) that spends at
    most ``target_epsilon`` at ``delta`` over ``steps`` steps at ``sample_rate``."""
    try:
        with quiet_opacus():
            sigma = _get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=mechanism,
            )
    except ValueError as exc:
        raise DpError(
            f"no noise multiplier reaches epsilon {target_epsilon} at delta {delta} over "
            f"{steps} steps at sample rate {sample_rate:.6g}: {exc}"
        ) from exc
    return float(sigma)


def validate_module(model: nn.Module) -> None:
    """Raise :class:`DpError` naming the layers DP-SGD cannot train (e.g. BatchNorm)."""
    errors = cast("list[Exception]", ModuleValidator.validate(model, strict=False))
    if errors:
        listed = "; ".join(str(e) for e in errors[:5])
        raise DpError(f"the model cannot be trained with DP-SGD: {listed}")


def has_tied_parameters(model: nn.Module) -> bool:
    """Whether some trainable parameter belongs to more than one module (ghost clipping
    cannot handle parameter tying)."""
    owners: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                owners[id(p)] = owners.get(id(p), 0) + 1
    return any(count > 1 for count in owners.values())


class Hooks(Protocol):
    """What fedcare uses of Opacus' grad-sample hooks object."""

    def cleanup(self) -> None:
        """Remove the hooks and every attribute Opacus put on the parameters."""


class DpOptimizer(Protocol):
    """What fedcare uses of Opacus' ``DPOptimizer``."""

    def zero_grad(self, set_to_none: bool = ...) -> None:
        """Clear gradients (and Opacus' per-sample state)."""

    def step(self) -> None:
        """Clip, noise and apply the gradients."""

    def attach_step_hook(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn(optimizer)`` after the noise is added, before the parameters move."""


class DpLoss(Protocol):
    """A per-sample loss whose ``backward`` clips (Opacus' ghost-clipping criterion)."""

    def __call__(self, output: torch.Tensor, target: torch.Tensor) -> Any:
        """The loss of a batch; ``backward()`` on it does both of ghost clipping's passes."""


class DpParts:
    """Hooks, DP optimizer and loss for one round; :meth:`close` detaches them."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        criterion: nn.Module,
        *,
        mode: str,
        noise_multiplier: float,
        max_grad_norm: float,
        expected_batch_size: int,
        generator: torch.Generator,
    ) -> None:
        """Attach Opacus to ``model`` in place (no wrapper: state-dict keys do not change).

        ``mode`` is ``"ghost"`` (ghost clipping, two backward passes, no per-sample gradients
        stored) or ``"hooks"`` (per-sample gradients from hooks).
        """
        common: dict[str, Any] = {"batch_first": True, "loss_reduction": "mean"}
        opt_kwargs: dict[str, Any] = {
            "noise_multiplier": noise_multiplier,
            "max_grad_norm": max_grad_norm,
            "expected_batch_size": expected_batch_size,
            "loss_reduction": "mean",
            "generator": generator,
        }
        self.mode = mode
        self._model = model
        if mode == "ghost":
            self.hooks = cast(
                Hooks,
                prepare_module(
                    model,
                    "ghost",
                    False,
                    max_grad_norm=max_grad_norm,
                    use_ghost_clipping=True,
                    **common,
                ),
            )
            opt = DPOptimizerFastGradientClipping(optimizer, **opt_kwargs)
            self.loss: DpLoss = cast(
                DpLoss, DPLossFastGradientClipping(self.hooks, opt, criterion, "mean")
            )
        elif mode == "hooks":
            self.hooks = cast(Hooks, prepare_module(model, "hooks", False, **common))
            opt = DPOptimizer(optimizer, **opt_kwargs)
            self.loss = cast(DpLoss, criterion)
        else:
            raise ValueError(f"grad-sample mode must be 'ghost' or 'hooks', got {mode!r}")
        self.optimizer = cast(DpOptimizer, opt)

    def close(self) -> None:
        """Detach Opacus from the model: hooks, per-parameter attributes, and the activations
        a step cut short (an exception mid-step) leaves on the modules."""
        self.hooks.cleanup()
        for module in self._model.modules():
            for attr in ("activations", "max_batch_len"):
                if attr in module.__dict__:
                    delattr(module, attr)
