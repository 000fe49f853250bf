"""Decoding of the Kubernetes protobuf envelope for a few built-in kinds.

kubectl 1.32 sends ``application/vnd.kubernetes.protobuf`` bodies when it creates built-in objects
imperatively (``kubectl create namespace|configmap|secret|serviceaccount``). The emulator speaks
JSON; this module turns those few kinds into their JSON form. Other kinds raise
:class:`ProtobufError` (the emulator answers 415 then; use ``kubectl apply -f``, which sends JSON).

The envelope is ``k8s\\x00`` + ``runtime.Unknown{typeMeta{apiVersion, kind}, raw, ...}``; ``raw``
is the object's own message, decoded here with hand-written field tables of the k8s.io/api protos.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

MAGIC = b"k8s\x00"


@dataclass(frozen=True)
class ListOf:
    """A repeated message field."""

    table: Table


# A field table: field number -> (JSON name, kind); kind is a scalar kind's name, a nested
# message's table, or a repeated message.
Kind = Union[str, "Table", ListOf]
Table = Mapping[int, tuple[str, Kind]]


class ProtobufError(ValueError):
    """A body the emulator cannot decode."""


_TIME: Table = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER: Table = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_META: Table = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", "time"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", ListOf(_OWNER)),
    14: ("finalizers", "strings"),
}
_OBJECT_REF: Table = {
    1: ("kind", "string"),
    2: ("namespace", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
}
_LOCAL_REF: Table = {1: ("name", "string")}

#: kind -> (apiVersion, message table).
KINDS: dict[str, tuple[str, Table]] = {
    "Namespace": (
        "v1",
        {1: ("metadata", _META), 2: ("spec", {1: ("finalizers", "strings")})},
    ),
    "ConfigMap": (
        "v1",
        {
            1: ("metadata", _META),
            2: ("data", "map"),
            3: ("binaryData", "bytesmap"),
            4: ("immutable", "bool"),
        },
    ),
    "Secret": (
        "v1",
        {
            1: ("metadata", _META),
            2: ("data", "bytesmap"),
            3: ("type", "string"),
            4: ("immutable", "bool"),
            5: ("stringData", "map"),
        },
    ),
    "ServiceAccount": (
        "v1",
        {
            1: ("metadata", _META),
            2: ("secrets", ListOf(_OBJECT_REF)),
            3: ("imagePullSecrets", ListOf(_LOCAL_REF)),
            4: ("automountServiceAccountToken", "bool"),
        },
    ),
}


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ProtobufError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 2:
            size, pos = _varint(buf, pos)
            yield number, wire, buf[pos : pos + size]
            pos += size
        elif wire == 1:
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        elif wire == 5:
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise ProtobufError(f"unsupported wire type {wire}")


def _text(value: int | bytes) -> str:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a length-delimited field")
    return value.decode("utf-8")


def _pair(value: int | bytes) -> tuple[str, bytes]:
    key, raw = "", b""
    for number, _, item in _fields(value if isinstance(value, bytes) else b""):
        if number == 1:
            key = _text(item)
        elif number == 2 and isinstance(item, bytes):
            raw = item
    return key, raw


def _decode(buf: bytes, table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, _, value in _fields(buf):
        if number not in table:
            continue  # a field the emulator does not need
        name, kind = table[number]
        if isinstance(kind, ListOf):
            out.setdefault(name, []).append(_decode(_raw(value), kind.table))
        elif isinstance(kind, Mapping):
            out[name] = _decode(_raw(value), kind)
        elif kind == "string":
            out[name] = _text(value) or None  # proto3 writes empty strings; JSON omits them
        elif kind == "int":
            out[name] = value if isinstance(value, int) else int.from_bytes(value, "little")
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "strings":
            out.setdefault(name, []).append(_text(value))
        elif kind == "map":
            key, raw = _pair(value)
            out.setdefault(name, {})[key] = raw.decode("utf-8")
        elif kind == "bytesmap":
            key, raw = _pair(value)
            out.setdefault(name, {})[key] = base64.b64encode(raw).decode("ascii")
        elif kind == "time":
            seconds = _decode(_raw(value), _TIME).get("seconds", 0)
            when = dt.datetime.fromtimestamp(seconds, dt.UTC)
            out[name] = when.strftime("%Y-%m-%dT%H:%M:%SZ") if seconds else None
    return {k: v for k, v in out.items() if v is not None}


def _raw(value: int | bytes) -> bytes:
    if not isinstance(value, bytes):
        raise ProtobufError("expected a message")
    return value


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object of one of :data:`KINDS`."""
    if not body.startswith(MAGIC):
        raise ProtobufError("not a Kubernetes protobuf envelope")
    api_version = kind = ""
    raw = b""
    for number, _, value in _fields(body[len(MAGIC) :]):
        if number == 1:
            meta = _decode(_raw(value), {1: ("apiVersion", "string"), 2: ("kind", "string")})
            api_version, kind = meta.get("apiVersion", ""), meta.get("kind", "")
        elif number == 2:
            raw = _raw(value)
    if kind not in KINDS:
        raise ProtobufError(
            f"the emulated API server decodes protobuf only for {', '.join(sorted(KINDS))}; "
            f"got {kind or 'no kind'} (send JSON, e.g. with kubectl apply -f)"
        )
    expected, table = KINDS[kind]
    obj = _decode(raw, table)
    return {"apiVersion": api_version or expected, "kind": kind, **obj}
