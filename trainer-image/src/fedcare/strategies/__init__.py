"""Server-side aggregation strategies, built from ``spec.strategy`` by :func:`create_strategy`.

One module per algorithm, the maths as pure numpy functions beside a thin class:
FedAvg (:mod:`.fedavg`), FedProx (:mod:`.fedprox`), FedAdagrad/FedAdam/FedYogi
(:mod:`.fedopt`), coordinate-wise median (:mod:`.median`), trimmed mean
(:mod:`.trimmed_mean`), Krum and Multi-Krum (:mod:`.krum`).
"""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ValidationError

from fedcare.spec.job import StrategyName, StrategySpec
from fedcare.strategies.base import RobustStrategy, Strategy
from fedcare.strategies.fedavg import FedAvg, fedavg_step
from fedcare.strategies.fedopt import (
    FedAdagrad,
    FedAdam,
    FedOpt,
    FedYogi,
    fedadagrad_step,
    fedadam_step,
    fedyogi_step,
)
from fedcare.strategies.fedprox import FedProx, proximal_term
from fedcare.strategies.krum import Krum, MultiKrum, krum, krum_scores, krum_select, multi_krum
from fedcare.strategies.median import Median, coordinate_median
from fedcare.strategies.streaming import StreamingMean
from fedcare.strategies.trimmed_mean import TrimmedMean, trimmed_mean


def _need(value: float | int | None, field: str, spec: StrategySpec) -> float:
    if value is None:  # StrategySpec's validator requires it; guards hand-built specs
        raise ValueError(f"strategy.{field} is required for {spec.name.value!r}")
    return value


_FACTORIES: dict[StrategyName, Callable[[StrategySpec], Strategy]] = {
    StrategyName.FEDAVG: lambda s: FedAvg(),
    StrategyName.FEDPROX: lambda s: FedProx(_need(s.mu, "mu", s)),
    StrategyName.FEDADAGRAD: lambda s: FedAdagrad(
        eta=s.server_learning_rate, beta1=s.beta1, tau=s.tau
    ),
    StrategyName.FEDADAM: lambda s: FedAdam(
        eta=s.server_learning_rate, beta1=s.beta1, beta2=s.beta2, tau=s.tau
    ),
    StrategyName.FEDYOGI: lambda s: FedYogi(
        eta=s.server_learning_rate, beta1=s.beta1, beta2=s.beta2, tau=s.tau
    ),
    StrategyName.MEDIAN: lambda s: Median(),
    StrategyName.TRIMMED_MEAN: lambda s: TrimmedMean(_need(s.trim_fraction, "trimFraction", s)),
    StrategyName.KRUM: lambda s: Krum(int(_need(s.byzantine, "byzantine", s))),
    StrategyName.MULTI_KRUM: lambda s: MultiKrum(
        int(_need(s.byzantine, "byzantine", s)), s.multi_krum_select
    ),
}


def create_strategy(spec: StrategySpec | str) -> Strategy:
    """A fresh strategy for ``spec`` (``spec.strategy`` of a job).

    A bare name is still accepted (``create_strategy("fedavg")``), for strategies that need no
    parameters; it is validated as ``StrategySpec(name=...)``.
    """
    if isinstance(spec, str):
        if spec not in {n.value for n in StrategyName}:
            raise ValueError(
                f"unknown strategy {spec!r}; known: {sorted(n.value for n in StrategyName)}"
            )
        try:
            spec = StrategySpec(name=StrategyName(spec))
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            where = ".".join(str(part) for part in ("strategy", *first["loc"]))
            raise ValueError(f"{where}: {first['msg']}") from None
    return _FACTORIES[spec.name](spec)


__all__ = [
    "FedAdagrad",
    "FedAdam",
    "FedAvg",
    "FedOpt",
    "FedProx",
    "FedYogi",
    "Krum",
    "Median",
    "MultiKrum",
    "RobustStrategy",
    "Strategy",
    "StreamingMean",
    "TrimmedMean",
    "coordinate_median",
    "create_strategy",
    "fedadagrad_step",
    "fedadam_step",
    "fedavg_step",
    "fedyogi_step",
    "krum",
    "krum_scores",
    "krum_select",
    "multi_krum",
    "proximal_term",
    "trimmed_mean",
]
