"""CRD schema handling as the Kubernetes API server does it: structural check, prune, default,
validate (with ``jsonschema``), list-map keys and ``self == oldSelf`` transition rules.

Error texts follow the real API server's (kube-openapi's and apimachinery's field errors), so that
what a test sees from the emulator is what a user would see from a cluster::

    spec.rounds: Invalid value: -1: spec.rounds in body should be greater than or equal to 1
    spec.task: Unsupported value: "x": supported values: "binary-classification", "regression"
    spec.data: Required value
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import jsonschema
import jsonschema.exceptions
import jsonschema.validators

Json = Any
JsonDict = dict[str, Any]
Location = tuple[str | int, ...]

#: Reasons of ``Status.details.causes`` (metav1.CauseType values).
INVALID = "FieldValueInvalid"
REQUIRED = "FieldValueRequired"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
FORBIDDEN = "FieldValueForbidden"
TYPE_INVALID = "FieldValueTypeInvalid"

# Everything apiextensions/v1 JSONSchemaProps knows; anything else is refused on decoding.
_SCHEMA_KEYS = frozenset(
    {
        "id",
        "$schema",
        "$ref",
        "description",
        "type",
        "format",
        "title",
        "default",
        "maximum",
        "exclusiveMaximum",
        "minimum",
        "exclusiveMinimum",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "enum",
        "maxProperties",
        "minProperties",
        "required",
        "items",
        "allOf",
        "oneOf",
        "anyOf",
        "not",
        "properties",
        "additionalProperties",
        "patternProperties",
        "dependencies",
        "additionalItems",
        "definitions",
        "externalDocs",
        "example",
        "nullable",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-list-type",
        "x-kubernetes-map-type",
        "x-kubernetes-validations",
    }
)
_TYPES = frozenset({"array", "boolean", "integer", "number", "object", "string"})
_JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
_ROOT = "spec.versions[{i}].schema.openAPIV3Schema"


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One field error, as in ``Status.details.causes`` and the ``is invalid`` message."""

    field: str
    reason: str
    #: The text after ``field: ``, e.g. ``Invalid value: -1: spec.rounds in body should be ...``.
    detail: str
    #: Where in the object (for ratcheting); not part of the wire form.
    location: Location = dataclasses.field(default=(), compare=False)

    def __str__(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail

    def cause(self) -> JsonDict:
        """The ``Status.details.causes`` entry."""
        return {"reason": self.reason, "message": self.detail, "field": self.field}


def go_value(value: Json) -> str:
    """A value as Go's ``%v`` (numbers, booleans) or ``%q`` (strings) prints it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        return text[:-2] if text.endswith(".0") else text
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return json_type(value)


def json_type(value: Json) -> str:
    """The JSON type name of a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ---------------------------------------------------------------------------------------------
# Structural check (what the API server refuses in a CRD)


def structural_errors(schema: Json, where: str = _ROOT.format(i=0)) -> list[str]:
    """Violations of the structural-schema rules, as the API server words them (empty: ok)."""
    errors: list[str] = []
    if not isinstance(schema, dict):
        return [f"{where}: Required value: a schema is required"]
    if schema.get("type") != "object":
        errors.append(
            f'{where}.type: Invalid value: "{schema.get("type")}": must be object at the root'
        )
    _check_node(schema, where, errors, root=True, in_junctor=False)
    props = schema.get("properties", {})
    meta = props.get("metadata") if isinstance(props, dict) else None
    if isinstance(meta, dict):
        extra = set(meta.get("properties", {})) - {"name", "generateName"}
        if extra or set(meta) - {"type", "properties", "description"}:
            errors.append(
                f"{where}.properties[metadata]: Forbidden: must not specify anything other than "
                "name and generateName, but metadata is implicitly specified"
            )
    return errors


def _check_node(
    node: JsonDict, where: str, errors: list[str], *, root: bool, in_junctor: bool
) -> None:
    for key in node:
        if key not in _SCHEMA_KEYS:
            errors.append(f'{where}: unknown field "{key}"')
    if "$ref" in node:
        errors.append(f"{where}.$ref: Forbidden: $ref is not supported")
    if "definitions" in node:
        errors.append(f"{where}.definitions: Forbidden: definitions are not supported")
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        if key in node and not isinstance(node[key], bool):
            errors.append(f"{where}.{key}: Invalid value: must be a boolean in OpenAPI v3.0")
    if node.get("uniqueItems") is True:
        errors.append(
            f"{where}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime "
            "complexity becomes quadratic"
        )
    kind = node.get("type")
    if in_junctor:
        for key in ("type", "description", "default", "additionalProperties", "nullable"):
            if key in node:
                errors.append(f"{where}.{key}: Forbidden: must be empty to be structural")
    elif kind is None:
        if not (
            node.get("x-kubernetes-preserve-unknown-fields")
            or node.get("x-kubernetes-int-or-string")
        ):
            errors.append(f"{where}.type: Required value: must not be empty for specified fields")
    elif kind not in _TYPES:
        errors.append(f'{where}.type: Unsupported value: "{kind}"')
    add = node.get("additionalProperties")
    if add is False:
        errors.append(f"{where}.additionalProperties: Forbidden: must not be false")
    elif add is not None and "properties" in node:
        errors.append(
            f"{where}.additionalProperties: Forbidden: additionalProperties and properties are "
            "mutual exclusive"
        )
    if isinstance(node.get("items"), list):
        errors.append(f"{where}.items: Forbidden: items must be a schema object and not an array")
    for name, sub in (node.get("properties") or {}).items():
        if isinstance(sub, dict):
            _check_node(
                sub, f"{where}.properties[{name}]", errors, root=False, in_junctor=in_junctor
            )
    if isinstance(node.get("items"), dict):
        _check_node(node["items"], f"{where}.items", errors, root=False, in_junctor=in_junctor)
    if isinstance(add, dict):
        _check_node(add, f"{where}.additionalProperties", errors, root=False, in_junctor=in_junctor)
    for key in _JUNCTORS:
        subs = node.get(key)
        for i, sub in enumerate(subs if isinstance(subs, list) else [subs] if subs else []):
            if isinstance(sub, dict):
                _check_node(sub, f"{where}.{key}[{i}]", errors, root=False, in_junctor=True)
    _check_list_type(node, where, errors)
    for i, rule in enumerate(node.get("x-kubernetes-validations") or []):
        if not isinstance(rule, dict) or not rule.get("rule"):
            errors.append(f"{where}.x-kubernetes-validations[{i}].rule: Required value")
    if "default" in node and not in_junctor:
        if root:
            errors.append(f"{where}.default: Forbidden: must not be set at the root")
        else:
            for err in validate_value(node["default"], node):
                errors.append(f"{where}.default: Invalid value: {err.detail}")


def _check_list_type(node: JsonDict, where: str, errors: list[str]) -> None:
    list_type = node.get("x-kubernetes-list-type")
    keys = node.get("x-kubernetes-list-map-keys")
    if list_type is None and keys is None:
        return
    if node.get("type") != "array":
        errors.append(f"{where}.x-kubernetes-list-type: Invalid value: must only be used on arrays")
        return
    if list_type not in {"atomic", "set", "map"}:
        errors.append(f'{where}.x-kubernetes-list-type: Unsupported value: "{list_type}"')
    if keys is not None and list_type != "map":
        errors.append(
            f"{where}.x-kubernetes-list-map-keys: Forbidden: only valid with "
            "x-kubernetes-list-type=map"
        )
    if list_type == "map":
        items: JsonDict = node["items"] if isinstance(node.get("items"), dict) else {}
        if not keys:
            errors.append(
                f"{where}.x-kubernetes-list-map-keys: Required value: with "
                "x-kubernetes-list-type=map"
            )
        if items.get("type") != "object":
            errors.append(
                f"{where}.items.type: Invalid value: must be object for x-kubernetes-list-type=map"
            )
        props = items.get("properties") or {}
        for key in keys or []:
            sub = props.get(key)
            if not isinstance(sub, dict):
                errors.append(
                    f"{where}.x-kubernetes-list-map-keys: Invalid value: {key!r} is "
                    "not a property of the items"
                )
            elif key not in (items.get("required") or []) and "default" not in sub:
                errors.append(
                    f"{where}.items.properties[{key}]: Required value: this property "
                    "is in x-kubernetes-list-map-keys, so it must have a default or be "
                    "a required property"
                )
            elif sub.get("type") not in {"string", "integer", "number", "boolean"}:
                errors.append(
                    f"{where}.items.properties[{key}].type: Invalid value: must be a "
                    "scalar type for a list map key"
                )


# ---------------------------------------------------------------------------------------------
# Pruning and defaulting


def _child(schema: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    props = schema.get("properties") or {}
    if key in props:
        sub = props[key]
        return sub if isinstance(sub, dict) else None
    add = schema.get("additionalProperties")
    if isinstance(add, dict):
        return add
    if add is True:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return None


def format_path(location: Location, schema: Mapping[str, Any] | None) -> str:
    """A field path the Kubernetes way: ``spec.participants[0].name``, ``labels[app]``."""
    out = ""
    node = schema
    for part in location:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node.get("items") if isinstance(node, Mapping) else None
            continue
        props = node.get("properties") if isinstance(node, Mapping) else None
        in_map = (
            node is not None
            and not (isinstance(props, Mapping) and part in props)
            and (isinstance(node.get("additionalProperties"), dict))
        )
        out += f"[{part}]" if in_map else (f".{part}" if out else part)
        node = _child(node, part) if isinstance(node, Mapping) else None
    return out


def prune(obj: Json, schema: Mapping[str, Any], location: Location = ()) -> list[Location]:
    """Remove fields the schema does not declare, in place; returns where they were."""
    unknown: list[Location] = []
    if schema.get("x-kubernetes-embedded-resource"):
        return unknown
    if isinstance(obj, dict) and (schema.get("type") in {"object", None}):
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(obj):
            sub = _child(schema, key)
            if sub is None:
                if not preserve:
                    unknown.append((*location, key))
                    del obj[key]
                continue
            unknown.extend(prune(obj[key], sub, (*location, key)))
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(obj):
            unknown.extend(prune(item, schema["items"], (*location, i)))
    return unknown


def apply_defaults(obj: Json, schema: Mapping[str, Any]) -> None:
    """Fill in ``default`` values in place, the nested ones after their parent's."""
    if isinstance(obj, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            if "default" in sub and (
                key not in obj or (obj[key] is None and not sub.get("nullable"))
            ):
                obj[key] = copy.deepcopy(sub["default"])
        for key, value in obj.items():
            sub = _child(schema, key)
            if sub is not None:
                apply_defaults(value, sub)
    elif isinstance(obj, list) and isinstance(schema.get("items"), dict):
        for item in obj:
            apply_defaults(item, schema["items"])


# ---------------------------------------------------------------------------------------------
# Validation


def _to_jsonschema(node: Json) -> Json:
    """An OpenAPI v3.0 (Kubernetes) schema in draft-4 terms (nullable, int-or-string)."""
    if not isinstance(node, dict):
        return node
    out: JsonDict = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in {
            "nullable",
            "format",
            "default",
            "description",
            "example",
        }:
            continue
        if key in {"properties", "patternProperties", "definitions"}:
            out[key] = {k: _to_jsonschema(v) for k, v in value.items()}
        elif key in {"items", "additionalProperties", "not", "additionalItems"}:
            out[key] = _to_jsonschema(value)
        elif key in {"allOf", "anyOf", "oneOf"}:
            out[key] = [_to_jsonschema(v) for v in value]
        else:
            out[key] = copy.deepcopy(value)
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if node.get("nullable"):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _is_integer(checker: Any, instance: Json) -> bool:
    if isinstance(instance, bool):
        return False
    return isinstance(instance, int) or (isinstance(instance, float) and instance.is_integer())


_TYPE_CHECKER = jsonschema.Draft4Validator.TYPE_CHECKER.redefine("integer", _is_integer)
_extend: Any = jsonschema.validators.extend  # untyped in types-jsonschema
_Validator: Any = _extend(jsonschema.Draft4Validator, type_checker=_TYPE_CHECKER)


class SchemaValidator:
    """Validates objects against one CRD version's ``openAPIV3Schema``."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = dict(schema)
        self._validator = _Validator(_to_jsonschema(self.schema))

    def errors(self, obj: Json, old: Json = None) -> list[FieldError]:
        """Every error in ``obj``: schema, list keys, and (with ``old``) transition rules.

        With ``old``, errors in values that did not change are dropped (validation ratcheting,
        on by default since Kubernetes 1.30).
        """
        found: list[FieldError] = []
        for err in sorted(self._validator.iter_errors(obj), key=lambda e: list(map(str, e.path))):
            found.extend(_field_errors(err, self.schema))
        found.extend(_list_errors(obj, self.schema, (), self.schema))
        if old is not None:
            found = [e for e in found if not _unchanged(obj, old, e.location)]
            found.extend(_transition_errors(obj, old, self.schema, (), self.schema))
        unique: list[FieldError] = []
        for err in found:
            if err not in unique:
                unique.append(err)
        return unique


def validate_value(value: Json, schema: Mapping[str, Any]) -> list[FieldError]:
    """Errors of one value against one schema node (used for defaults)."""
    return SchemaValidator(schema).errors(value)


def _lookup(obj: Json, location: Location) -> tuple[bool, Json]:
    node = obj
    for part in location:
        if isinstance(part, int):
            if not isinstance(node, list) or not -len(node) <= part < len(node):
                return False, None
        elif not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _unchanged(new: Json, old: Json, location: Location) -> bool:
    return _lookup(new, location) == _lookup(old, location)


def _in_body(path: str) -> str:
    return f"{path} in body" if path else "body"


def _field_errors(
    err: jsonschema.exceptions.ValidationError, schema: JsonDict
) -> Iterator[FieldError]:
    loc: Location = tuple(err.absolute_path)
    path = format_path(loc, schema)
    kind: Any = err.validator
    want: Any = err.validator_value
    value: Any = err.instance
    node = err.schema if isinstance(err.schema, dict) else {}
    if kind == "required":
        for name in want:
            if isinstance(value, dict) and name not in value:
                sub = (*loc, name)
                yield FieldError(format_path(sub, schema), REQUIRED, "Required value", sub)
        return
    if kind == "type":
        types = want if isinstance(want, list) else [want]
        types = [t for t in types if t != "null"]
        name = json_type(value)
        yield FieldError(
            path,
            INVALID,
            f'Invalid value: "{name}": {_in_body(path)} must be of type {",".join(types)}: '
            f'"{name}"',
            loc,
        )
        return
    if kind == "enum":
        allowed = ", ".join(go_value(v) for v in want if v is not None)
        yield FieldError(
            path,
            NOT_SUPPORTED,
            f"Unsupported value: {go_value(value)}: supported values: {allowed}",
            loc,
        )
        return
    if kind == "maxItems":
        yield FieldError(
            path, TOO_MANY, f"Too many: {len(value)}: must have at most {want} items", loc
        )
        return
    if kind == "maxLength":
        yield FieldError(path, TOO_LONG, f"Too long: may not be more than {want} bytes", loc)
        return
    texts = {
        "minimum": (
            f"should be greater than {go_value(want)}"
            if node.get("exclusiveMinimum")
            else f"should be greater than or equal to {go_value(want)}"
        ),
        "maximum": (
            f"should be less than {go_value(want)}"
            if node.get("exclusiveMaximum")
            else f"should be less than or equal to {go_value(want)}"
        ),
        "minLength": f"should be at least {want} chars long",
        "pattern": f"should match '{want}'",
        "minItems": f"should have at least {want} items",
        "multipleOf": f"should be a multiple of {go_value(want)}",
        "minProperties": f"should have at least {want} properties",
        "maxProperties": f"should have at most {want} properties",
    }
    shown = len(value) if kind in {"minItems"} and isinstance(value, list) else value
    text = texts.get(str(kind))
    if text is None:
        yield FieldError(path, INVALID, f"Invalid value: {go_value(shown)}: {err.message}", loc)
    else:
        yield FieldError(
            path, INVALID, f"Invalid value: {go_value(shown)}: {_in_body(path)} {text}", loc
        )


def _map_key(item: Json, keys: Sequence[str]) -> tuple[Json, ...] | None:
    if not isinstance(item, dict):
        return None
    return tuple(json.dumps(item.get(k), sort_keys=True) for k in keys)


def _list_errors(
    obj: Json, schema: Mapping[str, Any], loc: Location, root: Mapping[str, Any]
) -> Iterator[FieldError]:
    if isinstance(obj, dict):
        for key, value in obj.items():
            sub = _child(schema, key)
            if sub is not None:
                yield from _list_errors(value, sub, (*loc, key), root)
    elif isinstance(obj, list):
        list_type = schema.get("x-kubernetes-list-type")
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: set[Any] = set()
        for i, item in enumerate(obj):
            if list_type == "map":
                ident: Any = _map_key(item, keys)
                shown = {k: item.get(k) for k in keys} if isinstance(item, dict) else item
                go_map = ", ".join(f'"{k}":{go_value(v)}' for k, v in shown.items())
                detail = f"Duplicate value: map[string]interface {{}}{{{go_map}}}"
            elif list_type == "set":
                ident = json.dumps(item, sort_keys=True)
                detail = f"Duplicate value: {go_value(item)}"
            else:
                ident = None
                detail = ""
            if ident is not None:
                if ident in seen:
                    where = (*loc, i)
                    yield FieldError(format_path(where, root), DUPLICATE, detail, where)
                seen.add(ident)
            if isinstance(schema.get("items"), dict):
                yield from _list_errors(item, schema["items"], (*loc, i), root)


_SELF_EQ_OLD = re.compile(r"^\s*self\s*==\s*oldSelf\s*$")


def is_supported_rule(rule: str) -> bool:
    """Whether the emulator evaluates this CEL rule (only ``self == oldSelf``)."""
    return bool(_SELF_EQ_OLD.match(rule))


def _transition_errors(
    new: Json, old: Json, schema: Mapping[str, Any], loc: Location, root: Mapping[str, Any]
) -> Iterator[FieldError]:
    for rule in schema.get("x-kubernetes-validations") or []:
        text = str(rule.get("rule", ""))
        if _SELF_EQ_OLD.match(text) and new != old:
            message = rule.get("message") or f"failed rule: {text}"
            path = format_path(loc, root)
            yield FieldError(path, INVALID, f'Invalid value: "{json_type(new)}": {message}', loc)
    if isinstance(new, dict) and isinstance(old, dict):
        for key, value in new.items():
            sub = _child(schema, key)
            if sub is not None and key in old:
                yield from _transition_errors(value, old[key], sub, (*loc, key), root)
    elif isinstance(new, list) and isinstance(old, list):
        if schema.get("x-kubernetes-list-type") != "map" or not isinstance(
            schema.get("items"), dict
        ):
            return  # only keyed lists correlate items between versions
        keys = schema.get("x-kubernetes-list-map-keys") or []
        before = {_map_key(item, keys): item for item in old}
        for i, item in enumerate(new):
            prior = before.get(_map_key(item, keys))
            if prior is not None:
                yield from _transition_errors(item, prior, schema["items"], (*loc, i), root)
