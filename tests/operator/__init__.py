"""Tests of the operator side: CRDs, and the API as kubectl and kopf see it."""
