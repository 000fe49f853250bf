"""CKKS homomorphic aggregation (fedcare.privacy.ckks) against plaintext FedAvg."""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

ts = pytest.importorskip("tenseal")

from fedcare.privacy.ckks import (  # noqa: E402 (after the importorskip)
    PUBLIC_CONTEXT_FILE,
    CiphertextSum,
    CkksError,
    EncryptedVector,
    TensealContext,
    VectorHeader,
    create_contexts,
    decrypt_vector,
    encrypt_to_chunks,
    encrypt_vector,
    has_secret_key,
    key_id,
    load_context,
    read_stream_file,
    slot_count,
    write_contexts,
    write_stream,
)

F32 = npt.NDArray[np.float32]
SIZE = 20_000


@pytest.fixture(scope="module")
def contexts() -> tuple[bytes, bytes]:
    """One key for the module: (secret context bytes, public context bytes)."""
    return create_contexts()


@pytest.fixture(scope="module")
def secret(contexts: tuple[bytes, bytes]) -> TensealContext:
    """The participants' context."""
    return load_context(contexts[0])


@pytest.fixture(scope="module")
def public(contexts: tuple[bytes, bytes]) -> TensealContext:
    """The coordinator's context."""
    return load_context(contexts[1])


def _vectors(n: int, size: int, seed: int = 0) -> list[F32]:
    rng = np.random.default_rng(seed)
    return [rng.normal(scale=0.5, size=size).astype(np.float32) for _ in range(n)]


def _stream(secret: TensealContext, values: F32) -> list[bytes]:
    return list(encrypt_to_chunks(secret, values))


def test_encrypted_fedavg_equals_plaintext_fedavg(
    secret: TensealContext, public: TensealContext
) -> None:
    """5 participants, weights p_i summing to 1: decrypted sum == weighted sum within 1e-4."""
    updates = _vectors(5, SIZE)
    samples = np.array([120, 3000, 45, 800, 1500], dtype=np.float64)
    weights = samples / samples.sum()
    aggregate = CiphertextSum(public, SIZE)
    for p, update in zip(weights, updates, strict=True):
        aggregate.add(_stream(secret, (p * update).astype(np.float32)))
    assert aggregate.count == 5
    assert aggregate.header().summands == 5

    result = decrypt_vector(secret, aggregate.to_chunks(), length=SIZE)

    expected = np.average(np.stack(updates).astype(np.float64), axis=0, weights=samples)
    assert result.dtype == np.float32 and result.shape == (SIZE,)
    np.testing.assert_allclose(result, expected, rtol=0, atol=1e-4)


def test_coordinator_context_holds_no_secret_key(
    contexts: tuple[bytes, bytes], secret: TensealContext, public: TensealContext
) -> None:
    assert has_secret_key(secret)
    assert not has_secret_key(public)
    assert not public.is_private()
    with pytest.raises(ValueError, match=r"(?i)secret key"):
        public.secret_key()  # type: ignore[attr-defined]
    # The public context is the parameters only: no key of any kind travels to it.
    assert len(contexts[1]) < 1024
    aggregate = CiphertextSum(public, 10)
    aggregate.add(_stream(secret, np.arange(10, dtype=np.float32)))
    with pytest.raises(CkksError, match="this context holds no secret key"):
        decrypt_vector(public, aggregate.to_chunks())
    with pytest.raises(CkksError, match="this context holds no secret key"):
        encrypt_vector(public, np.zeros(3, dtype=np.float32))
    with pytest.raises(CkksError, match="this context holds no secret key"):
        key_id(public)
    # TenSEAL itself cannot decrypt with it either (not only our check).
    loaded = EncryptedVector.from_chunks(public, aggregate.to_chunks())
    assert loaded.length == 10
    vec = ts.ckks_vector_from(public, ts.ckks_vector(secret, [1.0]).serialize())
    with pytest.raises(ValueError, match="secret_key"):
        vec.decrypt()


def test_contexts_carry_no_galois_or_relin_keys(
    secret: TensealContext, public: TensealContext
) -> None:
    for ctx in (secret, public):
        assert not ctx.has_galois_keys()
        assert not ctx.has_relin_keys()


@pytest.mark.parametrize("size", [1, 4096, 4096 * 2 + 17])
def test_stream_round_trip(secret: TensealContext, public: TensealContext, size: int) -> None:
    values = _vectors(1, size, seed=size)[0]
    encrypted = encrypt_vector(secret, values)
    slots = slot_count(secret)
    assert slots == 4096
    assert encrypted.chunk_count == -(-size // slots)

    items = list(encrypted.to_chunks())
    assert len(items) == 1 + encrypted.chunk_count
    header = VectorHeader.from_bytes(items[0])
    assert (header.length, header.chunk_count, header.summands) == (size, len(items) - 1, 1)
    assert header.key_id == key_id(secret)

    # The coordinator reads it with the public context; re-serializing changes nothing.
    reread = EncryptedVector.from_chunks(public, iter(items))
    assert list(reread.to_chunks()) == items

    # Through a file and back.
    buf = io.BytesIO()
    write_stream(items, buf)
    buf.seek(0)
    np.testing.assert_allclose(
        decrypt_vector(secret, read_stream_file(buf), length=size), values, atol=1e-6
    )
    # The lazy streaming encryption decrypts to the same values.
    np.testing.assert_allclose(
        decrypt_vector(secret, encrypt_to_chunks(secret, values)), values, atol=1e-6
    )


def test_decryption_is_rounded(secret: TensealContext) -> None:
    """Decrypted values are rounded to 2**-20 so the CKKS noise does not reach the output."""
    values = _vectors(1, 5000, seed=3)[0]
    stream = _stream(secret, values)
    rounded = decrypt_vector(secret, stream).astype(np.float64)
    raw = decrypt_vector(secret, stream, quantum_bits=None).astype(np.float64)
    np.testing.assert_array_equal(rounded * 2**20, np.rint(rounded * 2**20))
    assert np.abs(rounded - values).max() <= 2**-21 + 1e-7
    assert not np.array_equal(raw * 2**20, np.rint(raw * 2**20))
    np.testing.assert_allclose(raw, values, atol=1e-6)


def test_wrong_length_refused(secret: TensealContext, public: TensealContext) -> None:
    aggregate = CiphertextSum(public, SIZE)
    short = _stream(secret, np.ones(SIZE - 1, dtype=np.float32))
    with pytest.raises(CkksError, match=f"vector of {SIZE - 1} values"):
        aggregate.add(short)
    with pytest.raises(CkksError, match=f"expected {SIZE}"):
        decrypt_vector(secret, short, length=SIZE)
    assert aggregate.count == 0
    with pytest.raises(CkksError, match="empty"):
        aggregate.to_chunks()


def test_mismatched_chunk_counts_refused(secret: TensealContext, public: TensealContext) -> None:
    items = _stream(secret, np.ones(3 * 4096, dtype=np.float32))
    aggregate = CiphertextSum(public, 3 * 4096)
    with pytest.raises(CkksError, match="stream ended after 2 of the 3 chunks"):
        aggregate.add(items[:-1])
    with pytest.raises(CkksError, match="more chunks than the 3"):
        aggregate.add([*items, items[-1]])
    with pytest.raises(CkksError, match="out of order"):
        aggregate.add([items[0], items[2], items[1], items[3]])
    with pytest.raises(CkksError, match="empty stream"):
        aggregate.add([])
    # A header whose chunk count does not match its length.
    bad = bytearray(items[0])
    bad[9:13] = (7).to_bytes(4, "big")
    with pytest.raises(CkksError, match="7 chunks announced"):
        aggregate.add([bytes(bad), *items[1:]])
    assert aggregate.count == 0


def test_garbage_refused(secret: TensealContext, public: TensealContext) -> None:
    aggregate = CiphertextSum(public, 100)
    good = _stream(secret, np.ones(100, dtype=np.float32))
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, size=len(good[1]), dtype=np.uint8).tobytes()
    with pytest.raises(CkksError, match="not an encrypted-vector header"):
        aggregate.add([b"garbage", *good[1:]])
    with pytest.raises(CkksError, match="not a framed ciphertext"):
        aggregate.add([good[0], noise])
    with pytest.raises(CkksError, match="chunk 0: not a CKKS ciphertext"):
        aggregate.add([good[0], good[1][:8] + noise[8:]])
    with pytest.raises(CkksError, match="chunk 0: not a CKKS ciphertext"):
        aggregate.add([good[0], good[1][: len(good[1]) // 2]])
    with pytest.raises(CkksError, match="not a serialized TenSEAL context"):
        load_context(b"garbage")
    with pytest.raises(CkksError, match="not a serialized TenSEAL context"):
        load_context(noise)
    assert aggregate.count == 0


def test_bad_plaintext_refused(secret: TensealContext) -> None:
    with pytest.raises(CkksError, match="1-D"):
        encrypt_vector(secret, np.zeros((2, 3), dtype=np.float32))
    with pytest.raises(CkksError, match="empty"):
        encrypt_vector(secret, np.zeros(0, dtype=np.float32))
    with pytest.raises(CkksError, match="floating-point"):
        encrypt_vector(secret, np.arange(3))
    with pytest.raises(CkksError, match="value 1 is nan"):
        encrypt_to_chunks(secret, np.array([0.0, np.nan], dtype=np.float32))
    with pytest.raises(CkksError, match="exceeds the CKKS bound"):
        encrypt_vector(secret, np.array([1e30], dtype=np.float32))


def test_other_key_refused(secret: TensealContext, public: TensealContext) -> None:
    other_secret, other_public = (load_context(b) for b in create_contexts())
    values = np.ones(50, dtype=np.float32)
    aggregate = CiphertextSum(public, 50)
    aggregate.add(_stream(secret, values))
    with pytest.raises(CkksError, match="another key"):
        aggregate.add(_stream(other_secret, values))
    with pytest.raises(CkksError, match="another secret key"):
        decrypt_vector(other_secret, aggregate.to_chunks())
    # Same parameters, so the other public context could read it, but not other parameters.
    small_secret = load_context(create_contexts(4096, [40, 20, 40], 20)[0])
    with pytest.raises(CkksError, match="other CKKS parameters"):
        aggregate.add(_stream(small_secret, values))
    with pytest.raises(CkksError, match="another key"):
        CiphertextSum(other_public, 50, key_id=key_id(other_secret)).add(_stream(secret, values))


def test_failed_add_leaves_sum_unchanged(secret: TensealContext, public: TensealContext) -> None:
    """A participant whose upload breaks halfway does not spoil the others' sum."""
    size = 3 * 4096
    updates = _vectors(3, size, seed=7)
    aggregate = CiphertextSum(public, size)
    for update in updates[:2]:
        aggregate.add(_stream(secret, update))
    before = list(aggregate.to_chunks())

    broken = _stream(secret, updates[2])
    broken[3] = broken[3][:100]
    with pytest.raises(CkksError, match="chunk 2"):
        aggregate.add(broken)

    def dropped() -> Iterator[bytes]:
        items = _stream(secret, updates[2])
        yield from items[:3]
        raise ConnectionResetError("participant went away")

    with pytest.raises(ConnectionResetError):
        aggregate.add(dropped())
    assert aggregate.count == 2
    assert list(aggregate.to_chunks()) == before

    aggregate.add(_stream(secret, updates[2]))
    np.testing.assert_allclose(
        decrypt_vector(secret, aggregate.to_chunks()),
        np.sum(np.stack(updates).astype(np.float64), axis=0),
        atol=1e-5,
    )


def test_sum_never_copies_ciphertexts(
    secret: TensealContext, public: TensealContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CKKSVector.copy()`` is slow (pitfalls): the aggregate adds in place."""

    def refuse(self: object) -> object:
        raise AssertionError("CKKSVector.copy() called")

    monkeypatch.setattr(ts.CKKSVector, "copy", refuse)
    aggregate = CiphertextSum(public, 5000)
    for update in _vectors(3, 5000):
        aggregate.add(_stream(secret, update))
    assert aggregate.count == 3
    assert len(list(aggregate.to_chunks())) == 1 + 2


def test_write_contexts(tmp_path: Path) -> None:
    secret_path, public_path = write_contexts(tmp_path / "keys")
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert public_path.name == PUBLIC_CONTEXT_FILE
    assert has_secret_key(load_context(secret_path.read_bytes()))
    assert not has_secret_key(load_context(public_path.read_bytes()))
    with pytest.raises(CkksError, match="refusing to replace"):
        write_contexts(tmp_path / "keys")
    old = secret_path.read_bytes()
    write_contexts(tmp_path / "keys", overwrite=True)
    assert secret_path.read_bytes() != old
    assert stat.S_IMODE(secret_path.stat().st_mode) == 0o600


def test_bad_parameters_refused() -> None:
    with pytest.raises(CkksError, match="parameters refused"):
        create_contexts(1000, [60, 40, 60], 40)
