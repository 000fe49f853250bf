"""Load manifests from YAML with one-line errors that name the file and the field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fedcare.errors import SpecError

M = TypeVar("M", bound=BaseModel)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-after") or part in {"literal"}:
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line: ``source: field.path: message`` for the first error (and a count of the rest)."""
    errors = err.errors(include_url=False)
    first = errors[0]
    msg = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown field"
    where = _loc(tuple(first["loc"]))
    more = f" (and {len(errors) - 1} more error(s))" if len(errors) > 1 else ""
    got = ""
    if first["type"] not in {"missing", "extra_forbidden"} and "input" in first:
        inp = first["input"]
        if isinstance(inp, str | int | float | bool) or inp is None:
            got = f" (got {inp!r})"
    return f"{source}: {where}: {msg}{got}{more}"


def parse_document(model: type[M], data: Any, source: str) -> M:
    """Validate a parsed document into ``model`` or raise :class:`SpecError`."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(source, err)) from None


def read_yaml(path: str | Path) -> Any:
    """Read one YAML document, with a one-line error on I/O or syntax problems."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: no such file") from None
    except OSError as err:
        raise SpecError(f"{p}: cannot read: {err.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or "invalid YAML"
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise SpecError(f"{p}: malformed YAML: {where}{problem}") from None


def load_model(model: type[M], path: str | Path) -> M:
    """Read and validate a YAML file as ``model``."""
    return parse_document(model, read_yaml(path), str(path))
