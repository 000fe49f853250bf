"""Test support shared by the test suites: an emulated Kubernetes API server (kmock-based).

No kube-apiserver can run on the machines these tests run on, so :mod:`tests.support.apiserver`
emulates the parts of it that kopf and kubectl use; see its module docstring for what it does
and what it does not.
"""

from tests.support.apiserver import ApiServer, ApiServerEmulator, HttpResult, start_apiserver

__all__ = ["ApiServer", "ApiServerEmulator", "HttpResult", "start_apiserver"]
