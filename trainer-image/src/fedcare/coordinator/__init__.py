"""The coordinator: gRPC server and round engine of one federated job."""

from fedcare.coordinator.app import Coordinator, run_coordinator

__all__ = ["Coordinator", "run_coordinator"]
