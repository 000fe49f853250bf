"""No raw record leaves a site: canary values in one hospital's records never reach the
coordinator (captured post-TLS at the gRPC boundary) nor its model repository."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from fedcare.spec import Phase
from tests.integration.actors import start_job
from tests.integration.conftest import BC_FEATURES, JobFactory

CANARY_NAME = "CANARY-PATIENT-7f3a9c"
#: Distinctive feature values of the canary record (breast-cancer features are all < 5000).
CANARY_VALUES = [7391.0625, 6143.5078125, 8821.1171875]


def _needles() -> list[bytes]:
    """Every byte form the canary record could take on the wire or on disk."""
    out = [CANARY_NAME.encode(), CANARY_NAME.encode("utf-16-le")]
    for v in CANARY_VALUES:
        out += [struct.pack("<f", v), struct.pack("<d", v), struct.pack(">f", v),
                struct.pack(">d", v), repr(v).encode(), f"{v:g}".encode()]  # fmt: skip
    return out


def _with_canary(site: Path, out: Path) -> Path:
    """Copy a site's CSV, add an identifier column, and plant the canary record."""
    lines = site.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    body = [f"{r},patient-{i:05d}" for i, r in enumerate(rows)]
    values = rows[0].split(",")
    for col, v in zip((0, 1, 2), CANARY_VALUES, strict=True):
        values[col] = repr(v)
    body.insert(len(body) // 2, ",".join(values) + f",{CANARY_NAME}")
    out.write_text("\n".join([header + ",patient_name", *body]) + "\n")
    return out


def test_canary_record_never_reaches_the_coordinator(
    make_job: JobFactory, tmp_path: Path, breast_cancer_sites: list[Path]
) -> None:
    """The job trains on the canary site; nothing the coordinator received or stored contains
    any byte form of the canary's identifier or its feature values."""
    canary_site = _with_canary(breast_cancer_sites[0], tmp_path / "site-canary.csv")
    sites = [canary_site, *breast_cancer_sites[1:]]
    manifest = make_job(sites=sites, rounds=3)
    capture = tmp_path / "capture"
    run = start_job(manifest, tmp_path / "work", capture_dir=capture)
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        final = run.follow()
        run.reap()
    finally:
        run.stop()
    assert final.phase is Phase.SUCCEEDED, final.message
    assert final.rounds[-1].samples > 0

    received = (capture / "received.bin").read_bytes()
    # The capture really holds what the sites sent: joins, updates and evaluation reports.
    assert b"/fedcare.v1.Coordinator/Join" in received
    assert received.count(b"/fedcare.v1.Coordinator/UploadUpdate") >= 3 * 3
    stored = b"".join(p.read_bytes() for p in (tmp_path / "models").rglob("*") if p.is_file())
    assert len(stored) > 0
    logs = b"".join(p.read_bytes() for p in (tmp_path / "work" / "logs").glob("coordinator*"))
    for needle in _needles():
        assert needle not in received, f"{needle!r} reached the coordinator"
        assert needle not in stored, f"{needle!r} is in the model repository"
        assert needle not in logs, f"{needle!r} is in the coordinator's log"
    # The planted values are really in the site's own file (the test would catch a leak).
    assert CANARY_NAME.encode() in canary_site.read_bytes()
    assert np.isclose(CANARY_VALUES[0], float(repr(CANARY_VALUES[0])))
    assert BC_FEATURES[0] == "f00"
