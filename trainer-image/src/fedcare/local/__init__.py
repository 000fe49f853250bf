"""Local mode: ``fedcare run job.yaml`` executes a FederatedJob as processes on this machine."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedcare.local.runner import LocalRun, run

__all__ = ["LocalRun", "run"]


def __getattr__(name: str) -> Any:
    # Lazy, so that ``fedcare.local.launch`` (the CLI's --launcher choices, the fork server's
    # children) is importable without gRPC and the PKI.
    if name in __all__:
        from fedcare.local import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'fedcare.local' has no attribute {name!r}")
