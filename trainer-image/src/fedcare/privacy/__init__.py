"""Privacy mechanisms of fedcare (``spec.privacy``).

- :mod:`fedcare.privacy.secagg`: secure aggregation by masking (Bonawitz et al. 2017).
- :mod:`fedcare.privacy.ckks`: CKKS homomorphic aggregation.
- :mod:`fedcare.privacy.dp`: differential privacy and per-site budgets.

Subpackages are imported explicitly; importing this package loads none of them.
"""
