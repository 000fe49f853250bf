"""fedcare-operator: the Kubernetes control plane of fedcare (kopf handlers, pure builders).

Only a skeleton so far: the reconcilers land with the operator work. It depends on
``fedcare.spec`` only; the runtime never imports this package.
"""

__all__: list[str] = []
