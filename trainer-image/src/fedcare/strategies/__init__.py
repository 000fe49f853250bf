"""Server-side aggregation strategies, looked up by name from ``spec.strategy``."""

from fedcare.strategies.base import Strategy
from fedcare.strategies.fedavg import FedAvg, fedavg_step
from fedcare.strategies.streaming import StreamingMean

_REGISTRY: dict[str, type[Strategy]] = {FedAvg.name: FedAvg}


def create_strategy(name: str) -> Strategy:
    """Instantiate the registered strategy ``name``."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {sorted(_REGISTRY)}") from None


__all__ = ["FedAvg", "Strategy", "StreamingMean", "create_strategy", "fedavg_step"]
