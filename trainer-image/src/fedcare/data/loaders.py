"""Reading a site's table (CSV or Parquet) into float32 arrays, with schema checks.

Every problem is a one-line :class:`DataError` naming the file, the column and the 1-based
data row (the header is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped,unused-ignore]
import pyarrow.csv as pacsv  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]

from fedcare.data.split import split_indices
from fedcare.errors import DataError
from fedcare.spec.job import DataFormat, DataSchema, DataSource

Float32Array = npt.NDArray[np.float32]

_EXTENSIONS = {".csv": DataFormat.CSV, ".parquet": DataFormat.PARQUET, ".pq": DataFormat.PARQUET}
_TRUE = frozenset({"true", "t", "yes"})
_FALSE = frozenset({"false", "f", "no"})


@dataclass(frozen=True, eq=False)
class SiteData:
    """A site's table split into training and validation arrays (float32).

    ``x_*`` have shape ``(n, len(feature_names))``; ``y_*`` have shape ``(n,)`` (the label),
    or ``(n, 2)`` with columns ``[time, event]`` for a survival schema.
    """

    x_train: Float32Array
    y_train: Float32Array
    x_val: Float32Array
    y_val: Float32Array
    feature_names: tuple[str, ...]

    @property
    def num_features(self) -> int:
        """Number of feature columns."""
        return len(self.feature_names)


def resolve_format(path: Path, fmt: DataFormat) -> DataFormat:
    """The concrete format of ``path``: ``fmt`` itself, or by extension when ``auto``."""
    if fmt is not DataFormat.AUTO:
        return fmt
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"{path}: cannot tell the format from the extension {path.suffix or '(none)'!r}; "
            "use .csv, .parquet or .pq, or set the data format explicitly"
        )
    return found


def load_site(source: DataSource, schema: DataSchema, seed: int = 0) -> SiteData:
    """Read ``source``, check it against ``schema`` and split it into train and validation.

    Feature columns are taken in ``schema.features`` order. Booleans count as 0/1. The split
    is deterministic in ``seed`` (see :func:`fedcare.data.split.split_indices`). With
    ``schema.time`` and ``schema.event`` (survival) ``y`` is ``(n, 2)``: ``[time, event]``, time
    at least 0 and event 0 (censored) or 1 (event observed).
    """
    path = Path(source.path)
    fmt = resolve_format(path, source.format)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    wanted = [*schema.features, *schema.target_columns]
    table = _read_table(path, fmt, wanted)
    n = table.num_rows
    if n == 0:
        raise DataError(f"{path}: the table has no data rows")
    x = np.empty((n, len(schema.features)), dtype=np.float32)
    for j, name in enumerate(schema.features):
        x[:, j] = _numeric_column(table.column(name), path, name, "feature")
    y = _target(table, path, schema)
    train, val = split_indices(n, source.validation_fraction, seed, source=str(path))
    return SiteData(
        x_train=x[train],
        y_train=y[train],
        x_val=x[val],
        y_val=y[val],
        feature_names=tuple(schema.features),
    )


def _target(table: pa.Table, path: Path, schema: DataSchema) -> Float32Array:
    """The label as ``(n,)``, or ``[time, event]`` as ``(n, 2)`` for a survival schema."""
    if schema.time is not None and schema.event is not None:
        time = _numeric_column(table.column(schema.time), path, schema.time, "time")
        event = _numeric_column(table.column(schema.event), path, schema.event, "event")
        negative = time < 0
        if negative.any():
            row = int(np.argmax(negative))
            raise DataError(
                f"{path}: time column {schema.time!r}, row {row + 1}: negative time "
                f"{float(time[row]):g}"
            )
        not_binary = (event != 0) & (event != 1)
        if not_binary.any():
            row = int(np.argmax(not_binary))
            raise DataError(
                f"{path}: event column {schema.event!r}, row {row + 1}: value "
                f"{float(event[row]):g} is not 0 (censored) or 1 (event)"
            )
        return np.column_stack([time, event]).astype(np.float32, copy=False)
    if schema.label is None:
        raise DataError(f"{path}: the data schema names no target (label, or time and event)")
    return _numeric_column(table.column(schema.label), path, schema.label, "label")


def _read_table(path: Path, fmt: DataFormat, columns: list[str]) -> pa.Table:
    """Read only ``columns`` of the file; a missing column lists the ones found."""
    try:
        if fmt is DataFormat.PARQUET:
            found = list(pq.read_schema(path).names)
        else:
            with pacsv.open_csv(path) as reader:
                found = list(reader.schema.names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as {fmt.value}: {_one_line(exc)}") from None
    missing = [c for c in columns if c not in found]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {_names(missing)}; columns found: {_names(found)}"
        )
    try:
        if fmt is DataFormat.PARQUET:
            return pq.read_table(path, columns=columns)
        convert = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=True)
        return pacsv.read_csv(path, convert_options=convert)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as {fmt.value}: {_one_line(exc)}") from None


def _numeric_column(col: pa.ChunkedArray, path: Path, name: str, role: str) -> Float32Array:
    """Column ``name`` as float32, refusing non-numeric, missing and non-finite values."""
    typ = col.type
    if pa.types.is_dictionary(typ):
        col = pc.cast(col, typ.value_type)
        typ = col.type
    if _is_stringlike(typ):
        values = _parse_strings(col, path, name)
    elif _is_numeric(typ):
        values = pc.cast(col, pa.float32(), safe=False).to_numpy()
    else:
        row = _first_valid_row(col)
        shown = "" if row is None else f", row {row + 1}: value {_short(col[row].as_py())}"
        raise DataError(f"{path}: column {name!r}{shown}: non-numeric type {typ}")
    values = np.asarray(values, dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.argmax(bad))
        what = _describe_missing(col, row, float(values[row]))
        raise DataError(f"{path}: {role} column {name!r}, row {row + 1}: {what}")
    return values


def _parse_strings(col: pa.ChunkedArray, path: Path, name: str) -> Float32Array:
    """Strings holding numbers (or true/false) as float32; names the first non-numeric row."""
    try:
        return np.asarray(pc.cast(pc.utf8_trim_whitespace(col), pa.float32()).to_numpy())
    except pa.ArrowException:
        pass
    out = np.empty(len(col), dtype=np.float32)
    for i, raw in enumerate(col.to_pylist()):
        out[i] = _parse_one(raw, path, name, i)
    return out


def _parse_one(raw: object, path: Path, name: str, row: int) -> float:
    """One string cell as a float; ``nan`` for empty cells."""
    if raw is None:
        return float("nan")
    text = str(raw).strip()
    if not text:
        return float("nan")
    low = text.lower()
    if low in _TRUE:
        return 1.0
    if low in _FALSE:
        return 0.0
    try:
        return float(text)
    except ValueError:
        raise DataError(
            f"{path}: column {name!r}, row {row + 1}: non-numeric value {_short(raw)}"
        ) from None


def _describe_missing(col: pa.ChunkedArray, row: int, value: float) -> str:
    """What is wrong with the non-finite cell at ``row``: missing, NaN or infinite."""
    cell = col[row]
    raw = cell.as_py() if cell.is_valid else None
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return "missing value (empty, NA or NaN)"
    if np.isnan(value):
        return "NaN value"
    return "infinite value (or beyond the float32 range)"


def _is_numeric(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_boolean(typ)
        or pa.types.is_decimal(typ)
        or pa.types.is_null(typ)
    )


def _is_stringlike(typ: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_string_view(typ)
    )


def _first_valid_row(col: pa.ChunkedArray) -> int | None:
    valid = pc.is_valid(col).to_numpy(zero_copy_only=False)
    return int(np.argmax(valid)) if valid.any() else None


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _names(names: list[str]) -> str:
    return ", ".join(repr(n) for n in names) if names else "(none)"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."
