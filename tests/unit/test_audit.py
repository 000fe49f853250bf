"""The audit trail: append-only JSON lines of accepted and rejected updates; `fedcare audit`."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fedcare.audit import (
    GENESIS,
    AcceptedRecord,
    AuditError,
    AuditLog,
    RejectedRecord,
    audit_path_for,
)
from fedcare.cli import main
from fedcare.errors import RepositoryError

JOB = "readmission"
SHA_A = hashlib.sha256(b"update a").hexdigest()
SHA_B = hashlib.sha256(b"update b").hexdigest()
WHEN = datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_audit_path_convention(tmp_path: Path) -> None:
    assert audit_path_for(f"file://{tmp_path}", JOB) == tmp_path / JOB / "audit.jsonl"
    assert audit_path_for(str(tmp_path), JOB) == tmp_path / JOB / "audit.jsonl"
    with pytest.raises(AuditError, match="not supported for s3:// repositories yet"):
        audit_path_for("s3://bucket/models", JOB)
    with pytest.raises(RepositoryError, match="invalid job name"):
        audit_path_for(f"file://{tmp_path}", "../etc")


def test_records_round_trip(tmp_path: Path) -> None:
    log = AuditLog(audit_path_for(str(tmp_path), JOB))
    a = log.accepted(JOB, 1, "st-mary", 812, 0.61, SHA_A, time=WHEN)
    r = log.rejected(JOB, 1, "st-luke", "not-finite", "update holds NaN", time=WHEN, sha256=SHA_B)
    log.accepted(JOB, 2, "st-mary", 812, None, SHA_A)
    assert a.time == "2025-01-02T03:04:05.678Z" and a.prev == GENESIS
    records = log.read(JOB)
    assert records[:2] == [a, r]
    assert isinstance(records[2], AcceptedRecord) and records[2].epsilon is None
    assert log.read("other-job") == []
    assert log.verify() == 3
    assert AuditLog(tmp_path / "missing.jsonl").read() == []


def test_append_only(tmp_path: Path) -> None:
    path = tmp_path / JOB / "audit.jsonl"
    AuditLog(path).accepted(JOB, 1, "st-mary", 10, 0.5, SHA_A)
    first = path.read_bytes()
    AuditLog(path).rejected(JOB, 1, "st-luke", "wrong-layout", "3 tensors, expected 4")
    AuditLog(path).accepted(JOB, 2, "st-mary", 10, 0.7, SHA_A)
    data = path.read_bytes()
    assert data.startswith(first) and data.count(b"\n") == 3  # earlier bytes untouched
    assert not hasattr(AuditLog, "delete") and not hasattr(AuditLog, "update")


def test_rejected_update_is_never_logged_as_accepted(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")
    log.accepted(JOB, 3, "st-mary", 500, 1.2, SHA_A)
    log.rejected(JOB, 3, "st-luke", "norm-too-large", "L2 norm 812 > 100", sha256=SHA_B)
    records = log.read(JOB)
    luke = [r for r in records if r.participant == "st-luke"]
    assert len(luke) == 1 and isinstance(luke[0], RejectedRecord)
    assert (luke[0].reason, luke[0].detail) == ("norm-too-large", "L2 norm 812 > 100")
    assert not any(isinstance(r, AcceptedRecord) and r.sha256 == SHA_B for r in records)
    raw = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [d["event"] for d in raw] == ["accepted", "rejected"]
    assert "samples" not in raw[1]  # a rejected record cannot be read as an accepted one


def test_concurrent_appends_keep_lines_whole(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    detail = "x" * 3000  # long lines make torn writes likely if appends interleaved

    def write(worker: int) -> None:
        log = AuditLog(path)
        for i in range(25):
            if i % 2:
                log.rejected(JOB, i, f"site-{worker}", "bad", detail)
            else:
                log.accepted(JOB, i, f"site-{worker}", i, 0.1, SHA_A)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = AuditLog(path)
    assert len(log.read()) == 200
    assert log.verify() == 200  # every line whole and chained in file order


def test_tampering_and_corruption_are_reported_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for r in range(3):
        log.accepted(JOB, r, "st-mary", 10, 0.1 * r, SHA_A)
    lines = path.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"samples":10', '"samples":99')
    path.write_text("".join(lines))
    with pytest.raises(AuditError, match=rf"{path}:3: .*altered"):
        log.verify()
    path.write_text("".join(lines[:1]) + '{"event": "accepted", "job": 1}\n')
    with pytest.raises(AuditError, match=rf"{path}:2: malformed audit record"):
        log.read()


def test_cli_prints_the_trail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps cells to the terminal width
    log = AuditLog(audit_path_for(str(tmp_path), JOB))
    log.accepted(JOB, 1, "st-mary", 812, 0.61, SHA_A, time=WHEN)
    log.rejected(JOB, 1, "st-luke", "not-finite", "update holds NaN", time=WHEN)
    assert main(["audit", JOB, "--repo", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [(d["participant"], d["event"]) for d in printed] == [
        ("st-mary", "accepted"),
        ("st-luke", "rejected"),
    ]
    assert main(["audit", JOB, "--repo", f"file://{tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "st-mary" in out and "not-finite" in out and SHA_A[:12] in out
    assert main(["audit", JOB, "--repo", "s3://bucket/x"]) == 1
    assert "not supported" in capsys.readouterr().err
