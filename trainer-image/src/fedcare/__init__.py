"""fedcare: federated learning for hospitals; patient records never leave their site.

Python API (imports are lazy, so ``import fedcare`` stays light):

- ``fedcare.run(path)`` runs a FederatedJob manifest on this machine and returns its status;
- ``fedcare.Coordinator(config_path=...).start()`` / ``.train()`` runs the coordinator role;
- ``fedcare.ParticipantNode(config_path=...).join_network()`` runs one site's trainer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from fedcare.coordinator import Coordinator
    from fedcare.local import run
    from fedcare.trainer import ParticipantNode

__all__ = ["Coordinator", "ParticipantNode", "__version__", "run"]


def __getattr__(name: str) -> Any:
    if name == "Coordinator":
        from fedcare.coordinator import Coordinator

        return Coordinator
    if name == "ParticipantNode":
        from fedcare.trainer import ParticipantNode

        return ParticipantNode
    if name == "run":
        from fedcare.local import run

        return run
    raise AttributeError(f"module 'fedcare' has no attribute {name!r}")
