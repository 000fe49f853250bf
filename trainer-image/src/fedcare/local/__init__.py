"""Local mode: ``fedcare run job.yaml`` executes a FederatedJob as processes on this machine."""

from fedcare.local.runner import LocalRun, run

__all__ = ["LocalRun", "run"]
