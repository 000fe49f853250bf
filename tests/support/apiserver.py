"""An emulated Kubernetes API server for tests, built on kmock (no kube-apiserver runs here).

:class:`ApiServerEmulator` is a kmock handler (``kmock.RawHandler``): tests may still put kmock
reactions in front of it (``emulator['patch', kmock.resource(...)] << 500`` to inject a failure)
and read the request log (``list(emulator)``). Everything no reaction answers falls through to the
emulator, which keeps objects in memory and behaves like the real API server where kopf and
kubectl touch it:

- discovery (``/api``, ``/apis``, ``/apis/<group>/<version>``; core groupVersion ``v1``),
  ``/version``, and minimal ``/openapi/v3`` documents, so that ``kubectl apply`` sends
  ``fieldValidation=Strict`` and lets the server validate;
- CRD registration: a posted CustomResourceDefinition (structurally checked) makes its
  resources discoverable and servable; deleting it deletes its objects;
- ``uid``, ``resourceVersion``, ``generation`` (bumped on changes outside metadata and status)
  and ``creationTimestamp`` stamping; optimistic concurrency (409 on a stale resourceVersion);
- the ``status`` subresource: ``/status`` writes change only ``.status``, main-resource writes
  never do, create drops ``.status``;
- custom resources pruned, defaulted and validated against the CRD's ``openAPIV3Schema`` with
  ``jsonschema`` (422 ``Status`` in the real server's words, causes with field paths), unknown
  fields refused under ``fieldValidation=Strict`` (400, like the real server) or pruned with a
  ``Warning`` header otherwise, list-map keys unique, ``self == oldSelf`` CEL rules enforced,
  unchanged invalid values tolerated on update (validation ratcheting);
- JSON patch (422 on a failed ``test``), merge patch, server-side apply and strategic merge
  patch (both approximated as merge patches), PUT;
- lists with ``kind: <Kind>List``/``apiVersion``/``resourceVersion``, ``limit``/``continue``,
  label selectors (equality and set based), ``metadata.name``/``namespace`` field selectors;
- watches from a resourceVersion (410 when too old), with ``timeoutSeconds``, and selector
  transitions (an object leaving a selector is DELETED for that watch);
- ``Table`` responses with the CRD's printer columns (and for watches), PartialObjectMetadata;
- finalizers (``deletionTimestamp`` first, removal once they are gone), ownerReference
  garbage collection (Background/Foreground cascade, Orphan), namespace termination;
- namespaces must exist for namespaced objects; ``default``, ``kube-system``, ``kube-public``
  and ``kube-node-lease`` exist from the start.

:func:`start_apiserver` runs one in a background thread on a free loopback port and writes a
kubeconfig for it; :class:`ApiServer` is what a test gets (``kubectl(...)``, ``request(...)``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import datetime as dt
import hashlib
import json
import logging
import os
import random
import re
import shutil
import string
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal.rendering import Response  # kmock 0.8 leaves it out of its __all__

from tests.support import kpatch, kproto, kschema

log = logging.getLogger(__name__)

Json = Any
JsonDict = dict[str, Any]
T = TypeVar("T")

#: What ``/version`` reports (kubectl 1.32 is the client these tests use).
SERVER_VERSION: JsonDict = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-fedcare-emulator",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}
#: Namespaces a fresh cluster has.
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
#: Watch events kept for resuming watches from a resourceVersion.
EVENT_HISTORY = 10_000
_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_DNS_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_JSON = "application/json"
_JSON_PATCH = "application/json-patch+json"
_MERGE_PATCH = "application/merge-patch+json"
_STRATEGIC_PATCH = "application/strategic-merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def human_duration(seconds: float) -> str:
    """Kubernetes' ``duration.HumanDuration`` (the ``AGE`` column)."""
    secs = int(seconds)
    if secs < -1:
        return "<invalid>"
    if secs < 0:
        return "0s"
    if secs < 120:
        return f"{secs}s"
    minutes = secs // 60
    if minutes < 10:
        rest = secs % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = secs // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if rest == 0 else f"{hours // 24 // 365}y{rest}d"
    return f"{hours // 24 // 365}y"


def _version_key(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first, others last."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if m is None:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


# ---------------------------------------------------------------------------------------------
# Resource types


@dataclass
class ResourceType:
    """One served resource of one group/version."""

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    #: Field-selector labels besides ``metadata.name`` and ``metadata.namespace``.
    field_labels: tuple[str, ...] = ()
    #: Subresources served (only ``status`` has behaviour here).
    subresources: frozenset[str] = frozenset()
    #: The CRD's ``openAPIV3Schema`` for custom resources; ``None`` for built-ins (not checked).
    schema: JsonDict | None = None
    printer_columns: list[JsonDict] = field(default_factory=list)
    #: The CRD that defines this type, if any.
    crd_name: str | None = None
    validator: kschema.SchemaValidator | None = None

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, else ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The kind of a list of these."""
        return f"{self.kind}List"

    @property
    def qualified_resource(self) -> str:
        """``plural.group`` (``plural`` in the core group), as error messages name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def qualified_kind(self) -> str:
        """``Kind.group`` (``Kind`` in the core group), as 422 messages name it."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects are stored once per group and plural, whatever version serves them."""
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        """Whether writes to the main resource leave ``.status`` alone."""
        return "status" in self.subresources


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = False,
    categories: tuple[str, ...] = (),
    fields: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        field_labels=fields,
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=short,
        categories=categories,
        subresources=frozenset({"status"} if status else set()),
    )


#: Built-in resources served without schemas (objects are stored as they come).
BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _builtin(
        "",
        "v1",
        "namespaces",
        "Namespace",
        namespaced=False,
        short=("ns",),
        status=True,
        fields=("status.phase",),
    ),
    _builtin(
        "",
        "v1",
        "pods",
        "Pod",
        short=("po",),
        status=True,
        categories=("all",),
        fields=("spec.nodeName", "spec.serviceAccountName", "status.phase", "status.podIP"),
    ),
    _builtin("", "v1", "services", "Service", short=("svc",), status=True, categories=("all",)),
    _builtin("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("", "v1", "secrets", "Secret", fields=("type",)),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin(
        "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True
    ),
    _builtin(
        "",
        "v1",
        "events",
        "Event",
        short=("ev",),
        fields=(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
    ),
    _builtin(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short=("deploy",),
        status=True,
        categories=("all",),
    ),
    _builtin(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short=("sts",),
        status=True,
        categories=("all",),
    ),
    _builtin("batch", "v1", "jobs", "Job", status=True, categories=("all",)),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    _builtin("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _builtin("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _builtin("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    _builtin(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    _builtin(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        short=("crd", "crds"),
        status=True,
        categories=("api-extensions",),
    ),
)
_CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
_PRESERVE: JsonDict = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_NAMESPACE_KEY = ("", "namespaces")


# ---------------------------------------------------------------------------------------------
# Errors as the API server returns them


class ApiError(Exception):
    """An API answer other than success: rendered as a ``Status`` with its HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: JsonDict | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> JsonDict:
        """The ``Status`` object."""
        out: JsonDict = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def _not_found(rt: ResourceType, name: str) -> ApiError:
    details = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return ApiError(404, "NotFound", f'{rt.qualified_resource} "{name}" not found', details)


def _already_exists(rt: ResourceType, name: str) -> ApiError:
    details = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return ApiError(
        409, "AlreadyExists", f'{rt.qualified_resource} "{name}" already exists', details
    )


def _conflict(rt: ResourceType, name: str) -> ApiError:
    details = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.qualified_resource} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details,
    )


def _invalid(rt: ResourceType, name: str, errors: list[kschema.FieldError]) -> ApiError:
    listed = str(errors[0]) if len(errors) == 1 else f"[{', '.join(str(e) for e in errors)}]"
    details: JsonDict = {"name": name, "kind": rt.kind, "causes": [e.cause() for e in errors]}
    if rt.group:
        details["group"] = rt.group
    return ApiError(422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {listed}', details)


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _no_route() -> ApiError:
    return ApiError(
        404,
        "NotFound",
        "the server could not find the requested resource",
        {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]},
    )


# ---------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class Route:
    """What a resource URL addresses."""

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


@dataclass
class _Event:
    rv: int
    key: tuple[str, str]
    type: str
    obj: JsonDict
    old: JsonDict | None


@dataclass
class _Call:
    """One request as the emulator sees it."""

    method: str
    path: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    raw: aiohttp.web.BaseRequest


def _as_dict(value: Json) -> JsonDict:
    return value if isinstance(value, dict) else {}


def _without(obj: JsonDict, keys: set[str]) -> JsonDict:
    return {k: v for k, v in obj.items() if k not in keys}


def _first(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name)
    return value if value else None


# ---------------------------------------------------------------------------------------------
# The emulator


@attrs.define(kw_only=True)
class ApiServerEmulator(kmock.RawHandler):
    """A kmock handler that serves a stateful, validating Kubernetes API (see the module doc)."""

    _served: dict[tuple[str, str, str], ResourceType] = attrs.field(factory=dict, init=False)
    _store: dict[tuple[str, str], dict[tuple[str, str], JsonDict]] = attrs.field(
        factory=dict, init=False
    )
    _rv: int = attrs.field(default=0, init=False)
    _events: deque[_Event] = attrs.field(factory=lambda: deque(maxlen=EVENT_HISTORY), init=False)
    _compacted_rv: int = attrs.field(default=0, init=False)
    _watchers: set[asyncio.Event] = attrs.field(factory=set, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    _calls: dict[int, _Call] = attrs.field(factory=dict, init=False)
    #: Server-side failures of the emulator itself (bugs, unsupported input): tests assert empty.
    failures: list[BaseException] = attrs.field(factory=list, init=False)
    #: Things the emulator met but does not emulate (e.g. CEL rules other than self == oldSelf).
    gaps: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        for rt in BUILTIN_RESOURCES:
            self._served[(rt.group, rt.version, rt.plural)] = rt
        for name in INITIAL_NAMESPACES:
            self._store_object(self._type("", "v1", "namespaces"), None, self._namespace_obj(name))
        self.fallback << self._serve

    # -- kmock plumbing --------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Serve one HTTP request (kmock 0.8's own parser fails on ``/api/v1/namespaces``)."""
        body = await raw_request.read()
        path = raw_request.path
        try:
            data = json.loads(body) if body else None
        except ValueError:
            data = None
        route = self._route_or_none(path)
        method = raw_request.method.upper()
        params = dict(raw_request.query)
        action: kmock.action | None = None
        if route is not None:
            if method == "GET":
                watching = params.get("watch") in {"true", "1"}
                action = (
                    kmock.action.WATCH
                    if watching
                    else kmock.action.FETCH
                    if route.name
                    else kmock.action.LIST
                )
            elif method == "POST" and route.name is None:
                action = kmock.action.CREATE
            elif method in {"PATCH", "PUT"} and route.name:
                action = kmock.action.UPDATE
            elif method == "DELETE" and route.name:
                action = kmock.action.DELETE
        request = kmock.Request(
            id=len(self._requests),
            method=method,
            url=raw_request.url,
            params=params,
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            body=body,
            text=body.decode("utf-8", "replace"),
            data=data,
            action=action,
            resource=None
            if route is None
            else kmock.resource(route.rt.group, route.rt.version, route.rt.plural),
            namespace=None if route is None else route.namespace,
            name=None if route is None else route.name,
            subresource=None if route is None else route.subresource,
            raw_request=raw_request,
        )
        self._requests.append(request)
        self._calls[id(request)] = _Call(
            method, path, params, dict(raw_request.headers), body, raw_request
        )
        try:
            return await self._handle(request)
        except Exception as exc:  # a bug of the emulator or of a test's reaction
            log.exception("emulated API server failed on %s %s", method, path)
            self.failures.append(exc)
            err = ApiError(500, "InternalError", f"emulator failure: {exc!r}")
            return aiohttp.web.json_response(err.status(), status=500)
        finally:
            self._calls.pop(id(request), None)

    async def _serve(self, request: kmock.Request) -> Response:
        call = self._calls[id(request)]
        try:
            return self._dispatch(call)
        except ApiError as err:
            return Response(status=err.code, payload=err.status())

    def close(self) -> None:
        """End the open watch streams (before the HTTP server stops)."""
        self._closing = True
        for waiter in list(self._watchers):
            waiter.set()

    # -- state helpers ---------------------------------------------------------------------

    def _type(self, group: str, version: str, plural: str) -> ResourceType:
        return self._served[(group, version, plural)]

    def _types_of(self, key: tuple[str, str]) -> list[ResourceType]:
        return [rt for rt in self._served.values() if rt.storage_key == key]

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], JsonDict]:
        return self._store.setdefault(rt.storage_key, {})

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _emit(self, key: tuple[str, str], kind: str, obj: JsonDict, old: JsonDict | None) -> None:
        if len(self._events) == self._events.maxlen:
            self._compacted_rv = self._events[0].rv
        self._events.append(
            _Event(
                self._rv,
                key,
                kind,
                copy.deepcopy(obj),
                copy.deepcopy(old) if old is not None else None,
            )
        )
        for waiter in list(self._watchers):
            waiter.set()

    @staticmethod
    def _namespace_obj(name: str) -> JsonDict:
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }

    def _store_object(self, rt: ResourceType, namespace: str | None, obj: JsonDict) -> JsonDict:
        meta = obj.setdefault("metadata", {})
        meta["uid"] = str(uuid.uuid4())
        meta["resourceVersion"] = str(self._next_rv())
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()
        meta.pop("deletionTimestamp", None)
        meta.pop("deletionGracePeriodSeconds", None)
        meta.pop("selfLink", None)
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        self._bucket(rt)[(namespace or "", meta["name"])] = obj
        self._emit(rt.storage_key, "ADDED", obj, None)
        return obj

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion handed out."""
        return self._rv

    def objects(self, group: str, plural: str) -> list[JsonDict]:
        """Copies of the stored objects of one resource (call on the server's thread)."""
        return [copy.deepcopy(o) for o in self._store.get((group, plural), {}).values()]

    # -- routing -----------------------------------------------------------------------------

    def _route_or_none(self, path: str) -> Route | None:
        try:
            return self._route(path)
        except ApiError:
            return None

    def _route(self, path: str) -> Route | None:
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            candidate = self._served.get((group, version, rest[2]))
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        rt = self._served.get((group, version, rest[0]))
        if rt is None or len(rest) > 3:
            raise _no_route()
        name = rest[1] if len(rest) >= 2 else None
        sub = rest[2] if len(rest) == 3 else None
        if sub is not None and sub not in rt.subresources:
            raise _no_route()
        return Route(rt, namespace, name, sub)

    def _dispatch(self, call: _Call) -> Response:
        path = "/" + call.path.strip("/")
        if call.method == "GET":
            static = self._static(path)
            if static is not None:
                return static
        route = self._route(path)
        if route is None:
            if call.method == "GET" and path.startswith(("/api", "/apis")):
                return self._discovery(path)
            raise _no_route()
        rt, params = route.rt, call.params
        if rt.namespaced and route.namespace is None and call.method not in {"GET"}:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        if not rt.namespaced and route.namespace is not None:
            raise _no_route()
        if call.method == "GET":
            if params.get("watch") in {"true", "1"}:
                return self._watch_response(route, call)
            if route.name is None:
                return self._respond(self._list(route, params), call, route)
            return self._respond(self._get(route), call, route)
        if call.method == "POST" and route.name is None:
            return self._created(self._create(route, self._body(call), call))
        if call.method == "PUT" and route.name is not None:
            return self._ok(self._update(route, self._body(call), call))
        if call.method == "PATCH" and route.name is not None:
            return self._ok(self._patch(route, call))
        if call.method == "DELETE":
            opts = self._body(call, optional=True) or {}
            if route.name is None:
                return self._ok(self._delete_collection(route, params, opts))
            return self._ok(self._delete(route, params, opts))
        raise ApiError(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )

    def _ok(self, result: tuple[JsonDict, list[str]]) -> Response:
        obj, warnings = result
        return Response(status=200, payload=obj, headers=self._warning_headers(warnings))

    def _created(self, result: tuple[JsonDict, list[str]]) -> Response:
        obj, warnings = result
        return Response(status=201, payload=obj, headers=self._warning_headers(warnings))

    @staticmethod
    def _warning_headers(warnings: list[str]) -> dict[str, str | None] | None:
        if not warnings:
            return None
        return {"Warning": ", ".join(f"299 - {json.dumps(w)}" for w in warnings)}

    @staticmethod
    def _body(call: _Call, *, optional: bool = False) -> Json:
        ctype = call.headers.get("Content-Type", _JSON).split(";")[0].strip()
        if not call.body:
            if optional:
                return None
            raise _bad_request("the request body is empty")
        if ctype == "application/vnd.kubernetes.protobuf":
            try:
                return kproto.decode(call.body)
            except kproto.ProtobufError as err:
                raise ApiError(415, "UnsupportedMediaType", str(err)) from None
        if "protobuf" in ctype or "cbor" in ctype:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the emulated API server speaks JSON only; the body was {ctype}",
            )
        try:
            if ctype == _APPLY_PATCH:
                return yaml.safe_load(call.body)
            return json.loads(call.body)
        except (ValueError, yaml.YAMLError) as err:
            raise _bad_request(f"the body of the request could not be decoded: {err}") from None

    # -- static endpoints ----------------------------------------------------------------

    def _static(self, path: str) -> Response | None:
        if path == "/version":
            return Response(status=200, payload=dict(SERVER_VERSION))
        if path in {"/healthz", "/readyz", "/livez"}:
            return Response(status=200, payload=b"ok")
        if path == "/api":
            return Response(
                status=200,
                payload={
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:443"}
                    ],
                },
            )
        if path == "/apis":
            return Response(status=200, payload=self._group_list())
        if path == "/openapi/v3":
            return Response(
                status=200,
                payload=self._openapi_index(),
                headers={"Cache-Control": "no-cache, private"},
            )
        if path.startswith("/openapi/v3/"):
            return self._openapi_doc(path.removeprefix("/openapi/v3/"))
        if path == "/":
            paths = sorted(
                {"/api", "/api/v1", "/apis", "/version", "/openapi/v3", "/healthz"}
                | {f"/apis/{g}" for g in self._groups()}
                | {f"/apis/{g}/{v}" for g, vs in self._groups().items() for v in vs}
            )
            return Response(status=200, payload={"paths": paths})
        return None

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, set[str]] = {}
        for rt in self._served.values():
            if rt.group:
                groups.setdefault(rt.group, set()).add(rt.version)
        return {g: sorted(vs, key=_version_key) for g, vs in sorted(groups.items())}

    def _group_entry(self, group: str, versions: list[str]) -> JsonDict:
        listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"name": group, "versions": listed, "preferredVersion": listed[0]}

    def _group_list(self) -> JsonDict:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [self._group_entry(g, vs) for g, vs in self._groups().items()],
        }

    def _discovery(self, path: str) -> Response:
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            versions = self._groups().get(parts[1])
            if versions is None:
                raise _no_route()
            return Response(
                status=200,
                payload={
                    "kind": "APIGroup",
                    "apiVersion": "v1",
                    **self._group_entry(parts[1], versions),
                },
            )
        if parts[0] == "api" and len(parts) == 2:
            group, version = "", parts[1]
        elif parts[0] == "apis" and len(parts) == 3:
            group, version = parts[1], parts[2]
        else:
            raise _no_route()
        types = [rt for rt in self._served.values() if (rt.group, rt.version) == (group, version)]
        if not types:
            raise _no_route()
        resources: list[JsonDict] = []
        for rt in sorted(types, key=lambda t: t.plural):
            entry: JsonDict = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(_VERBS),
            }
            if rt.short_names:
                entry["shortNames"] = list(rt.short_names)
            if rt.categories:
                entry["categories"] = list(rt.categories)
            resources.append(entry)
            for sub in sorted(rt.subresources):
                resources.append(
                    {
                        "name": f"{rt.plural}/{sub}",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return Response(
            status=200,
            payload={
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": resources,
            },
        )

    # -- OpenAPI v3: enough for kubectl to trust the server with field validation ----------

    def _gv_paths(self) -> dict[str, list[ResourceType]]:
        out: dict[str, list[ResourceType]] = {}
        for rt in self._served.values():
            key = f"apis/{rt.group}/{rt.version}" if rt.group else f"api/{rt.version}"
            out.setdefault(key, []).append(rt)
        return out

    def _openapi_gv(self, types: list[ResourceType]) -> JsonDict:
        field_validation = {
            "name": "fieldValidation",
            "in": "query",
            "description": "Strict, Warn or Ignore: what to do with unknown or duplicate fields.",
            "schema": {"type": "string", "uniqueItems": True},
        }
        paths: JsonDict = {}
        schemas: JsonDict = {}
        for rt in sorted(types, key=lambda t: t.plural):
            gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
            prefix = f"/apis/{rt.group}/{rt.version}" if rt.group else f"/api/{rt.version}"
            base = (
                f"{prefix}/namespaces/{{namespace}}/{rt.plural}"
                if rt.namespaced
                else (f"{prefix}/{rt.plural}")
            )
            schema_name = (
                ".".join([*reversed(rt.group.split(".")), rt.version, rt.kind])
                if (rt.group)
                else f"io.k8s.api.core.{rt.version}.{rt.kind}"
            )
            ref = {"$ref": f"#/components/schemas/{schema_name}"}
            body = {"content": {"application/json": {"schema": ref}}}
            ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
            ops = {"x-kubernetes-group-version-kind": gvk, "responses": ok}
            paths[base] = {
                "get": {**ops, "x-kubernetes-action": "list"},
                "post": {
                    **ops,
                    "x-kubernetes-action": "post",
                    "requestBody": body,
                    "parameters": [field_validation],
                },
            }
            item = {
                "get": {**ops, "x-kubernetes-action": "get"},
                "put": {
                    **ops,
                    "x-kubernetes-action": "put",
                    "requestBody": body,
                    "parameters": [field_validation],
                },
                "patch": {
                    **ops,
                    "x-kubernetes-action": "patch",
                    "requestBody": {"content": {_MERGE_PATCH: {"schema": {}}}},
                    "parameters": [field_validation],
                },
                "delete": {**ops, "x-kubernetes-action": "delete"},
            }
            paths[f"{base}/{{name}}"] = item
            for sub in sorted(rt.subresources):
                paths[f"{base}/{{name}}/{sub}"] = item
            schema = (
                copy.deepcopy(rt.schema)
                if rt.schema is not None
                else {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
            )
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[schema_name] = schema
        return {
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes", "version": SERVER_VERSION["gitVersion"]},
            "paths": paths,
            "components": {"schemas": schemas},
        }

    def _openapi_index(self) -> JsonDict:
        out: JsonDict = {}
        for key, types in sorted(self._gv_paths().items()):
            digest = (
                hashlib.sha512(json.dumps(self._openapi_gv(types), sort_keys=True).encode())
                .hexdigest()[:64]
                .upper()
            )
            out[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        return {"paths": out}

    def _openapi_doc(self, key: str) -> Response:
        types = self._gv_paths().get(key)
        if types is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return Response(
            status=200,
            payload=self._openapi_gv(types),
            headers={"Cache-Control": "public, immutable"},
        )

    # -- reading ---------------------------------------------------------------------------

    def _require_namespace(self, namespace: str | None) -> None:
        if namespace is not None and ("", namespace) not in self._store.get(_NAMESPACE_KEY, {}):
            raise _not_found(self._type("", "v1", "namespaces"), namespace)

    def _get(self, route: Route) -> JsonDict:
        assert route.name is not None
        obj = self._bucket(route.rt).get((route.namespace or "", route.name))
        if obj is None:
            raise _not_found(route.rt, route.name)
        return self._as_version(obj, route.rt)

    @staticmethod
    def _as_version(obj: JsonDict, rt: ResourceType) -> JsonDict:
        out = copy.deepcopy(obj)
        out["apiVersion"] = rt.api_version
        return out

    def _selector(self, rt: ResourceType, params: Mapping[str, str]) -> Callable[[JsonDict], bool]:
        try:
            labels = kpatch.parse_label_selector(params.get("labelSelector", ""))
            fields = kpatch.parse_field_selector(
                params.get("fieldSelector", ""), (*kpatch.FIELD_SELECTABLE, *rt.field_labels)
            )
        except kpatch.SelectorError as err:
            raise _bad_request(str(err)) from None

        def matches(obj: JsonDict) -> bool:
            meta = obj.get("metadata", {})
            return labels(meta.get("labels") or {}) and fields(obj)

        return matches

    def _matching(self, route: Route, params: Mapping[str, str]) -> list[JsonDict]:
        matches = self._selector(route.rt, params)
        found = [
            obj
            for (ns, _), obj in sorted(self._bucket(route.rt).items())
            if (route.namespace is None or ns == route.namespace) and matches(obj)
        ]
        return [self._as_version(o, route.rt) for o in found]

    def _list(self, route: Route, params: Mapping[str, str]) -> JsonDict:
        self._require_namespace(route.namespace)
        items = self._matching(route, params)
        start = 0
        token = _first(params, "continue")
        if token:
            try:
                start = int(json.loads(base64.urlsafe_b64decode(token))["start"])
            except (ValueError, KeyError, TypeError):
                raise _bad_request("continue key is not valid") from None
        meta: JsonDict = {"resourceVersion": str(self._rv)}
        limit = int(params.get("limit") or 0)
        page = items[start:]
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            nxt = json.dumps({"start": start + limit, "rv": self._rv}).encode()
            meta["continue"] = base64.urlsafe_b64encode(nxt).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        return {
            "kind": route.rt.list_kind,
            "apiVersion": route.rt.api_version,
            "metadata": meta,
            "items": page,
        }

    # -- content negotiation (JSON, Table, PartialObjectMetadata) --------------------------

    @staticmethod
    def _wanted(accept: str) -> str:
        for entry in accept.split(","):
            params = dict(p.strip().split("=", 1) for p in entry.split(";")[1:] if "=" in p)
            media = entry.split(";")[0].strip()
            if media not in {"application/json", "*/*", "application/*"}:
                continue
            as_ = params.get("as")
            if as_ == "Table" and params.get("g") == "meta.k8s.io":
                return "Table"
            if as_ in {"PartialObjectMetadata", "PartialObjectMetadataList"}:
                return "PartialObjectMetadata"
            if as_ is None:
                return "json"
        if "application/vnd.kubernetes.protobuf" in accept and "json" not in accept:
            raise ApiError(406, "NotAcceptable", "only JSON is served by the emulated API server")
        return "json"

    def _respond(self, payload: JsonDict, call: _Call, route: Route) -> Response:
        mode = self._wanted(call.headers.get("Accept", _JSON))
        if mode == "Table":
            items = payload.get("items", [payload])
            table = self._table(route.rt, items, call.params)
            table["metadata"] = {
                "resourceVersion": payload.get("metadata", {}).get("resourceVersion", "")
            }
            if "continue" in payload.get("metadata", {}):
                table["metadata"]["continue"] = payload["metadata"]["continue"]
            return Response(status=200, payload=table)
        if mode == "PartialObjectMetadata":
            if "items" in payload:
                return Response(
                    status=200,
                    payload={
                        "kind": "PartialObjectMetadataList",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": payload["metadata"],
                        "items": [self._partial(o) for o in payload["items"]],
                    },
                )
            return Response(status=200, payload=self._partial(payload))
        return Response(status=200, payload=payload)

    @staticmethod
    def _partial(obj: JsonDict) -> JsonDict:
        return {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": copy.deepcopy(obj.get("metadata", {})),
        }

    def _columns(self, rt: ResourceType) -> list[JsonDict]:
        name = {
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        }
        if rt.printer_columns:
            extra = [
                {
                    "name": c["name"],
                    "type": c.get("type", "string"),
                    "format": c.get("format", ""),
                    "description": c.get("description", ""),
                    "priority": c.get("priority", 0),
                    "jsonPath": c["jsonPath"],
                }
                for c in rt.printer_columns
            ]
        elif rt.storage_key == _NAMESPACE_KEY:
            extra = [
                {
                    "name": "Status",
                    "type": "string",
                    "format": "",
                    "priority": 0,
                    "description": "The phase of the namespace.",
                    "jsonPath": ".status.phase",
                },
                {
                    "name": "Age",
                    "type": "date",
                    "format": "",
                    "priority": 0,
                    "description": "Time since creation.",
                    "jsonPath": ".metadata.creationTimestamp",
                },
            ]
        else:
            extra = [
                {
                    "name": "Age",
                    "type": "date",
                    "format": "",
                    "priority": 0,
                    "description": "Time since creation.",
                    "jsonPath": ".metadata.creationTimestamp",
                }
            ]
        return [name, *extra]

    def _table(
        self, rt: ResourceType, items: list[JsonDict], params: Mapping[str, str]
    ) -> JsonDict:
        columns = self._columns(rt)
        include = params.get("includeObject", "Metadata")
        rows = []
        for obj in items:
            cells: list[Json] = [obj.get("metadata", {}).get("name", "")]
            for col in columns[1:]:
                cells.append(self._cell(obj, col))
            row: JsonDict = {"cells": cells}
            if include == "Object":
                row["object"] = obj
            elif include != "None":
                row["object"] = self._partial(obj)
            rows.append(row)
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {},
            "columnDefinitions": [{k: v for k, v in c.items() if k != "jsonPath"} for c in columns],
            "rows": rows,
        }

    @staticmethod
    def _cell(obj: JsonDict, column: Mapping[str, Any]) -> Json:
        try:
            found = kpatch.jsonpath(obj, str(column["jsonPath"]))
        except ValueError:
            return None
        if not found or found[0] is None:
            return None
        value = found[0]
        kind = column.get("type", "string")
        if kind == "string":
            if isinstance(value, str):
                return value
            return (
                kschema.go_value(value)
                if not isinstance(value, dict | list)
                else (json.dumps(value, separators=(",", ":")))
            )
        if kind == "integer":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return int(value)
            return None
        if kind == "number":
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            return None
        if kind == "boolean":
            return value if isinstance(value, bool) else None
        if kind == "date":
            if not isinstance(value, str):
                return None
            try:
                when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                return "<invalid>"
            return human_duration((dt.datetime.now(dt.UTC) - when).total_seconds())
        return None

    # -- watching --------------------------------------------------------------------------

    def _watch_response(self, route: Route, call: _Call) -> Response:
        self._require_namespace(route.namespace)
        params = dict(call.params)
        if route.name is not None:  # the deprecated watch-one-object form
            params["fieldSelector"] = ",".join(
                [s for s in [params.get("fieldSelector", ""), f"metadata.name={route.name}"] if s]
            )
        matches = self._selector(route.rt, params)
        mode = self._wanted(call.headers.get("Accept", _JSON))
        start = params.get("resourceVersion") or "0"
        try:
            since = int(start)
        except ValueError:
            raise _bad_request(f"invalid resource version: {start!r}") from None
        timeout = float(params.get("timeoutSeconds") or 0) or None
        stream = self._watch(route, call, params, matches, mode, since, timeout)
        return Response(status=200, payload=stream, headers={"Content-Type": "application/json"})

    async def _watch(
        self,
        route: Route,
        call: _Call,
        params: Mapping[str, str],
        matches: Callable[[JsonDict], bool],
        mode: str,
        since: int,
        timeout: float | None,
    ) -> AsyncIterator[Json]:
        yield b""  # send the headers now: a quiet watch is still a live one
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        rt, key = route.rt, route.rt.storage_key

        def visible(obj: JsonDict | None) -> bool:
            if obj is None:
                return False
            ns = obj.get("metadata", {}).get("namespace") or ""
            return (route.namespace is None or ns == route.namespace) and matches(obj)

        def render(kind: str, obj: JsonDict) -> JsonDict:
            shown = self._as_version(obj, rt)
            if mode == "Table":
                return {"type": kind, "object": self._table(rt, [shown], params)}
            if mode == "PartialObjectMetadata":
                return {"type": kind, "object": self._partial(shown)}
            return {"type": kind, "object": shown}

        if since == 0:
            for obj in self._matching(route, params):
                yield render("ADDED", obj)
            cursor = self._rv
        elif since < self._compacted_rv:
            yield {
                "type": "ERROR",
                "object": ApiError(
                    410, "Expired", f"too old resource version: {since} ({self._compacted_rv})"
                ).status(),
            }
            return
        else:
            cursor = since
        waiter = asyncio.Event()
        self._watchers.add(waiter)
        try:
            while not self._closing:
                for event in [e for e in self._events if e.rv > cursor and e.key == key]:
                    cursor = event.rv
                    was, now = visible(event.old), visible(event.obj)
                    if event.type == "DELETED":
                        if was or now:
                            yield render("DELETED", event.obj)
                    elif now and not was:
                        yield render("ADDED", event.obj)
                    elif now and was:
                        yield render("MODIFIED", event.obj)
                    elif was and not now:
                        yield render("DELETED", event.obj)
                transport = call.raw.transport
                if transport is None or transport.is_closing():
                    return
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                waiter.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), min(1.0, remaining or 1.0))
        finally:
            self._watchers.discard(waiter)

    # -- writing ---------------------------------------------------------------------------

    def _check_identity(self, rt: ResourceType, obj: JsonDict) -> None:
        if not isinstance(obj, dict):
            raise _bad_request("the body must be a JSON object")
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if rt.crd_name is not None and (not api_version or not kind):
            missing = "Kind" if not kind else "APIVersion"
            raise _bad_request(f"Object '{missing}' is missing in '{json.dumps(obj)[:200]}'")
        if api_version and api_version != rt.api_version:
            raise _bad_request(
                f"the API version in the data ({api_version}) does not match the "
                f"expected API version ({rt.api_version})"
            )
        if kind and kind != rt.kind:
            raise _bad_request(
                f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )

    def _check_metadata(
        self, rt: ResourceType, obj: JsonDict
    ) -> tuple[list[str], list[kschema.FieldError]]:
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            obj["metadata"] = meta = {}
        unknown = [f"metadata.{k}" for k in meta if k not in _META_FIELDS]
        for key in unknown:
            meta.pop(key.removeprefix("metadata."), None)
        errors: list[kschema.FieldError] = []
        name = meta.get("name")
        pattern = _DNS_LABEL if rt.storage_key == _NAMESPACE_KEY else _DNS_SUBDOMAIN
        if isinstance(name, str) and not re.fullmatch(pattern, name):
            kind = "RFC 1123 label" if pattern == _DNS_LABEL else "RFC 1123 subdomain"
            example = "'my-name', or '123-abc'" if pattern == _DNS_LABEL else "'example.com'"
            errors.append(
                kschema.FieldError(
                    "metadata.name",
                    kschema.INVALID,
                    f"Invalid value: {json.dumps(name)}: a lowercase {kind} must consist of lower "
                    "case alphanumeric characters, '-' or '.', and must start and end with an "
                    f"alphanumeric character (e.g. {example}, regex used for validation is "
                    f"'{pattern}')",
                    ("metadata", "name"),
                )
            )
        for key in ("labels", "annotations"):
            value = meta.get(key)
            if value is not None and (
                not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())
            ):
                errors.append(
                    kschema.FieldError(
                        f"metadata.{key}",
                        kschema.INVALID,
                        f'Invalid value: "{kschema.json_type(value)}": must be a map of strings',
                        ("metadata", key),
                    )
                )
        return unknown, errors

    def _admit(
        self,
        rt: ResourceType,
        obj: JsonDict,
        old: JsonDict | None,
        params: Mapping[str, str],
    ) -> list[str]:
        """Prune, default and validate ``obj`` in place; return warnings or raise."""
        strict = params.get("fieldValidation", "Warn")
        unknown, meta_errors = self._check_metadata(rt, obj)
        if rt.schema is not None:
            # metadata is ObjectMeta whatever the CRD says (checked above), never pruned here.
            props = {**rt.schema.get("properties", {}), "metadata": _PRESERVE}
            pruned = kschema.prune(obj, {**rt.schema, "properties": props})
            unknown += [kschema.format_path(loc, rt.schema) for loc in pruned]
        if unknown and strict == "Strict":
            listed = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise _bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a '
                f"{rt.kind}: strict decoding error: {listed}"
            )
        warnings = [] if strict == "Ignore" else [f'unknown field "{u}"' for u in unknown]
        name = obj.get("metadata", {}).get("name", "")
        if rt.schema is not None and rt.validator is not None:
            kschema.apply_defaults(obj, rt.schema)
            errors = meta_errors + rt.validator.errors(obj, old)
        else:
            errors = meta_errors
        if rt.storage_key == _CRD_KEY:
            errors += self._crd_errors(obj)
        if errors:
            raise _invalid(rt, name, errors)
        return warnings

    def _create(self, route: Route, body: Json, call: _Call) -> tuple[JsonDict, list[str]]:
        rt, params = route.rt, call.params
        self._check_identity(rt, body)
        obj: JsonDict = copy.deepcopy(body)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        meta = obj["metadata"]
        if rt.namespaced:
            if meta.get("namespace") and meta["namespace"] != route.namespace:
                raise _bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
            meta["namespace"] = route.namespace
            self._require_namespace(route.namespace)
            ns_obj = self._store.get(_NAMESPACE_KEY, {}).get(("", str(route.namespace)))
            if ns_obj is not None and ns_obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{rt.qualified_resource} "{meta.get("name")}" '
                    f"is forbidden: unable to create new content in namespace "
                    f"{route.namespace} because it is being terminated",
                )
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
                meta["name"] = f"{meta['generateName']}{suffix}"
            else:
                raise _invalid(
                    rt,
                    "",
                    [
                        kschema.FieldError(
                            "metadata.name",
                            kschema.REQUIRED,
                            "Required value: name or generateName is required",
                            ("metadata", "name"),
                        )
                    ],
                )
        if rt.has_status:
            obj.pop("status", None)
        warnings = self._admit(rt, obj, None, params)
        key = (route.namespace or "", meta["name"])
        if key in self._bucket(rt):
            raise _already_exists(rt, meta["name"])
        if rt.storage_key == _NAMESPACE_KEY:
            obj.setdefault("spec", {"finalizers": ["kubernetes"]})
            obj["status"] = {"phase": "Active"}
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        if rt.storage_key == _CRD_KEY:
            obj["status"] = self._crd_status(obj)
        if params.get("dryRun") == "All":
            return self._as_version(obj, rt), warnings
        stored = self._store_object(rt, route.namespace, obj)
        if rt.storage_key == _CRD_KEY:
            self._register_crd(stored)
        return self._as_version(stored, rt), warnings

    def _current(self, route: Route) -> JsonDict:
        assert route.name is not None
        obj = self._bucket(route.rt).get((route.namespace or "", route.name))
        if obj is None:
            raise _not_found(route.rt, route.name)
        return obj

    def _update(self, route: Route, body: Json, call: _Call) -> tuple[JsonDict, list[str]]:
        rt = route.rt
        self._check_identity(rt, body)
        old = self._current(route)
        new: JsonDict = copy.deepcopy(body)
        meta = _as_dict(new.get("metadata"))
        if meta.get("name") and meta["name"] != route.name:
            raise _bad_request(
                f"the name of the object ({meta['name']}) does not match the name "
                f"on the URL ({route.name})"
            )
        return self._commit(route, old, new, call.params)

    def _patch(self, route: Route, call: _Call) -> tuple[JsonDict, list[str]]:
        rt = route.rt
        ctype = call.headers.get("Content-Type", "").split(";")[0].strip()
        patch = self._body(call)
        key = (route.namespace or "", str(route.name))
        old = self._bucket(rt).get(key)
        if old is None:
            if ctype == _APPLY_PATCH:  # server-side apply creates what is missing
                create = Route(rt, route.namespace, None, None)
                if route.subresource:
                    raise _not_found(rt, str(route.name))
                return self._create(create, patch, call)
            raise _not_found(rt, str(route.name))
        current = self._as_version(old, rt)
        try:
            if ctype == _JSON_PATCH:
                new = kpatch.json_patch(current, patch)
            elif ctype == _MERGE_PATCH:
                new = kpatch.merge_patch(current, patch)
            elif ctype == _STRATEGIC_PATCH:
                if rt.crd_name is not None:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in "
                        "an unknown format - accepted media types include: "
                        f"{_JSON_PATCH}, {_MERGE_PATCH}, {_APPLY_PATCH}",
                    )
                new = kpatch.strategic_merge_patch(current, patch)
            elif ctype == _APPLY_PATCH:
                self._check_identity(rt, patch)
                new = kpatch.merge_patch(current, patch)
            else:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an "
                    f"unknown format - accepted media types include: {_JSON_PATCH}, "
                    f"{_MERGE_PATCH}, {_STRATEGIC_PATCH}, {_APPLY_PATCH}",
                )
        except kpatch.PatchError as err:
            raise ApiError(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                {"causes": [{"reason": "UnexpectedServerResponse", "message": str(err)}]},
            ) from None
        if not isinstance(new, dict):
            raise _bad_request("the patched object is not a JSON object")
        return self._commit(route, old, new, call.params)

    def _commit(
        self, route: Route, old: JsonDict, new: JsonDict, params: Mapping[str, str]
    ) -> tuple[JsonDict, list[str]]:
        """Store an update of ``old`` (PUT, PATCH; main resource or ``/status``)."""
        rt = route.rt
        old_meta = old["metadata"]
        meta = new.get("metadata")
        if not isinstance(meta, dict):
            new["metadata"] = meta = {}
        sent_rv = meta.get("resourceVersion")
        if sent_rv and sent_rv != old_meta["resourceVersion"]:
            raise _conflict(rt, old_meta["name"])
        warnings: list[str] = []
        if route.subresource == "status":
            status = new.get("status")
            candidate = copy.deepcopy(old)
            if status is None:
                candidate.pop("status", None)
            else:
                candidate["status"] = status
            new = candidate
        else:
            if rt.has_status:
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
                else:
                    new.pop("status", None)
            for name in (
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if name in old_meta:
                    meta[name] = old_meta[name]
                else:
                    meta.pop(name, None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise _invalid(
                        rt,
                        old_meta["name"],
                        [
                            kschema.FieldError(
                                "metadata.finalizers",
                                kschema.FORBIDDEN,
                                f"Forbidden: no new finalizers can be added if the object is being "
                                f"deleted, found new finalizers {json.dumps(sorted(added))}",
                                ("metadata", "finalizers"),
                            )
                        ],
                    )
        new["apiVersion"], new["kind"] = rt.api_version, rt.kind
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        warnings = self._admit(rt, new, self._as_version(old, rt), params)
        new["apiVersion"] = old["apiVersion"]
        if new == old:
            return self._as_version(old, rt), warnings  # a no-op write changes nothing
        if params.get("dryRun") == "All":
            return self._as_version(new, rt), warnings
        outside = {"metadata", "status"} if rt.has_status else {"metadata"}
        if _without(new, outside) != _without(old, outside):
            new["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        key = (route.namespace or "", old_meta["name"])
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._bucket(rt)[key] = new
            self._remove(rt, key, propagation="Background")
            return self._as_version(new, rt), warnings
        self._bucket(rt)[key] = new
        self._emit(rt.storage_key, "MODIFIED", new, old)
        if rt.storage_key == _CRD_KEY:
            self._register_crd(new)
        return self._as_version(new, rt), warnings

    # -- deleting --------------------------------------------------------------------------

    def _delete(
        self, route: Route, params: Mapping[str, str], opts: JsonDict
    ) -> tuple[JsonDict, list[str]]:
        if route.subresource:
            raise ApiError(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        rt = route.rt
        obj = self._current(route)
        meta = obj["metadata"]
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise _conflict(rt, meta["name"])
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise _conflict(rt, meta["name"])
        if params.get("dryRun") == "All" or opts.get("dryRun") == ["All"]:
            return self._as_version(obj, rt), []
        policy = params.get("propagationPolicy") or opts.get("propagationPolicy") or "Background"
        key = (route.namespace or "", meta["name"])
        self._delete_object(rt, key, policy)
        return self._as_version(obj, rt), []

    def _delete_collection(
        self, route: Route, params: Mapping[str, str], opts: JsonDict
    ) -> tuple[JsonDict, list[str]]:
        found = self._matching(route, params)
        policy = params.get("propagationPolicy") or opts.get("propagationPolicy") or "Background"
        for obj in found:
            key = (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
            if key in self._bucket(route.rt):
                self._delete_object(route.rt, key, policy)
        return {
            "kind": route.rt.list_kind,
            "apiVersion": route.rt.api_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": found,
        }, []

    def _delete_object(self, rt: ResourceType, key: tuple[str, str], policy: str) -> None:
        obj = self._bucket(rt)[key]
        meta = obj["metadata"]
        if meta.get("deletionTimestamp"):
            return  # already on its way out
        blocking = bool(meta.get("finalizers")) or rt.storage_key == _NAMESPACE_KEY
        if policy == "Foreground":
            self._delete_dependents(meta["uid"], policy)
        if blocking:
            old = copy.deepcopy(obj)
            meta["deletionTimestamp"] = _now()
            meta["deletionGracePeriodSeconds"] = 0
            meta["resourceVersion"] = str(self._next_rv())
            if rt.storage_key == _NAMESPACE_KEY:
                obj.setdefault("status", {})["phase"] = "Terminating"
            self._emit(rt.storage_key, "MODIFIED", obj, old)
            if rt.storage_key == _NAMESPACE_KEY:
                self._empty_namespace(key[1])
            return
        self._remove(rt, key, propagation=policy)

    def _remove(self, rt: ResourceType, key: tuple[str, str], propagation: str) -> None:
        obj = self._bucket(rt).pop(key)
        obj["metadata"]["resourceVersion"] = str(self._next_rv())
        self._emit(rt.storage_key, "DELETED", obj, obj)
        if rt.storage_key == _CRD_KEY:
            self._unregister_crd(obj)
        uid = obj["metadata"]["uid"]
        if propagation == "Orphan":
            self._orphan_dependents(uid)
        else:
            self._delete_dependents(uid, "Background")
        self._finish_namespaces()

    def _all_objects(self) -> Iterator[tuple[ResourceType, tuple[str, str], JsonDict]]:
        for skey, bucket in list(self._store.items()):
            types = self._types_of(skey)
            if not types:
                continue
            for key, obj in list(bucket.items()):
                yield types[0], key, obj

    def _delete_dependents(self, uid: str, policy: str) -> None:
        alive = {o["metadata"]["uid"] for _, _, o in self._all_objects()} - {uid}
        for rt, key, obj in list(self._all_objects()):
            refs = obj["metadata"].get("ownerReferences") or []
            if not any(r.get("uid") == uid for r in refs):
                continue
            if any(r.get("uid") in alive for r in refs if r.get("uid") != uid):
                continue  # another owner still holds it
            if key in self._bucket(rt):
                self._delete_object(rt, key, policy)

    def _orphan_dependents(self, uid: str) -> None:
        for rt, _, obj in list(self._all_objects()):
            refs = obj["metadata"].get("ownerReferences") or []
            if any(r.get("uid") == uid for r in refs):
                old = copy.deepcopy(obj)
                obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") != uid]
                if not obj["metadata"]["ownerReferences"]:
                    del obj["metadata"]["ownerReferences"]
                obj["metadata"]["resourceVersion"] = str(self._next_rv())
                self._emit(rt.storage_key, "MODIFIED", obj, old)

    def _empty_namespace(self, namespace: str) -> None:
        for rt, key, _ in list(self._all_objects()):
            if rt.namespaced and key[0] == namespace and key in self._bucket(rt):
                self._delete_object(rt, key, "Background")
        self._finish_namespaces()

    def _finish_namespaces(self) -> None:
        namespaces = self._store.get(_NAMESPACE_KEY, {})
        for key, ns in list(namespaces.items()):
            if not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
                continue
            occupied = any(rt.namespaced and k[0] == key[1] for rt, k, _ in self._all_objects())
            if not occupied and key in namespaces:
                self._remove(self._type("", "v1", "namespaces"), key, "Background")

    # -- CustomResourceDefinitions ---------------------------------------------------------

    def _crd_errors(self, crd: JsonDict) -> list[kschema.FieldError]:
        errors: list[kschema.FieldError] = []

        def bad(path: str, detail: str, reason: str = kschema.INVALID) -> None:
            errors.append(kschema.FieldError(path, reason, detail))

        spec = _as_dict(crd.get("spec"))
        names = _as_dict(spec.get("names"))
        group, plural = spec.get("group"), names.get("plural")
        if not group:
            bad("spec.group", "Required value", kschema.REQUIRED)
        if not plural:
            bad("spec.names.plural", "Required value", kschema.REQUIRED)
        if not names.get("kind"):
            bad("spec.names.kind", "Required value", kschema.REQUIRED)
        name = crd.get("metadata", {}).get("name")
        if group and plural and name != f"{plural}.{group}":
            bad(
                "metadata.name",
                f'Invalid value: {json.dumps(name)}: must be spec.names.plural+"."+spec.group',
            )
        if spec.get("scope") not in {"Namespaced", "Cluster"}:
            bad(
                "spec.scope",
                f"Unsupported value: {json.dumps(spec.get('scope'))}: supported "
                'values: "Cluster", "Namespaced"',
                kschema.NOT_SUPPORTED,
            )
        versions = spec.get("versions") or []
        if not versions:
            bad(
                "spec.versions",
                "Invalid value: null: must have exactly one version marked as storage version",
            )
        elif sum(1 for v in versions if v.get("storage")) != 1:
            bad(
                "spec.versions",
                f"Invalid value: {json.dumps(versions)[:80]}: must have exactly "
                "one version marked as storage version",
            )
        for i, version in enumerate(versions):
            schema = (version.get("schema") or {}).get("openAPIV3Schema")
            if schema is None:
                bad(
                    f"spec.versions[{i}].schema.openAPIV3Schema",
                    "Required value: schemas are required",
                    kschema.REQUIRED,
                )
                continue
            for problem in kschema.structural_errors(
                schema, f"spec.versions[{i}].schema.openAPIV3Schema"
            ):
                where, _, detail = problem.partition(": ")
                bad(where, detail)
        return errors

    @staticmethod
    def _crd_status(crd: JsonDict) -> JsonDict:
        now = _now()
        spec = crd["spec"]
        return {
            "acceptedNames": copy.deepcopy(spec["names"]),
            "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
            "conditions": [
                {
                    "type": "NamesAccepted",
                    "status": "True",
                    "reason": "NoConflicts",
                    "message": "no conflicts found",
                    "lastTransitionTime": now,
                },
                {
                    "type": "Established",
                    "status": "True",
                    "reason": "InitialNamesAccepted",
                    "message": "the initial names have been accepted",
                    "lastTransitionTime": now,
                },
            ],
        }

    def _register_crd(self, crd: JsonDict) -> None:
        spec = crd["spec"]
        names = spec["names"]
        for key in [k for k, rt in self._served.items() if rt.crd_name == crd["metadata"]["name"]]:
            del self._served[key]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            schema = version["schema"]["openAPIV3Schema"]
            self._note_rules(schema, f"{crd['metadata']['name']}/{version['name']}")
            rt = ResourceType(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                field_labels=tuple(
                    str(f.get("jsonPath", "")).lstrip(".")
                    for f in version.get("selectableFields") or []
                ),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset((version.get("subresources") or {}).keys()),
                schema=copy.deepcopy(schema),
                printer_columns=copy.deepcopy(version.get("additionalPrinterColumns") or []),
                crd_name=crd["metadata"]["name"],
                validator=kschema.SchemaValidator(schema),
            )
            self._served[(rt.group, rt.version, rt.plural)] = rt

    def _note_rules(self, schema: Json, where: str) -> None:
        if isinstance(schema, dict):
            for rule in schema.get("x-kubernetes-validations") or []:
                text = str(rule.get("rule", ""))
                if not kschema.is_supported_rule(text):
                    gap = f"{where}: CEL rule not evaluated by the emulator: {text}"
                    if gap not in self.gaps:
                        self.gaps.append(gap)
                        log.warning(gap)
            for value in schema.values():
                if isinstance(value, dict):
                    self._note_rules(value, where)
                    if all(isinstance(v, dict) for v in value.values()):
                        for sub in value.values():
                            self._note_rules(sub, where)

    def _unregister_crd(self, crd: JsonDict) -> None:
        name = crd["metadata"]["name"]
        types = [rt for rt in self._served.values() if rt.crd_name == name]
        for rt in types:
            bucket = self._store.get(rt.storage_key, {})
            for key in list(bucket):
                self._remove(rt, key, propagation="Background")
            self._served.pop((rt.group, rt.version, rt.plural), None)


# ---------------------------------------------------------------------------------------------
# Running it: a background thread, a kubeconfig, kubectl and HTTP helpers for tests


@dataclass(frozen=True)
class HttpResult:
    """A response of :meth:`ApiServer.request`."""

    status: int
    body: Json
    headers: Mapping[str, str]


class ApiServer:
    """A running emulator: its URL, its kubeconfig, and helpers to talk to it from a test."""

    def __init__(
        self,
        emulator: ApiServerEmulator,
        loop: asyncio.AbstractEventLoop,
        url: str,
        kubeconfig: Path,
        cache_dir: Path,
        kubectl_path: str | None,
    ) -> None:
        self.emulator = emulator
        self.loop = loop
        self.url = url
        self.kubeconfig = kubeconfig
        self.cache_dir = cache_dir
        self.kubectl_path = kubectl_path

    def call(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the server's event loop thread (where its state lives)."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)

    def objects(self, group: str, plural: str) -> list[JsonDict]:
        """Copies of the stored objects of one resource."""
        return self.call(lambda: self.emulator.objects(group, plural))

    def request(
        self,
        method: str,
        path: str,
        body: Json = None,
        *,
        content_type: str = _JSON,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> HttpResult:
        """One HTTP request to the emulator (blocking; for sync test bodies)."""
        data = (
            None
            if body is None
            else (body if isinstance(body, bytes) else json.dumps(body).encode())
        )
        req = urllib.request.Request(self.url + path, data=data, method=method.upper())
        req.add_header("Accept", _JSON)
        if data is not None:
            req.add_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw, hdrs = resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            status, raw, hdrs = err.code, err.read(), dict(err.headers)
        try:
            parsed: Json = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return HttpResult(status, parsed, hdrs)

    def kubectl(
        self, *args: str, stdin: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against the emulator (own kubeconfig, own fresh cache)."""
        if self.kubectl_path is None:
            raise RuntimeError("kubectl is not installed")
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        cmd = [
            self.kubectl_path,
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.cache_dir}",
            *args,
        ]
        return subprocess.run(
            cmd, input=stdin, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )


def write_kubeconfig(path: Path, url: str, namespace: str = "default") -> Path:
    """A kubeconfig with one context, ``emulator``, pointing at ``url``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": url}}],
        "users": [{"name": "emulator", "user": {"token": "emulator-token"}}],
        "contexts": [
            {
                "name": "emulator",
                "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace},
            }
        ],
        "current-context": "emulator",
        "preferences": {},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def start_apiserver(
    workdir: Path, *, namespace: str = "default", emulator: ApiServerEmulator | None = None
) -> Iterator[ApiServer]:
    """Run an emulator on a free loopback port in a background thread; stop it on exit.

    Writes ``workdir/kubeconfig`` and uses ``workdir/kube-cache`` as kubectl's cache. On exit,
    raises if the emulator itself failed while serving (a bug, not an API error).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    handler = emulator if emulator is not None else ApiServerEmulator()
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[int] = loop.create_future()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            async with handler, kmock.Server(handler, host="127.0.0.1") as server:
                ready.set_result(server.port)
                await stop.wait()
                handler.close()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(main())

    thread = threading.Thread(target=run, name="fedcare-apiserver-emulator", daemon=True)
    thread.start()
    port = asyncio.run_coroutine_threadsafe(_wait(ready), loop).result(timeout=15)
    url = f"http://127.0.0.1:{port}"
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", url, namespace)
    api = ApiServer(handler, loop, url, kubeconfig, workdir / "kube-cache", shutil.which("kubectl"))
    try:
        yield api
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
    if handler.failures:
        raise AssertionError(f"the emulated API server failed: {handler.failures!r}")


async def _wait(future: asyncio.Future[int]) -> int:
    return await future


__all__ = [
    "BUILTIN_RESOURCES",
    "INITIAL_NAMESPACES",
    "ApiError",
    "ApiServer",
    "ApiServerEmulator",
    "HttpResult",
    "ResourceType",
    "human_duration",
    "start_apiserver",
    "write_kubeconfig",
]
