"""The Python API run by hand: Coordinator and ParticipantNode in separate processes, configured
by the files in examples/manual/ and certificates from `fedcare certs init`."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from fedcare.data import synthesize
from fedcare.repository import open_repository

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "manual"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_coordinator_and_participants_by_hand(tmp_path: Path) -> None:
    """`Coordinator(config_path=...).train()` and `ParticipantNode(...).join_network()`."""
    certs = subprocess.run(
        [sys.executable, "-m", "fedcare", "certs", "init", "--job", "quickstart",
         "--participants", "hospital-a,hospital-b", "--out", "certs"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert certs.returncode == 0, certs.stderr
    assert (tmp_path / "certs" / "hospital-a.key").stat().st_mode & 0o777 == 0o600
    synthesize(2, 5000, tmp_path / "data" / "quickstart", fmt="csv", seed=1)
    grpc_port, http_port = _free_port(), _free_port()
    for src in EXAMPLES.glob("*.yaml"):
        text = src.read_text().replace("50051", str(grpc_port)).replace("8080", str(http_port))
        (tmp_path / src.name).write_text(text)

    def role(code: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", code], cwd=tmp_path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip

    coordinator = role(
        "import sys; from fedcare import Coordinator; "
        "s = Coordinator(config_path='coordinator.yaml').train(); "
        "sys.exit(0 if s.phase.value == 'Succeeded' else 1)"
    )
    sites = [
        role(
            "import sys; from fedcare import ParticipantNode; "
            f"sys.exit(ParticipantNode(config_path='participant-{n}.yaml').join_network())"
        )
        for n in ("a", "b")
    ]
    out, _ = coordinator.communicate(timeout=180)
    assert coordinator.returncode == 0, out
    for site in sites:
        site_out, _ = site.communicate(timeout=60)
        assert site.returncode == 0, site_out
    versions = open_repository(f"file://{tmp_path / 'fedcare-models'}").list_versions("quickstart")
    assert [v.round for v in versions] == [0, 1, 2, 3]
    assert versions[-1].metrics["auroc"] > 0.6
