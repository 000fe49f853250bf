"""A model repository on a local (or mounted) file system.

Layout::

    <root>/<job>/<version>/model.safetensors
    <root>/<job>/<version>/metadata.json

A version is written into a hidden ``<root>/<job>/.tmp-<random>/`` directory, both files are
fsynced, and the directory is renamed to ``<root>/<job>/<version>``. ``rename(2)`` of a directory
fails when the target exists and is not empty, so two writers racing for the same name cannot
both win: the loser picks the next name and tries again. Listings skip hidden entries and any
directory without ``metadata.json``, so a process killed mid-write leaves no visible version.
Temporary directories older than an hour are removed on the next write.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from fedcare.errors import RepositoryError
from fedcare.repository.base import (
    SERVER_STATE_FILE,
    VERSION_PATTERN,
    ModelRepository,
    NewVersion,
    TensorInfo,
    VersionMetadata,
    check_job,
    check_version,
    decode_server_state,
    encode_server_state,
    version_name,
)
from fedcare.repository.safetensors_io import from_safetensors_bytes, to_safetensors_bytes

__all__ = ["METADATA_FILE", "TMP_PREFIX", "TMP_STALE_SECONDS", "WEIGHTS_FILE", "LocalRepository"]

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "metadata.json"
#: Prefix of the hidden directories versions are assembled in.
TMP_PREFIX = ".tmp-"
#: Temporary directories untouched this long belong to dead writers and are removed.
TMP_STALE_SECONDS = 3600.0
#: Attempts at claiming a version name before giving up (each loses only to another writer).
_MAX_ATTEMPTS = 10_000
_WRITE_CHUNK = 1 << 22
#: rename(2) errors meaning "the target name is taken".
_TAKEN = frozenset({errno.EEXIST, errno.ENOTEMPTY})
_VERSION_RE = re.compile(VERSION_PATTERN)


def _fsync_dir(path: Path) -> None:
    """Make a directory's entries durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_durable(path: Path, data: bytes) -> None:
    """Create ``path`` (exclusive or truncating), write ``data`` in chunks and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view[:_WRITE_CHUNK])
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, chunk_size: int = 1 << 20) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class LocalRepository(ModelRepository):
    """Model versions under a directory; see the module docstring for layout and atomicity."""

    def __init__(self, root: Path) -> None:
        """Use ``root`` (created on the first write) as the repository's directory."""
        self.root = Path(root)

    def __repr__(self) -> str:
        """``LocalRepository('<root>')``."""
        return f"LocalRepository({str(self.root)!r})"

    # ---------------------------------------------------------------------------------------
    # Paths and scanning

    def _job_dir(self, job: str) -> Path:
        return self.root / check_job(job)

    def _version_dir(self, job: str, version: str) -> Path:
        return self._job_dir(job) / check_version(version)

    def _scan(self, job_dir: Path, complete_only: bool) -> list[tuple[int, str]]:
        """``(number, name)`` of the version directories in ``job_dir``, ascending.

        With ``complete_only`` only directories holding ``metadata.json`` count; without it,
        every version-named entry does, so that a name is never handed out twice.
        """
        try:
            entries = list(os.scandir(job_dir))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RepositoryError(f"cannot list {job_dir}: {exc.strerror or exc}") from exc
        found: list[tuple[int, str]] = []
        for entry in entries:
            if not _VERSION_RE.fullmatch(entry.name):
                continue
            if complete_only and not os.path.isfile(os.path.join(entry.path, METADATA_FILE)):
                continue
            found.append((int(entry.name[1:]), entry.name))
        found.sort()
        return found

    def _next_number(self, job_dir: Path) -> int:
        return max((n for n, _ in self._scan(job_dir, complete_only=False)), default=0) + 1

    def _read_meta(self, job: str, version_dir: Path) -> VersionMetadata:
        path = version_dir / METADATA_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise RepositoryError(f"job {job!r} has no version {version_dir.name!r}") from exc
        except OSError as exc:
            raise RepositoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
        meta = VersionMetadata.from_json_bytes(data, str(path))
        if meta.job != job or meta.version != version_dir.name:
            raise RepositoryError(
                f"{path} describes {meta.job}/{meta.version}, not {job}/{version_dir.name}"
            )
        return meta

    def _clean_stale(self, job_dir: Path) -> None:
        """Remove temporary directories of writers that died over an hour ago."""
        cutoff = time.time() - TMP_STALE_SECONDS
        try:
            entries = list(os.scandir(job_dir))
        except OSError:
            return
        for entry in entries:
            if not entry.name.startswith(TMP_PREFIX):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except OSError:
                continue

    # ---------------------------------------------------------------------------------------
    # Writing

    def write_version(
        self,
        job: str,
        weights: Mapping[str, np.ndarray],
        meta: NewVersion,
        server_state: Mapping[str, np.ndarray] | None = None,
        encoded: bytes | None = None,
    ) -> VersionMetadata:
        """Store ``weights`` as the next version of ``job``; all or nothing (see module doc)."""
        job_dir = self._job_dir(job)
        # to_safetensors_bytes validates: float32, finite, non-empty (``encoded`` came from it)
        payload = encoded if encoded is not None else to_safetensors_bytes(weights)
        state = encode_server_state(server_state)
        tensors = [
            TensorInfo(name=name, shape=[int(d) for d in np.shape(arr)])
            for name, arr in weights.items()
        ]
        sha256 = hashlib.sha256(payload).hexdigest()
        try:
            new_root = not self.root.exists()
            self.root.mkdir(parents=True, exist_ok=True)
            if new_root:
                _fsync_dir(self.root.parent)
            new_job = not job_dir.exists()
            job_dir.mkdir(exist_ok=True)
            if new_job:
                _fsync_dir(self.root)
        except OSError as exc:
            raise RepositoryError(f"cannot create {job_dir}: {exc.strerror or exc}") from exc
        self._clean_stale(job_dir)

        tmp = job_dir / f"{TMP_PREFIX}{secrets.token_hex(8)}"
        try:
            tmp.mkdir()
        except OSError as exc:
            raise RepositoryError(f"cannot create {tmp}: {exc.strerror or exc}") from exc
        try:
            return self._publish(job, job_dir, tmp, payload, sha256, tensors, meta, state)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _publish(
        self,
        job: str,
        job_dir: Path,
        tmp: Path,
        payload: bytes,
        sha256: str,
        tensors: list[TensorInfo],
        meta: NewVersion,
        state: tuple[bytes | None, str | None] = (None, None),
    ) -> VersionMetadata:
        """Write the files into ``tmp`` (metadata last) and rename it to the next free name."""
        state_bytes, state_sha = state
        files = [(WEIGHTS_FILE, payload)]
        if state_bytes is not None:
            files.append((SERVER_STATE_FILE, state_bytes))
        for name, data in files:
            try:
                _write_durable(tmp / name, data)
            except OSError as exc:
                raise RepositoryError(f"cannot write {tmp / name}: {exc.strerror or exc}") from exc
        number = self._next_number(job_dir)
        for _ in range(_MAX_ATTEMPTS):
            version = version_name(number)
            record = meta.complete(
                job=job,
                version=version,
                sha256=sha256,
                size_bytes=len(payload),
                tensors=tensors,
                server_state_sha256=state_sha,
            )
            try:
                _write_durable(tmp / METADATA_FILE, record.to_json_bytes())
                _fsync_dir(tmp)
            except OSError as exc:
                raise RepositoryError(
                    f"cannot write {tmp / METADATA_FILE}: {exc.strerror or exc}"
                ) from exc
            try:
                os.rename(tmp, job_dir / version)
            except OSError as exc:
                if exc.errno not in _TAKEN:
                    raise RepositoryError(
                        f"cannot publish {job}/{version}: {exc.strerror or exc}"
                    ) from exc
                # Another writer took the name: go past everything that exists now.
                number = max(number + 1, self._next_number(job_dir))
                continue
            _fsync_dir(job_dir)
            return record
        raise RepositoryError(f"could not claim a version name for job {job!r}; giving up")

    # ---------------------------------------------------------------------------------------
    # Reading

    def list_versions(self, job: str) -> list[VersionMetadata]:
        """Every complete version of ``job``, oldest first."""
        job_dir = self._job_dir(job)
        return [
            self._read_meta(job, job_dir / name)
            for _, name in self._scan(job_dir, complete_only=True)
        ]

    def get(self, job: str, version: str) -> VersionMetadata:
        """Metadata of ``job``/``version``; RepositoryError when missing."""
        return self._read_meta(job, self._version_dir(job, version))

    def latest(self, job: str) -> VersionMetadata | None:
        """The newest complete version of ``job``, or ``None``."""
        job_dir = self._job_dir(job)
        found = self._scan(job_dir, complete_only=True)
        if not found:
            return None
        return self._read_meta(job, job_dir / found[-1][1])

    def _weights_path(self, job: str, version: str) -> tuple[VersionMetadata, Path]:
        meta = self.get(job, version)
        path = self._version_dir(job, version) / WEIGHTS_FILE
        if not path.is_file():
            raise RepositoryError(f"{job}/{version}: weights file {path} is missing")
        return meta, path

    def read_weights(self, job: str, version: str) -> dict[str, np.ndarray]:
        """The tensors of ``job``/``version``, after checking the file's sha256 and size."""
        meta, path = self._weights_path(job, version)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RepositoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(data) != meta.size_bytes or hashlib.sha256(data).hexdigest() != meta.sha256:
            raise RepositoryError(
                f"{job}/{version}: {path} does not match its recorded sha256; it was modified "
                "or corrupted"
            )
        return from_safetensors_bytes(data)

    def read_server_state(self, job: str, version: str) -> dict[str, np.ndarray]:
        """The server optimizer state stored with ``job``/``version`` (empty: none)."""
        meta = self.get(job, version)
        if meta.server_state_sha256 is None:
            return {}
        path = self._version_dir(job, version) / SERVER_STATE_FILE
        if not path.is_file():
            raise RepositoryError(f"{job}/{version}: server state file {path} is missing")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise RepositoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return decode_server_state(meta, data, str(path))

    def open_weights_stream(
        self, job: str, version: str, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """The weights file in chunks; raises after the last chunk if the sha256 is wrong."""
        if chunk_size < 1:
            raise RepositoryError(f"chunk_size must be positive, got {chunk_size}")
        meta, path = self._weights_path(job, version)
        return self._stream(job, version, meta, path, chunk_size)

    @staticmethod
    def _stream(
        job: str, version: str, meta: VersionMetadata, path: Path, chunk_size: int
    ) -> Iterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("rb") as fh:
                while chunk := fh.read(chunk_size):
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk
        except OSError as exc:
            raise RepositoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if size != meta.size_bytes or digest.hexdigest() != meta.sha256:
            raise RepositoryError(
                f"{job}/{version}: {path} does not match its recorded sha256; it was modified "
                "or corrupted"
            )

    def export(self, job: str, version: str, dest: Path) -> Path:
        """Copy the weights to ``dest`` (or into it, if a directory) and the metadata beside."""
        meta, src = self._weights_path(job, version)
        dest = Path(dest)
        target = dest / f"{job}-{version}.safetensors" if dest.is_dir() else dest
        meta_target = target.with_suffix(".json")
        if meta_target == target:
            raise RepositoryError(f"export destination {target} must not end in .json")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
            try:
                shutil.copyfile(src, tmp)
                digest, size = _hash_file(tmp)
                if size != meta.size_bytes or digest != meta.sha256:
                    raise RepositoryError(
                        f"{job}/{version}: {src} does not match its recorded sha256; not exported"
                    )
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            meta_target.write_bytes(meta.to_json_bytes())
        except OSError as exc:
            raise RepositoryError(f"cannot export to {target}: {exc.strerror or exc}") from exc
        return target

    def jobs(self) -> list[str]:
        """Jobs with at least one complete version, sorted by name."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise RepositoryError(f"cannot list {self.root}: {exc.strerror or exc}") from exc
        names: list[str] = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                check_job(entry.name)
            except RepositoryError:
                continue
            if self._scan(Path(entry.path), complete_only=True):
                names.append(entry.name)
        return sorted(names)

    def version_uri(self, job: str, version: str) -> str:
        """``file://`` URI of the version's directory (absolute)."""
        return (self._version_dir(job, version)).resolve().as_uri()
