"""Tests of fedcare.repository: versions, atomicity, integrity, safetensors I/O.

The contract tests take the ``backend`` fixture (tests/unit/conftest.py) and run against both
the local repository and the S3 repository (moto's standalone server over HTTP); the rest are
local-specific.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fedcare.errors import RepositoryError
from fedcare.repository import (
    LocalRepository,
    ModelRepository,
    NewVersion,
    ParticipantContribution,
    VersionMetadata,
    from_safetensors_bytes,
    load_file,
    open_repository,
    save_file,
    to_safetensors_bytes,
)
from fedcare.repository.local import TMP_PREFIX
from tests.support.repo_backends import Backend

JOB = "heart-study"


def _weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "layer0.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "layer0.bias": rng.standard_normal(8).astype(np.float32),
        "scale": np.array(1.5, dtype=np.float32),
    }


def _meta(round_: int = 1, parent: str | None = None) -> NewVersion:
    return NewVersion(
        round=round_,
        parent_version=parent,
        metrics={"auroc": 0.81, "loss": 0.4},
        train_metrics={"loss": 0.35},
        participants=[
            ParticipantContribution(name="hospital-a", samples=120),
            ParticipantContribution(name="hospital-b", samples=80),
        ],
        strategy="fedavg",
    )


def _visible(repo: ModelRepository, job: str = JOB) -> list[str]:
    return [m.version for m in repo.list_versions(job)]


@pytest.fixture()
def repo(tmp_path: Path) -> LocalRepository:
    """An empty local repository."""
    return LocalRepository(tmp_path / "models")


# ------------------------------------------------------------------------------------------
# Round trip and metadata


def test_round_trip(backend: Backend) -> None:
    repo = backend.repo
    weights = _weights()
    meta = repo.write_version(JOB, weights, _meta())
    assert meta.version == "v0001" and meta.job == JOB and meta.round == 1
    data = backend.read_raw(f"{JOB}/v0001/model.safetensors")
    assert meta.sha256 == hashlib.sha256(data).hexdigest()
    assert meta.size_bytes == len(data)
    assert [(t.name, t.shape) for t in meta.tensors] == [
        ("layer0.weight", [8, 4]),
        ("layer0.bias", [8]),
        ("scale", []),
    ]
    back = repo.read_weights(JOB, "v0001")
    assert back.keys() == weights.keys()
    for name, arr in weights.items():
        assert back[name].dtype == np.float32
        np.testing.assert_array_equal(back[name], arr)
        assert back[name].flags.writeable
    assert repo.get(JOB, "v0001") == meta
    assert repo.latest(JOB) == meta
    assert repo.jobs() == [JOB]


def test_metadata_json_is_camel_case(backend: Backend) -> None:
    backend.repo.write_version(JOB, _weights(), _meta())
    raw = json.loads(backend.read_raw(f"{JOB}/v0001/metadata.json"))
    assert set(raw) >= {
        "job",
        "version",
        "round",
        "parentVersion",
        "createdAt",
        "sha256",
        "sizeBytes",
        "metrics",
        "trainMetrics",
        "participants",
        "strategy",
        "tensors",
    }
    assert raw["participants"][0] == {"name": "hospital-a", "samples": 120}
    assert raw["createdAt"].endswith("Z")
    assert VersionMetadata.model_validate(raw).version == "v0001"


def test_non_finite_metrics_are_left_out(backend: Backend) -> None:
    meta = NewVersion(round=1, metrics={"auroc": float("nan"), "loss": 0.5})
    written = backend.repo.write_version(JOB, _weights(), meta)
    assert written.metrics == {"loss": 0.5}
    json.loads(backend.read_raw(f"{JOB}/v0001/metadata.json"))  # strict JSON


def test_empty_repository(backend: Backend) -> None:
    repo = backend.repo
    assert repo.list_versions(JOB) == []
    assert repo.latest(JOB) is None
    assert repo.jobs() == []
    with pytest.raises(RepositoryError, match="no version"):
        repo.get(JOB, "v0001")
    with pytest.raises(RepositoryError, match="no version"):
        repo.read_weights(JOB, "v0001")
    with pytest.raises(RepositoryError, match="no version"):
        repo.open_weights_stream(JOB, "v0001")


def test_invalid_names(backend: Backend) -> None:
    repo = backend.repo
    for job in ("../etc", "Upper", "", "a/b", ".hidden"):
        with pytest.raises(RepositoryError, match="job name"):
            repo.write_version(job, _weights(), _meta())
    for version in ("1", "v1", "../v0001", "v0001/.."):
        with pytest.raises(RepositoryError, match="version"):
            repo.get(JOB, version)


# ------------------------------------------------------------------------------------------
# Versioning


def test_versions_are_monotonic(backend: Backend) -> None:
    repo = backend.repo
    parent: str | None = None
    for r in range(1, 6):
        meta = repo.write_version(JOB, _weights(r), _meta(r, parent))
        parent = meta.version
    assert _visible(repo) == ["v0001", "v0002", "v0003", "v0004", "v0005"]
    assert [m.parent_version for m in repo.list_versions(JOB)] == [
        None,
        "v0001",
        "v0002",
        "v0003",
        "v0004",
    ]
    other = repo.write_version("other-job", _weights(), _meta())
    assert other.version == "v0001"
    assert repo.jobs() == sorted([JOB, "other-job"])


def test_names_never_reused_after_gap(repo: LocalRepository) -> None:
    repo.write_version(JOB, _weights(), _meta())
    # A version directory without metadata (e.g. damaged) is invisible but its name stays taken.
    (repo.root / JOB / "v0002").mkdir()
    (repo.root / JOB / "v0002" / "junk").write_text("x")
    meta = repo.write_version(JOB, _weights(), _meta())
    assert meta.version == "v0003"
    assert _visible(repo) == ["v0001", "v0003"]


def test_numbering_past_9999(repo: LocalRepository) -> None:
    repo.write_version(JOB, _weights(), _meta())
    os.rename(repo.root / JOB / "v0001", repo.root / JOB / "v9999")
    meta_path = repo.root / JOB / "v9999" / "metadata.json"
    raw = json.loads(meta_path.read_text())
    raw["version"] = "v9999"
    meta_path.write_text(json.dumps(raw))
    assert repo.write_version(JOB, _weights(), _meta()).version == "v10000"
    assert _visible(repo) == ["v9999", "v10000"]
    latest = repo.latest(JOB)
    assert latest is not None and latest.version == "v10000"


def test_concurrent_writers_never_collide(backend: Backend) -> None:
    repo = backend.repo
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def writer(seed: int) -> None:
        # Each thread has its own repository object, as separate processes would.
        mine = backend.twin()
        barrier.wait()
        try:
            for i in range(10):
                meta = mine.write_version(JOB, _weights(seed * 100 + i), _meta(i + 1))
                with lock:
                    results.append(meta.version)
        except (RepositoryError, OSError) as exc:  # reported to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 20 and len(set(results)) == 20
    assert _visible(repo) == [f"v{n:04d}" for n in range(1, 21)]
    # Every version holds exactly the weights its metadata describes.
    for meta in repo.list_versions(JOB):
        repo.read_weights(JOB, meta.version)


def test_concurrent_writers_retry_on_taken_name(
    repo: LocalRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the race: a rival publishes the chosen name just before our rename."""
    repo.write_version(JOB, _weights(), _meta())
    real_rename = os.rename
    rival = LocalRepository(repo.root)
    fired: list[bool] = []

    def racing_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if not fired:
            fired.append(True)
            monkeypatch.setattr(os, "rename", real_rename)
            rival.write_version(JOB, _weights(9), _meta(9))  # takes v0002
            monkeypatch.setattr(os, "rename", racing_rename)
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", racing_rename)
    meta = repo.write_version(JOB, _weights(), _meta(2))
    monkeypatch.setattr(os, "rename", real_rename)
    assert meta.version == "v0003"
    assert _visible(repo) == ["v0001", "v0002", "v0003"]
    assert repo.get(JOB, "v0002").round == 9
    assert repo.get(JOB, "v0003").round == 2
    assert not [p for p in (repo.root / JOB).iterdir() if p.name.startswith(TMP_PREFIX)]


# ------------------------------------------------------------------------------------------
# Atomicity


def test_interrupted_rename_leaves_no_version(
    repo: LocalRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo.write_version(JOB, _weights(), _meta())
    before = repo.list_versions(JOB)
    seen_files: list[list[str]] = []

    def failing_rename(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        seen_files.append(sorted(os.listdir(src)))
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(RepositoryError, match="cannot publish"):
        repo.write_version(JOB, _weights(1), _meta(2))
    monkeypatch.undo()
    assert seen_files == [["metadata.json", "model.safetensors"]]  # files were written
    assert repo.list_versions(JOB) == before
    assert sorted(p.name for p in (repo.root / JOB).iterdir()) == ["v0001"]


def test_crash_at_rename_leaves_no_version(
    repo: LocalRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Something other than OSError (a KeyboardInterrupt, say) is propagated and cleaned up."""
    before = repo.list_versions(JOB)

    def crash(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "rename", crash)
    with pytest.raises(KeyboardInterrupt):
        repo.write_version(JOB, _weights(), _meta())
    monkeypatch.undo()
    assert repo.list_versions(JOB) == before == []
    assert repo.latest(JOB) is None


def test_leftover_tmp_dir_is_invisible(repo: LocalRepository) -> None:
    repo.write_version(JOB, _weights(), _meta())
    before = repo.list_versions(JOB)
    # A writer that died after writing both files but before the rename.
    tmp = repo.root / JOB / f"{TMP_PREFIX}deadbeef"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(to_safetensors_bytes(_weights(3)))
    good = json.loads((repo.root / JOB / "v0001" / "metadata.json").read_text())
    good["version"] = "v0002"
    (tmp / "metadata.json").write_text(json.dumps(good))
    assert repo.list_versions(JOB) == before
    assert repo.latest(JOB) == before[-1]
    # Fresh temp dirs belong to live writers and survive the next write.
    assert repo.write_version(JOB, _weights(), _meta()).version == "v0002"
    assert tmp.exists()


def test_stale_tmp_dirs_are_cleaned(repo: LocalRepository) -> None:
    repo.write_version(JOB, _weights(), _meta())
    stale = repo.root / JOB / f"{TMP_PREFIX}0123"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    repo.write_version(JOB, _weights(), _meta())
    assert not stale.exists()


def test_nan_weights_refused_with_nothing_written(backend: Backend) -> None:
    repo = backend.repo
    repo.write_version(JOB, _weights(), _meta())
    before = backend.stored(JOB)
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = _weights()
        bad["layer0.weight"][2, 1] = bad_value
        with pytest.raises(RepositoryError, match="non-finite"):
            repo.write_version(JOB, bad, _meta())
    assert backend.stored(JOB) == before
    # Nothing written for a brand-new job either.
    bad = _weights()
    bad["scale"] = np.array(np.nan, dtype=np.float32)
    with pytest.raises(RepositoryError):
        repo.write_version("new-job", bad, _meta())
    assert backend.stored("new-job") == []


def test_non_float32_refused(backend: Backend) -> None:
    repo = backend.repo
    for arr in (
        np.zeros(3, dtype=np.float64),
        np.zeros(3, dtype=np.float16),
        np.zeros(3, dtype=np.int32),
    ):
        with pytest.raises(RepositoryError, match="float32"):
            repo.write_version(JOB, {"w": arr}, _meta())
    with pytest.raises(RepositoryError, match="numpy array"):
        repo.write_version(JOB, {"w": [1.0, 2.0]}, _meta())  # type: ignore[dict-item]
    with pytest.raises(RepositoryError, match="at least one tensor"):
        repo.write_version(JOB, {}, _meta())
    assert repo.list_versions(JOB) == []


def test_non_contiguous_weights_are_stored(backend: Backend) -> None:
    repo = backend.repo
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    view = base[:, ::2].T  # neither C- nor F-contiguous
    meta = repo.write_version(JOB, {"w": view}, _meta())
    np.testing.assert_array_equal(repo.read_weights(JOB, meta.version)["w"], view)


SIGKILL_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from fedcare.repository import LocalRepository, NewVersion

    repo = LocalRepository(Path(sys.argv[1]))
    weights = {"big": np.ones(50 * 1024 * 1024, dtype=np.float32)}  # 200 MiB
    print("ready", flush=True)
    repo.write_version("heart-study", weights, NewVersion(round=2))
    print("done", flush=True)
    """
)


@pytest.mark.timeout(120)
def test_sigkill_mid_write_leaves_no_version(repo: LocalRepository, tmp_path: Path) -> None:
    first = repo.write_version(JOB, _weights(), _meta())
    job_dir = repo.root / JOB
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGKILL_WRITER, str(repo.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        partial: list[Path] = []
        # Kill once the weights file is being written inside the hidden temp directory.
        while time.monotonic() < deadline and proc.poll() is None:
            partial = [
                p / "model.safetensors"
                for p in job_dir.iterdir()
                if p.name.startswith(TMP_PREFIX) and (p / "model.safetensors").exists()
            ]
            if partial:
                break
            time.sleep(0.0005)
        assert partial, f"the writer never started a version: {proc.communicate()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the writer finished before it was killed"
    # The half-written version stays hidden; the old one is intact; writing goes on.
    assert _visible(repo) == ["v0001"]
    assert repo.latest(JOB) == first
    assert repo.jobs() == [JOB]
    assert partial[0].exists()  # the half-written file is still there, hidden
    assert repo.write_version(JOB, _weights(), _meta(2)).version == "v0002"


# ------------------------------------------------------------------------------------------
# Integrity and streaming


def test_tampered_file_is_detected(backend: Backend, tmp_path: Path) -> None:
    repo = backend.repo
    meta = repo.write_version(JOB, _weights(), _meta())
    rel = f"{JOB}/{meta.version}/model.safetensors"
    data = bytearray(backend.read_raw(rel))
    data[-1] ^= 0x01  # a bit flip inside the last tensor: still valid safetensors
    backend.write_raw(rel, bytes(data))
    with pytest.raises(RepositoryError, match="sha256"):
        repo.read_weights(JOB, meta.version)
    with pytest.raises(RepositoryError, match="sha256"):
        b"".join(repo.open_weights_stream(JOB, meta.version))
    with pytest.raises(RepositoryError, match="sha256"):
        repo.export(JOB, meta.version, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    # Truncation is caught too.
    backend.write_raw(rel, bytes(data[:-4]))
    with pytest.raises(RepositoryError, match="sha256"):
        repo.read_weights(JOB, meta.version)


def test_server_state_is_stored_with_the_version(backend: Backend) -> None:
    """A server optimizer's state goes into the same all-or-nothing write as the weights, is
    checked against its sha256 on reading, and a version without one reads as empty."""
    repo = backend.repo
    plain = repo.write_version(JOB, _weights(), _meta())
    assert plain.server_state_sha256 is None and repo.read_server_state(JOB, plain.version) == {}
    rng = np.random.default_rng(7)
    state = {
        "m": rng.standard_normal(44).astype(np.float32),
        "v": rng.random(44).astype(np.float32),
        "steps": np.array([3.0], dtype=np.float32),
    }
    meta = repo.write_version(JOB, _weights(1), _meta(2, plain.version), server_state=state)
    rel = f"{JOB}/{meta.version}/server-state.safetensors"
    assert rel.split("/", 1)[1] in backend.stored(JOB)
    raw = backend.read_raw(rel)
    assert meta.server_state_sha256 == hashlib.sha256(raw).hexdigest()
    stored = json.loads(backend.read_raw(f"{JOB}/{meta.version}/metadata.json"))
    assert stored["serverStateSha256"] == meta.server_state_sha256
    back = backend.twin().read_server_state(JOB, meta.version)
    assert back.keys() == state.keys()
    for name, arr in state.items():
        np.testing.assert_array_equal(back[name], arr)
    bad = {"m": np.full(3, np.nan, dtype=np.float32)}
    with pytest.raises(RepositoryError, match="NaN"):
        repo.write_version(JOB, _weights(2), _meta(3, meta.version), server_state=bad)
    assert _visible(repo) == [plain.version, meta.version]
    flipped = bytearray(raw)
    flipped[-1] ^= 0x01
    backend.write_raw(rel, bytes(flipped))
    with pytest.raises(RepositoryError, match="sha256"):
        repo.read_server_state(JOB, meta.version)
    backend.delete_raw(rel)
    with pytest.raises(RepositoryError, match="missing"):
        repo.read_server_state(JOB, meta.version)


def test_already_encoded_weights_are_stored_as_given(backend: Backend) -> None:
    """``encoded`` (what the coordinator served already) is stored byte for byte, with the
    same metadata as encoding the weights here would give."""
    repo = backend.repo
    weights = _weights(3)
    plain = repo.write_version(JOB, weights, _meta())
    given = repo.write_version(JOB, weights, _meta(), encoded=to_safetensors_bytes(weights))
    assert (given.sha256, given.size_bytes, given.tensors) == (
        plain.sha256,
        plain.size_bytes,
        plain.tensors,
    )
    assert backend.read_raw(f"{JOB}/{given.version}/model.safetensors") == backend.read_raw(
        f"{JOB}/{plain.version}/model.safetensors"
    )
    for name, arr in repo.read_weights(JOB, given.version).items():
        np.testing.assert_array_equal(arr, weights[name])


def test_missing_weights_file(backend: Backend) -> None:
    repo = backend.repo
    meta = repo.write_version(JOB, _weights(), _meta())
    backend.delete_raw(f"{JOB}/{meta.version}/model.safetensors")
    with pytest.raises(RepositoryError, match="missing"):
        repo.read_weights(JOB, meta.version)
    with pytest.raises(RepositoryError, match="missing"):
        repo.open_weights_stream(JOB, meta.version)


def test_corrupt_metadata(backend: Backend) -> None:
    repo = backend.repo
    meta = repo.write_version(JOB, _weights(), _meta())
    backend.write_raw(f"{JOB}/{meta.version}/metadata.json", b"{not json")
    with pytest.raises(RepositoryError, match="malformed"):
        repo.get(JOB, meta.version)


def test_stream_reassembles_file(backend: Backend) -> None:
    repo = backend.repo
    weights = {"w": np.random.default_rng(1).standard_normal(10_000).astype(np.float32)}
    meta = repo.write_version(JOB, weights, _meta())
    file_bytes = backend.read_raw(f"{JOB}/{meta.version}/model.safetensors")
    chunks = list(repo.open_weights_stream(JOB, meta.version, chunk_size=4096))
    assert len(chunks) == -(-len(file_bytes) // 4096)
    assert all(len(c) <= 4096 for c in chunks)
    assert b"".join(chunks) == file_bytes
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == meta.sha256
    np.testing.assert_array_equal(from_safetensors_bytes(b"".join(chunks))["w"], weights["w"])
    assert b"".join(repo.open_weights_stream(JOB, meta.version)) == file_bytes
    with pytest.raises(RepositoryError, match="chunk_size"):
        repo.open_weights_stream(JOB, meta.version, chunk_size=0)


def test_export(backend: Backend, tmp_path: Path) -> None:
    repo = backend.repo
    meta = repo.write_version(JOB, _weights(), _meta())
    src = backend.read_raw(f"{JOB}/{meta.version}/model.safetensors")
    out = repo.export(JOB, meta.version, tmp_path / "exports" / "best.safetensors")
    assert out == tmp_path / "exports" / "best.safetensors"
    assert out.read_bytes() == src
    side = VersionMetadata.model_validate_json((tmp_path / "exports" / "best.json").read_bytes())
    assert side == meta
    into_dir = repo.export(JOB, meta.version, tmp_path / "exports")
    assert into_dir == tmp_path / "exports" / f"{JOB}-{meta.version}.safetensors"
    assert (tmp_path / "exports" / f"{JOB}-{meta.version}.json").is_file()
    np.testing.assert_array_equal(load_file(into_dir)["scale"], _weights()["scale"])


# ------------------------------------------------------------------------------------------
# safetensors I/O and open_repository


def test_safetensors_io(tmp_path: Path) -> None:
    weights = _weights()
    back = from_safetensors_bytes(to_safetensors_bytes(weights))
    for name in weights:
        np.testing.assert_array_equal(back[name], weights[name])
    save_file(weights, tmp_path / "m.safetensors")
    loaded = load_file(tmp_path / "m.safetensors")
    assert loaded.keys() == weights.keys()
    with pytest.raises(RepositoryError, match="non-finite"):
        save_file({"w": np.array([np.nan], dtype=np.float32)}, tmp_path / "bad.safetensors")
    assert not (tmp_path / "bad.safetensors").exists()
    with pytest.raises(RepositoryError, match="safetensors"):
        from_safetensors_bytes(b"garbage")
    with pytest.raises(RepositoryError):
        load_file(tmp_path / "missing.safetensors")


def test_reading_refuses_foreign_dtypes_and_nan(tmp_path: Path) -> None:
    import safetensors.numpy as st_numpy

    with pytest.raises(RepositoryError, match="float32"):
        from_safetensors_bytes(st_numpy.save({"w": np.zeros(2, dtype=np.float64)}))
    with pytest.raises(RepositoryError, match="non-finite"):
        from_safetensors_bytes(st_numpy.save({"w": np.array([np.inf], dtype=np.float32)}))


def test_open_repository(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absolute = open_repository(f"file://{tmp_path}/models")
    assert isinstance(absolute, LocalRepository) and isinstance(absolute, ModelRepository)
    assert absolute.root == tmp_path / "models"
    monkeypatch.chdir(tmp_path)
    relative = open_repository("file://./fedcare-models")
    assert isinstance(relative, LocalRepository)
    relative.write_version(JOB, _weights(), _meta())
    assert (tmp_path / "fedcare-models" / JOB / "v0001" / "metadata.json").is_file()
    bare = open_repository("file://other")
    assert isinstance(bare, LocalRepository) and bare.root == Path("other")
    assert relative.version_uri(JOB, "v0001") == (
        (tmp_path / "fedcare-models" / JOB / "v0001").resolve().as_uri()
    )
    with pytest.raises(RepositoryError, match="unsupported"):
        open_repository("http://example.com/models")
    with pytest.raises(RepositoryError, match="no path"):
        open_repository("file://")
