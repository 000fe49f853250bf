"""Streaming aggregation, FedAvg and tensor (de)serialization against reference maths."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fedcare.strategies import FedAvg, StreamingMean, create_strategy
from fedcare.transport import flatten, iter_byte_chunks, layout_of, unflatten


@pytest.mark.parametrize("size", [1, 1000, (1 << 16) + 17])
def test_streaming_mean_equals_weighted_average(size: int) -> None:
    rng = np.random.default_rng(0)
    vectors = [rng.normal(size=size).astype(np.float32) for _ in range(5)]
    weights = [10.0, 1.0, 300.0, 7.0, 42.0]
    agg = StreamingMean(size)
    for v, w in zip(vectors, weights, strict=True):
        agg.fold(v, w)
    expected = np.average(np.stack(vectors).astype(np.float64), axis=0, weights=weights)
    np.testing.assert_allclose(agg.mean(), expected, rtol=1e-5, atol=1e-6)
    assert agg.count == 5 and agg.total_weight == sum(weights)


def test_streaming_mean_memory_is_one_model() -> None:
    """Folding allocates nothing model-sized (one in-place fused pass into the accumulator),
    however many updates are folded; a read-only update buffer is fine (and left unchanged)."""
    size = 1 << 20
    agg = StreamingMean(size)
    ones = np.ones(size, dtype=np.float32)
    ones.flags.writeable = False  # as an upload's buffer may be
    tracemalloc.start()
    try:
        for _ in range(20):
            agg.fold(ones, 2.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < size  # bytes: a quarter of one 4 MiB vector
    assert agg._acc.nbytes == 4 * size
    np.testing.assert_array_equal(agg.mean(), np.ones(size, dtype=np.float32))
    assert (ones == 1.0).all()


def test_take_mean_hands_over_the_accumulator() -> None:
    """take_mean is mean() computed in place: same values, no second array, no more folds."""
    agg = StreamingMean(3)
    agg.fold(np.array([1.0, 2.0, 3.0], dtype=np.float32), 1.0)
    agg.fold(np.array([3.0, 6.0, 9.0], dtype=np.float32), 3.0)
    expected = agg.mean()
    acc = agg._acc
    taken = agg.take_mean()
    assert taken is acc  # the accumulator itself, now holding the mean
    np.testing.assert_array_equal(taken, expected)
    np.testing.assert_allclose(taken, [2.5, 5.0, 7.5])
    with pytest.raises(ValueError, match="3 values"):
        agg.fold(np.zeros(3, dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="no vectors"):
        StreamingMean(3).take_mean()


def test_streaming_mean_refuses_bad_input() -> None:
    agg = StreamingMean(4)
    with pytest.raises(ValueError, match="no vectors"):
        agg.mean()
    with pytest.raises(ValueError, match="5 values"):
        agg.fold(np.zeros(5, dtype=np.float32), 1.0)
    with pytest.raises(ValueError, match="positive"):
        agg.fold(np.zeros(4, dtype=np.float32), 0.0)


def test_fedavg_is_weighted_mean_of_local_models() -> None:
    """global + mean(delta) == weighted mean of the local models (hand-computed)."""
    g = np.array([1.0, 2.0], dtype=np.float32)
    locals_ = [np.array([3.0, 2.0], dtype=np.float32), np.array([0.0, 5.0], dtype=np.float32)]
    agg = StreamingMean(2)
    agg.fold(locals_[0] - g, 1.0)
    agg.fold(locals_[1] - g, 3.0)
    new = FedAvg().apply(g, agg.mean())
    np.testing.assert_allclose(new, [0.75, 4.25])
    assert isinstance(create_strategy("fedavg"), FedAvg)
    with pytest.raises(ValueError, match="unknown strategy"):
        create_strategy("fedsgd")


def test_flatten_is_canonical_and_round_trips() -> None:
    named = {"z": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.array([9.0], np.float32)}
    layout, flat = flatten(named)
    assert layout == (("a", (1,)), ("z", (2, 3))) == layout_of(named)
    np.testing.assert_array_equal(flat, [9, 0, 1, 2, 3, 4, 5])
    back = unflatten(layout, flat)
    np.testing.assert_array_equal(back["z"], named["z"])
    with pytest.raises(ValueError, match="layout needs 7"):
        unflatten(layout, flat[:3])


def test_byte_chunks_reassemble() -> None:
    data = bytes(range(256)) * 41
    chunks = list(iter_byte_chunks(data, 1000))
    assert all(len(c) <= 1000 for c in chunks)
    assert b"".join(chunks) == data
