"""Site data: loading CSV/Parquet with schema checks, the train/validation split, synthetic data."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped,unused-ignore]
import pyarrow.csv as pacsv  # type: ignore[import-untyped,unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import pytest

from fedcare.data import SYNTH_FEATURES, SYNTH_LABEL, SiteData, load_site, synthesize
from fedcare.data.split import split_indices
from fedcare.errors import DataError
from fedcare.spec.job import DataFormat, DataSchema, DataSource

SCHEMA = DataSchema(features=["a", "b"], label="y")


def write(tmp_path: Path, text: str, name: str = "site.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path: Path, schema: DataSchema = SCHEMA, **source: object) -> SiteData:
    return load_site(DataSource(path=str(path), **source), schema)  # type: ignore[arg-type]


def error_of(path: Path, schema: DataSchema = SCHEMA, **source: object) -> str:
    with pytest.raises(DataError) as info:
        load(path, schema, **source)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def numbered_csv(tmp_path: Path, rows: int) -> Path:
    """Feature ``a`` is the row id, ``b`` its double; label alternates."""
    lines = ["a,b,y"] + [f"{i},{2 * i},{i % 2}" for i in range(rows)]
    return write(tmp_path, "\n".join(lines) + "\n")


# --- reading --------------------------------------------------------------------------------


def test_csv_loads_features_in_schema_order_as_float32(tmp_path: Path) -> None:
    path = write(tmp_path, "y,b,extra,a\n1,10,x,1\n0,20,y,2\n1,30,z,3\n0,40,w,4\n")
    data = load(path, validation_fraction=0.25)
    assert data.feature_names == ("a", "b")
    assert data.x_train.dtype == np.float32 and data.y_train.dtype == np.float32
    assert data.x_train.shape == (3, 2) and data.x_val.shape == (1, 2)
    x = np.concatenate([data.x_train, data.x_val])
    y = np.concatenate([data.y_train, data.y_val])
    order = np.argsort(x[:, 0])
    np.testing.assert_array_equal(x[order], [[1, 10], [2, 20], [3, 30], [4, 40]])
    np.testing.assert_array_equal(y[order], [1, 0, 1, 0])


@pytest.mark.parametrize("suffix", [".parquet", ".pq"])
def test_parquet_by_extension_with_booleans_as_01(tmp_path: Path, suffix: str) -> None:
    table = pa.table({"a": [1.5, 2.5, 3.5], "b": [True, False, True], "y": [1, 0, 1]})
    path = tmp_path / f"site{suffix}"
    pq.write_table(table, path)
    data = load(path, validation_fraction=0.34)
    x = np.concatenate([data.x_train, data.x_val])
    assert sorted(x[:, 1].tolist()) == [0.0, 1.0, 1.0]


def test_csv_booleans_are_01(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,y\n1,true,false\n2,false,true\n3,True,False\n")
    data = load(path, validation_fraction=0.34)
    y = np.concatenate([data.y_train, data.y_val])
    assert sorted(y.tolist()) == [0.0, 0.0, 1.0]


def test_explicit_format_overrides_extension(tmp_path: Path) -> None:
    path = write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n", name="site.txt")
    data = load(path, format=DataFormat.CSV, validation_fraction=0.5)
    assert data.x_train.shape == (1, 2)


# --- errors ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.csv")
    assert "not found" in message


def test_unknown_extension_with_auto_format(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n", name="site.xlsx"))
    assert ".xlsx" in message


def test_missing_column_lists_the_columns_found(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,c,y\n1,2,0\n3,4,1\n"))
    assert "'b'" in message
    assert "columns found: 'a', 'c', 'y'" in message


def test_missing_column_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "site.parquet"
    pq.write_table(pa.table({"a": [1.0], "y": [0]}), path)
    message = error_of(path)
    assert "'b'" in message and "'a', 'y'" in message


def test_non_numeric_feature_names_column_row_and_value(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,high,0\n7,oops,1\n"))
    assert "'b'" in message
    assert "row 3" in message
    assert "'high'" in message


def test_non_numeric_label(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n3,4,yes-ish\n"))
    assert "'y'" in message and "row 2" in message and "'yes-ish'" in message


def test_non_numeric_string_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "site.parquet"
    pq.write_table(pa.table({"a": ["1", "2", "n/a?"], "b": [1, 2, 3], "y": [0, 1, 0]}), path)
    message = error_of(path)
    assert "'a'" in message and "row 3" in message and "'n/a?'" in message


def test_numeric_strings_in_parquet_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "site.parquet"
    pq.write_table(pa.table({"a": ["1.5", " 2 ", "3"], "b": [1, 2, 3], "y": [0, 1, 0]}), path)
    data = load(path, validation_fraction=0.34)
    x = np.concatenate([data.x_train, data.x_val])
    assert sorted(x[:, 0].tolist()) == [1.5, 2.0, 3.0]


def test_non_numeric_type_in_parquet(tmp_path: Path) -> None:
    path = tmp_path / "site.parquet"
    table = pa.table({"a": pa.array([[1], [2]]), "b": [1, 2], "y": [0, 1]})
    pq.write_table(table, path)
    message = error_of(path)
    assert "'a'" in message and "row 1" in message and "non-numeric" in message


def test_empty_label(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,6,\n"))
    assert "label" in message and "'y'" in message and "row 3" in message
    assert "empty" in message


def test_nan_label(tmp_path: Path) -> None:
    path = tmp_path / "site.parquet"
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [1.0, 2.0], "y": [float("nan"), 1.0]}), path)
    message = error_of(path)
    assert "label" in message and "'y'" in message and "row 1" in message and "NaN" in message


def test_nan_feature(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n3,NaN,1\n5,6,0\n"))
    assert "feature" in message and "'b'" in message and "row 2" in message


def test_empty_feature_cell(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n3,4,1\n5,6,0\n,8,1\n"))
    assert "'a'" in message and "row 4" in message and "empty" in message


def test_empty_feature_cell_in_a_column_that_is_otherwise_text_like(tmp_path: Path) -> None:
    # ``b`` has an empty cell before the non-numeric one: the non-numeric one is reported
    message = error_of(write(tmp_path, "a,b,y\n1,,0\n3,abc,1\n"))
    assert "'b'" in message and "row 2" in message and "'abc'" in message


def test_infinite_feature(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n3,inf,1\n"))
    assert "'b'" in message and "row 2" in message


def test_empty_table(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n"))
    assert "no data rows" in message


def test_too_small_to_split(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n"))
    assert "too few" in message


def test_unparseable_csv(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "a,b,y\n1,2,0\n1,2,3,4,5\n"))
    assert "cannot read" in message


def test_not_parquet(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "not parquet at all", name="site.parquet"))
    assert "cannot read" in message


# --- split ----------------------------------------------------------------------------------


def test_split_is_deterministic_and_a_partition(tmp_path: Path) -> None:
    path = numbered_csv(tmp_path, 1000)
    first, again = load(path), load(path)
    np.testing.assert_array_equal(first.x_train, again.x_train)
    np.testing.assert_array_equal(first.x_val, again.x_val)
    ids = np.concatenate([first.x_train[:, 0], first.x_val[:, 0]])
    assert sorted(ids.tolist()) == list(range(1000))
    assert len(first.x_val) == 200 and len(first.x_train) == 800
    np.testing.assert_array_equal(first.x_train[:, 1], 2 * first.x_train[:, 0])
    np.testing.assert_array_equal(first.y_train, first.x_train[:, 0] % 2)


def test_split_depends_on_seed(tmp_path: Path) -> None:
    path = numbered_csv(tmp_path, 1000)
    source = DataSource(path=str(path))
    a, b = load_site(source, SCHEMA, seed=1), load_site(source, SCHEMA, seed=2)
    assert not np.array_equal(a.x_val, b.x_val)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_split_fraction(fraction: float) -> None:
    train, val = split_indices(400, fraction, seed=3)
    assert len(val) == round(400 * fraction)
    assert len(train) + len(val) == 400
    assert not set(train.tolist()) & set(val.tolist())


def test_split_keeps_both_sides_non_empty() -> None:
    train, val = split_indices(2, 0.01, seed=0)
    assert len(train) == 1 and len(val) == 1
    train, val = split_indices(3, 0.99, seed=0)
    assert len(train) == 1 and len(val) == 2


# --- synthetic data -------------------------------------------------------------------------


def test_synthesize_writes_sites_with_the_columns(tmp_path: Path) -> None:
    paths = synthesize(3, 500, tmp_path / "csv", "csv", seed=4)
    assert [p.name for p in paths] == ["site-1.csv", "site-2.csv", "site-3.csv"]
    table = pacsv.read_csv(paths[0])
    assert tuple(table.column_names) == (*SYNTH_FEATURES, SYNTH_LABEL)
    assert table.num_rows == 500
    assert set(table.column(SYNTH_LABEL).to_pylist()) == {0, 1}
    parquet = synthesize(1, 500, tmp_path / "pq", "parquet", seed=4)
    assert pq.read_table(parquet[0]).equals(table.cast(pq.read_table(parquet[0]).schema))


def test_synthesize_is_deterministic(tmp_path: Path) -> None:
    one = synthesize(2, 300, tmp_path / "one", seed=7)
    two = synthesize(2, 300, tmp_path / "two", seed=7)
    other = synthesize(2, 300, tmp_path / "other", seed=8)
    assert [p.read_bytes() for p in one] == [p.read_bytes() for p in two]
    assert one[0].read_bytes() != other[0].read_bytes()


def test_synthesize_sites_differ_in_prevalence_and_features(tmp_path: Path) -> None:
    paths = synthesize(4, 20_000, tmp_path, "parquet", seed=0)
    tables = [pq.read_table(p) for p in paths]
    prevalence = [float(np.mean(t.column(SYNTH_LABEL).to_numpy())) for t in tables]
    age = [float(np.mean(t.column("age").to_numpy())) for t in tables]
    assert max(prevalence) - min(prevalence) > 0.08
    assert all(0.05 < p < 0.6 for p in prevalence)
    assert max(age) - min(age) > 8.0


def test_synthesize_output_loads_with_the_synth_schema(tmp_path: Path) -> None:
    (path,) = synthesize(1, 1000, tmp_path, "csv")
    schema = DataSchema(features=list(SYNTH_FEATURES), label=SYNTH_LABEL)
    data = load_site(DataSource(path=str(path)), schema)
    assert data.x_train.shape == (800, len(SYNTH_FEATURES))


def test_synthesize_rejects_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        synthesize(1, 10, tmp_path, "xlsx")


def test_load_one_million_rows_quickly(tmp_path: Path) -> None:
    (path,) = synthesize(1, 1_000_000, tmp_path, "csv")
    schema = DataSchema(features=list(SYNTH_FEATURES), label=SYNTH_LABEL)
    timings = []
    for _ in range(2):  # best of two: the machine may be shared
        start = time.perf_counter()
        data = load_site(DataSource(path=str(path)), schema)
        timings.append(time.perf_counter() - start)
    assert len(data.x_train) + len(data.x_val) == 1_000_000
    assert min(timings) < 2.0, f"loading 1M rows took {min(timings):.2f} s"
