"""Tests against a real Kubernetes cluster (kind); skipped unless pytest gets ``--with-e2e``."""
