"""Patches, selectors and JSONPath as the Kubernetes API server applies them.

Pure functions on JSON-like values, used by :mod:`tests.support.apiserver`:

- RFC 6902 JSON patch (``application/json-patch+json``), with ``test`` ops;
- RFC 7386 JSON merge patch (``application/merge-patch+json``);
- an approximation of strategic merge patch (merge patch that honours ``$patch`` directives);
- label selectors (equality- and set-based) and the ``metadata.name``/``namespace`` field selectors;
- the JSONPath subset of printer columns (``.a.b``, ``[0]``, ``[*]``, ``[?(@.k=="v")]``).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Mapping
from typing import Any

Json = Any


class PatchError(ValueError):
    """A patch that cannot be applied (malformed, or a failed ``test`` op)."""


class SelectorError(ValueError):
    """A label or field selector that does not parse."""


# ---------------------------------------------------------------------------------------------
# JSON patch (RFC 6902)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"JSON pointer {path!r} must start with '/'")
    return [_unescape(t) for t in path[1:].split("/")]


def _index(container: list[Json], token: str, *, adding: bool) -> int:
    if adding and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    limit = len(container) if adding else len(container) - 1
    if idx > limit:
        raise PatchError(f"array index {idx} out of bounds")
    return idx


def _parent(doc: Json, tokens: list[str]) -> Json:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path component {token!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, adding=False)]
        else:
            raise PatchError(f"path component {token!r} is not a container")
    return node


def _get(doc: Json, path: str) -> Json:
    node = doc
    for token in _pointer(path):
        if isinstance(node, dict):
            if token not in node:
                raise PatchError(f"path {path!r} does not exist")
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, adding=False)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return node


def _remove(doc: Json, path: str) -> tuple[Json, Json]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    if isinstance(parent, dict):
        if tokens[-1] not in parent:
            raise PatchError(f"path {path!r} does not exist")
        return doc, parent.pop(tokens[-1])
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, tokens[-1], adding=False))
    raise PatchError(f"path {path!r} does not exist")


def _add(doc: Json, path: str, value: Json) -> Json:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], adding=True), value)
    else:
        raise PatchError(f"path {path!r}: parent is not a container")
    return doc


def _equal(a: Json, b: Json) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def json_patch(doc: Json, ops: Json) -> Json:
    """Apply an RFC 6902 patch to a copy of ``doc``; raise :class:`PatchError` on failure."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"malformed operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind in {"add", "replace", "test"} and "value" not in op:
            raise PatchError(f"operation {kind!r} needs a value")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            doc, _ = _remove(doc, path) if _pointer(path) else (doc, None)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            doc, value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            try:
                current = _get(doc, path)
            except PatchError:
                raise PatchError(f"testing value {path} failed: path does not exist") from None
            if not _equal(current, op["value"]):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"unknown operation {kind!r}")
    return doc


# ---------------------------------------------------------------------------------------------
# Merge patches


def merge_patch(target: Json, patch: Json) -> Json:
    """RFC 7386: dicts merge recursively, ``null`` removes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Json, patch: Json) -> Json:
    """An approximation of strategic merge patch: a merge patch honouring ``$patch`` keys.

    Lists are replaced whole (the real server merges some lists by their merge key, e.g.
    containers by name); ``$patch: delete`` removes a map, ``$patch: replace`` replaces it, and
    ``$retainKeys``/``$setElementOrder`` directives are dropped.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    clean = {k: v for k, v in patch.items() if not k.startswith("$")}
    for key in [k for k in clean if k.startswith("$setElementOrder/")]:
        clean.pop(key)
    if directive == "replace":
        return {k: strategic_merge_patch(None, v) for k, v in clean.items()}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in clean.items():
        if value is None:
            result.pop(key, None)
            continue
        merged = strategic_merge_patch(result.get(key), value)
        if merged is None:
            result.pop(key, None)
        else:
            result[key] = merged
    return result


# ---------------------------------------------------------------------------------------------
# Selectors

_SET_RE = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_RE = re.compile(r"^\s*([^\s!=]+)\s*(==|=|!=)\s*([^\s,]*)\s*$")
_EXISTS_RE = re.compile(r"^\s*(!?)\s*([^\s!=()]+)\s*$")

LabelTest = Callable[[Mapping[str, str]], bool]


def _split_requirements(selector: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p for p in parts if p.strip()]


def _label_in(key: str, values: frozenset[str], negate: bool) -> LabelTest:
    def test(labels: Mapping[str, str]) -> bool:
        return (labels.get(key) in values) != negate

    return test


def _label_eq(key: str, value: str, negate: bool) -> LabelTest:
    def test(labels: Mapping[str, str]) -> bool:
        return (labels.get(key) == value) != negate

    return test


def _label_exists(key: str, negate: bool) -> LabelTest:
    def test(labels: Mapping[str, str]) -> bool:
        return (key in labels) != negate

    return test


def parse_label_selector(selector: str) -> LabelTest:
    """A predicate over labels for a ``labelSelector`` string (both selector syntaxes)."""
    tests: list[LabelTest] = []
    for req in _split_requirements(selector):
        if m := _SET_RE.match(req):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            tests.append(_label_in(m.group(1), values, negate=m.group(2) == "notin"))
        elif m := _EQ_RE.match(req):
            tests.append(_label_eq(m.group(1), m.group(3), negate=m.group(2) == "!="))
        elif m := _EXISTS_RE.match(req):
            tests.append(_label_exists(m.group(2), negate=m.group(1) == "!"))
        else:
            raise SelectorError(f"unable to parse requirement: {req.strip()!r}")
    return lambda labels: all(t(labels) for t in tests)


FieldTest = Callable[[Mapping[str, Any]], bool]
#: Field selectors every resource supports.
FIELD_SELECTABLE = ("metadata.name", "metadata.namespace")


def _field_eq(path: str, value: str, negate: bool) -> FieldTest:
    def test(obj: Mapping[str, Any]) -> bool:
        node: Any = obj
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return (("" if node is None else str(node)) == value) != negate

    return test


def parse_field_selector(selector: str, supported: tuple[str, ...] = FIELD_SELECTABLE) -> FieldTest:
    """A predicate over an object for a ``fieldSelector`` (``=``, ``==``, ``!=`` only)."""
    tests: list[FieldTest] = []
    for req in _split_requirements(selector):
        m = _EQ_RE.match(req)
        if m is None:
            raise SelectorError(f"invalid field selector: {req.strip()!r}")
        if m.group(1) not in supported:
            raise SelectorError(f"field label not supported: {m.group(1)}")
        tests.append(_field_eq(m.group(1), m.group(3), negate=m.group(2) == "!="))
    return lambda obj: all(t(obj) for t in tests)


# ---------------------------------------------------------------------------------------------
# JSONPath (the subset printer columns use)

_TOKEN_RE = re.compile(
    r"""\.(?P<name>[A-Za-z0-9_$-]+)
      | \[\s*'(?P<quoted>[^']*)'\s*\]
      | \[\s*"(?P<dquoted>[^"]*)"\s*\]
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<star>\*)\s*\]
      | \[\s*\?\(\s*@\.(?P<fkey>[A-Za-z0-9_.-]+)\s*(?P<fop>==|!=)\s*
            (?:"(?P<fdq>[^"]*)"|'(?P<fsq>[^']*)'|(?P<fnum>-?[\d.]+|true|false))\s*\)\s*\]
    """,
    re.VERBOSE,
)


def jsonpath(obj: Json, expr: str) -> list[Json]:
    """All values ``expr`` selects in ``obj`` (``{...}`` braces optional)."""
    expr = expr.strip()
    if expr.startswith("{") and expr.endswith("}"):
        expr = expr[1:-1].strip()
    if expr.startswith("$"):
        expr = expr[1:]
    nodes: list[Json] = [obj]
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if m is None:
            raise ValueError(f"unsupported JSONPath {expr!r} at {expr[pos:]!r}")
        pos = m.end()
        out: list[Json] = []
        for node in nodes:
            key = m.group("name") or m.group("quoted") or m.group("dquoted")
            if key is not None:
                if isinstance(node, dict) and key in node:
                    out.append(node[key])
            elif m.group("index") is not None:
                i = int(m.group("index"))
                if isinstance(node, list) and -len(node) <= i < len(node):
                    out.append(node[i])
            elif m.group("star"):
                if isinstance(node, list):
                    out.extend(node)
                elif isinstance(node, dict):
                    out.extend(node.values())
            else:
                out.extend(_filter(node, m))
        nodes = out
    return nodes


def _filter(node: Json, m: re.Match[str]) -> list[Json]:
    if not isinstance(node, list):
        return []
    raw = m.group("fnum")
    want: Json = m.group("fdq") if m.group("fdq") is not None else m.group("fsq")
    if raw is not None:
        want = json.loads(raw)
    hits = []
    for item in node:
        got: Json = item
        for part in m.group("fkey").split("."):
            got = got.get(part) if isinstance(got, dict) else None
        if (got == want) == (m.group("fop") == "=="):
            hits.append(item)
    return hits
