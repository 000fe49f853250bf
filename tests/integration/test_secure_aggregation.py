"""Secure aggregation by masking over real processes: the coordinator sees only masked inputs,
the model matches plain FedAvg, and dropouts are recovered while enough sites survive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcare.repository import open_repository
from fedcare.spec import Phase
from tests.integration.actors import masked_dropper, start_job
from tests.integration.conftest import JobFactory

MASKING = {"secureAggregation": {"mode": "masking", "clipRange": 4.0}}


def _uploads(capture: Path) -> list[bytes]:
    """The data bytes of every UploadUpdate the coordinator received, one entry per upload."""
    from fedcare.transport._generated import coordinator_pb2 as pb

    raw = (capture / "received.bin").read_bytes()
    uploads: dict[str, bytes] = {}
    pos = 0
    while (start := raw.find(b"\n#", pos)) != -1:
        line_end = raw.index(b"\n", start + 1)
        method, call, size = raw[start + 2 : line_end].decode().split(" ")
        body = raw[line_end + 1 : line_end + 1 + int(size)]
        pos = line_end + 1 + int(size)
        if method.endswith("/UploadUpdate"):
            chunk = pb.UpdateChunk.FromString(body)
            uploads[call] = uploads.get(call, b"") + (
                b"" if chunk.WhichOneof("payload") == "header" else chunk.data
            )
    return list(uploads.values())


def _chi_square(data: bytes) -> float:
    counts = np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)
    expected = len(data) / 256
    return float(((counts - expected) ** 2 / expected).sum())


def _run(manifest: Path, work: Path, capture: Path | None = None) -> None:
    run = start_job(manifest, work, capture_dir=capture)
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        final = run.follow()
        run.reap()
    finally:
        run.stop()
    assert final.phase is Phase.SUCCEEDED, final.message


def test_masked_run_equals_plain_run_and_hides_updates(
    make_job: JobFactory, tmp_path: Path
) -> None:
    """Same job, same seeds: the masked run's models equal the plain run's within the
    quantization error, and every upload the coordinator received looks uniformly random."""
    mlp = {"name": "mlp", "hiddenUnits": [64]}  # 2,109 values: 8,436 bytes per upload
    _run(make_job(name="plain", rounds=3, model=mlp), tmp_path / "w1")
    capture = tmp_path / "capture"
    _run(make_job(name="masked", rounds=3, model=mlp, privacy=MASKING), tmp_path / "w2", capture)
    repo = open_repository(f"file://{tmp_path / 'models'}")
    plain, masked = repo.list_versions("plain"), repo.list_versions("masked")
    assert [v.round for v in masked] == [0, 1, 2, 3]
    # Round 1 aggregates the same deltas from the same initial model: equal within the
    # quantization error and float32 rounding. Later rounds retrain from those (slightly
    # different) weights and Adam amplifies the difference chaotically (seen up to ~1e-3), so
    # for them only the model's quality must match.
    for a, b in zip(plain[:2], masked[:2], strict=True):
        wa, wb = repo.read_weights("plain", a.version), repo.read_weights("masked", b.version)
        for name in wa:
            np.testing.assert_allclose(wb[name], wa[name], rtol=0, atol=1e-6, err_msg=name)
    assert abs(masked[-1].metrics["auroc"] - plain[-1].metrics["auroc"]) < 0.01
    assert masked[-1].metrics["auroc"] >= 0.95

    uploads = _uploads(capture)
    assert len(uploads) == 3 * 3
    critical = 330.52  # chi-square, 255 degrees of freedom, p = 0.001
    for data in uploads:
        assert len(data) == 2109 * 4  # every value as a 32-bit ring element
        assert _chi_square(data) < critical
    # What the sites really trained: plain deltas are far from uniform, and none of them is
    # what the coordinator received in the masked run.
    plain_capture = tmp_path / "capture-plain"
    _run(make_job(name="plain2", rounds=3, model=mlp), tmp_path / "w3", plain_capture)
    plain_uploads = _uploads(plain_capture)
    assert len(plain_uploads) == 9
    assert all(_chi_square(d) > 10 * critical for d in plain_uploads)
    assert not set(plain_uploads) & set(uploads)


def test_dropout_after_masked_upload_is_recovered(
    make_job: JobFactory, tmp_path: Path, breast_cancer_sites: list[Path]
) -> None:
    """5 sites; one drops after its masked upload in round 1: its self mask is removed with the
    survivors' shares, the round closes with all 5 inputs, the job goes on with 4."""
    sites = [*breast_cancer_sites, breast_cancer_sites[0], breast_cancer_sites[1]]
    privacy = {"secureAggregation": {**MASKING["secureAggregation"], "threshold": 3}}
    manifest = make_job(sites=sites, rounds=3, minResponses=3, privacy=privacy)
    run = start_job(manifest, tmp_path / "work")
    try:
        dropper = "hospital-e"
        for p in run.job.spec.participants:
            if p.name != dropper:
                run.start_trainer(p)
        thread = masked_dropper(run, dropper)
        final = run.follow()
        thread.join(timeout=10)
    finally:
        run.stop()
    assert final.phase is Phase.SUCCEEDED, final.message
    assert final.rounds[0].participants == 5
    assert [r.participants for r in final.rounds[1:]] == [4, 4]
    assert final.rounds[-1].metrics["auroc"] >= 0.9


def test_too_few_survivors_fails_the_round_without_a_version(
    make_job: JobFactory, tmp_path: Path, breast_cancer_sites: list[Path]
) -> None:
    """Threshold 4 of 5, two sites drop after their masked upload: the round cannot be unmasked,
    the job fails with a clear reason, and no model version is written for it."""
    sites = [*breast_cancer_sites, breast_cancer_sites[0], breast_cancer_sites[1]]
    privacy = {"secureAggregation": {**MASKING["secureAggregation"], "threshold": 4}}
    manifest = make_job(sites=sites, rounds=2, minResponses=4, privacy=privacy)
    run = start_job(manifest, tmp_path / "work")
    try:
        droppers = {"hospital-d", "hospital-e"}
        for p in run.job.spec.participants:
            if p.name not in droppers:
                run.start_trainer(p)
        threads = [masked_dropper(run, n) for n in sorted(droppers)]
        final = run.follow()
        for t in threads:
            t.join(timeout=10)
    finally:
        run.stop()
    assert final.phase is Phase.FAILED
    failed = {c.type: c for c in final.conditions}["Failed"]
    assert failed.reason == "SecureAggregationFailed"
    assert "round 1: secure aggregation" in failed.message
    versions = open_repository(f"file://{tmp_path / 'models'}").list_versions("bc")
    assert [v.round for v in versions] == [0]  # the initial model only


def test_ckks_run_equals_plain_fedavg_and_coordinator_has_no_secret(
    make_job: JobFactory, tmp_path: Path
) -> None:
    """CKKS: the coordinator adds ciphertexts with a public context (no secret key: it cannot
    decrypt); two sites decrypt the sum; the model equals plain FedAvg within 1e-4."""
    import yaml

    from fedcare.privacy.ckks import CkksError, decrypt_vector, has_secret_key, load_context

    _run(make_job(name="plain", rounds=2), tmp_path / "w1")
    manifest = make_job(name="ckks", rounds=2, privacy={"secureAggregation": {"mode": "ckks"}})
    work = tmp_path / "w2"
    capture = tmp_path / "capture"
    _run(manifest, work, capture)
    repo = open_repository(f"file://{tmp_path / 'models'}")
    plain, ckks = repo.list_versions("plain"), repo.list_versions("ckks")
    wa = repo.read_weights("plain", plain[1].version)
    wb = repo.read_weights("ckks", ckks[1].version)
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=0, atol=1e-4, err_msg=name)
    assert ckks[-1].metrics["auroc"] >= 0.95

    config = yaml.safe_load((work / "coordinator.yaml").read_text())
    assert "ckksContext" not in str(config)
    public = load_context(Path(config["ckksPublicContext"]).read_bytes())
    assert not has_secret_key(public)
    uploads = [u for u in _uploads(capture) if len(u) > 100_000]
    assert len(uploads) == 3 * 2  # three encrypted updates per round
    secret_path = Path(config["ckksPublicContext"]).with_name("ckks-secret.context")
    assert secret_path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(CkksError, match="no secret key"):
        decrypt_vector(public, [], length=91)
