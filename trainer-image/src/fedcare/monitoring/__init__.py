"""Monitoring: Prometheus metrics and the coordinator's HTTP side."""

from fedcare.monitoring.http import HttpSide
from fedcare.monitoring.metrics import CoordinatorMetrics

__all__ = ["CoordinatorMetrics", "HttpSide"]
