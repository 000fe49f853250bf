"""Differential privacy over real processes: the epsilon each site reports is what an
independent accountant computes, a spent budget stops the site while the job goes on, central
DP reports the coordinator's accountant, and the audit trail records every contribution."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from opacus.accountants import RDPAccountant

from fedcare.audit import AuditLog
from fedcare.spec import Phase
from tests.integration.actors import start_job
from tests.integration.conftest import JobFactory

SIGMA, BATCH, EPOCHS, DELTA = 1.1, 32, 2, 1e-5


def _independent_epsilon(n: int, rounds: int) -> float:
    """Opacus' RDP accountant fed the same mechanism: Poisson rate batch/n, epochs x
    ceil(n/batch) noisy steps per round."""
    accountant = RDPAccountant()
    accountant.history = [(SIGMA, BATCH / n, rounds * EPOCHS * math.ceil(n / BATCH))]
    return float(accountant.get_epsilon(DELTA))


def _own_sites(sites: list[Path], tmp_path: Path) -> list[Path]:
    """Copies of the sites: each site keeps its privacy ledger next to its data."""
    out = []
    for i, site in enumerate(sites):
        folder = tmp_path / f"site-{i}"
        folder.mkdir()
        out.append(Path(shutil.copy(site, folder / site.name)))
    return out


def _run(manifest: Path, work: Path) -> object:
    run = start_job(manifest, work)
    try:
        for p in run.job.spec.participants:
            run.start_trainer(p)
        final = run.follow()
        run.reap()
    finally:
        run.stop()
    return final


def test_local_dp_epsilon_budget_and_audit(
    make_job: JobFactory, tmp_path: Path, breast_cancer_sites: list[Path]
) -> None:
    """Local DP-SGD, 4 rounds; hospital-c's budget fits 2 rounds: it leaves with a clear
    condition, the job finishes at quorum 2, and every epsilon matches the accountant."""
    sites = _own_sites(breast_cancer_sites, tmp_path)
    n_c = len(sites[2].read_text().splitlines()) - 1
    n_c_train = n_c - round(n_c * 0.2)
    budget = (_independent_epsilon(n_c_train, 2) + _independent_epsilon(n_c_train, 3)) / 2
    manifest = make_job(
        sites=sites, rounds=4, minResponses=2,
        training={"epochs": EPOCHS, "batchSize": BATCH, "learningRate": 0.05},
        privacy={"dp": {"mode": "local", "noiseMultiplier": SIGMA, "maxGradNorm": 1.0,
                        "delta": DELTA}},
    )  # fmt: skip
    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["participants"][2]["privacyBudget"] = {"epsilon": budget, "delta": DELTA}
    manifest.write_text(yaml.safe_dump(doc))
    final = _run(manifest, tmp_path / "work")
    assert final.phase is Phase.SUCCEEDED, final.message  # type: ignore[attr-defined]
    assert [r.participants for r in final.rounds] == [3, 3, 2, 2]  # type: ignore[attr-defined]
    sites_status = {p.name: p for p in final.participants}  # type: ignore[attr-defined]
    c = sites_status["hospital-c"]
    assert c.state.value == "BudgetExhausted"
    assert c.epsilon_spent == pytest.approx(_independent_epsilon(n_c_train, 2), rel=1e-6)
    degraded = {x.type: x for x in final.conditions}["Degraded"]  # type: ignore[attr-defined]
    assert degraded.reason == "PrivacyBudgetExhausted" and "hospital-c" in degraded.message
    for name in ("hospital-a", "hospital-b"):
        samples = sites_status[name].samples
        assert sites_status[name].epsilon_spent == pytest.approx(
            _independent_epsilon(samples, 4), rel=1e-6
        )
    assert final.epsilon_spent == max(  # type: ignore[attr-defined]
        p.epsilon_spent for p in sites_status.values() if p.epsilon_spent
    )
    # The site's ledger holds what it spent; the coordinator's audit trail, each update.
    ledger = (sites[2].parent / ".fedcare-privacy-ledger.jsonl").read_text().splitlines()
    assert len(ledger) == 2
    records = AuditLog(tmp_path / "models" / "bc" / "audit.jsonl").read("bc")
    accepted = [r for r in records if r.event == "accepted"]
    assert len(accepted) == 3 + 3 + 2 + 2
    assert {r.participant for r in accepted} == {"hospital-a", "hospital-b", "hospital-c"}
    assert all(len(r.sha256) == 64 and r.epsilon and r.epsilon > 0 for r in accepted)
    cli = subprocess.run(
        [sys.executable, "-m", "fedcare", "audit", "bc", "--repo", str(tmp_path / "models"),
         "--json"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert len(json.loads(cli.stdout)) == len(records)


def test_central_dp_reports_the_accountant(make_job: JobFactory, tmp_path: Path) -> None:
    """Central DP: updates clipped and noised on the coordinator; the job's epsilon is the
    Gaussian mechanism's over the rounds (sample rate 1), computed here independently."""
    final = _run(
        make_job(rounds=3, privacy={"dp": {"mode": "central", "noiseMultiplier": 2.0,
                                           "maxGradNorm": 5.0, "delta": DELTA}}),
        tmp_path / "work",
    )  # fmt: skip
    assert final.phase is Phase.SUCCEEDED, final.message  # type: ignore[attr-defined]
    accountant = RDPAccountant()
    accountant.history = [(2.0, 1.0, 3)]
    assert final.epsilon_spent == pytest.approx(  # type: ignore[attr-defined]
        accountant.get_epsilon(DELTA), rel=1e-6
    )
    assert final.delta == DELTA  # type: ignore[attr-defined]
