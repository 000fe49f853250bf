"""fedcare-operator: the Kubernetes control plane of fedcare.

``kopf run -m fedcare_operator`` (or the ``fedcare-operator`` command) runs it: importing this
package registers the kopf handlers of :mod:`fedcare_operator.handlers` in kopf's default
registry (tests use :func:`fedcare_operator.handlers.register` with a fresh one).

The layers, from the bottom: :mod:`~fedcare_operator.settings` and
:mod:`~fedcare_operator.builders` (pure, spec -> manifest), :mod:`~fedcare_operator.certs`,
:mod:`~fedcare_operator.kube` (the only module that talks to the Kubernetes API),
:mod:`~fedcare_operator.reconcile`, :mod:`~fedcare_operator.status_daemon`, and
:mod:`~fedcare_operator.handlers` on top. It depends on the runtime's ``fedcare.spec``,
``fedcare.pki`` and ``fedcare.transport``; the runtime never imports this package.
"""

import kopf

from fedcare_operator import handlers

handlers.register(kopf.get_default_registry())

__all__ = ["handlers"]
