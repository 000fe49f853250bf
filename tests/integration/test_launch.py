"""How `fedcare run` starts processes: forked from the preloaded fork server, or spawned fresh.

Both launchers give the runner the same process handle (exit status, signals, timeouts) and the
same command-line behaviour; the forked ones really are separate processes, children of the
fork server rather than of the runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fedcare.errors import SpecError
from fedcare.local.launch import LAUNCHERS, ForkedProc, LauncherName, default_launcher, launch
from tests.integration.actors import start_job, status
from tests.integration.conftest import JobFactory

REPO = Path(__file__).resolve().parents[2]


def _ppid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid in /proc/{pid}/status")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_exit_status_and_log_of_a_command(launcher: LauncherName, tmp_path: Path) -> None:
    """A failing command exits 2 with its one-line error in its own log, under either launcher."""
    log = tmp_path / "validate.log"
    env = dict(os.environ)
    proc = launch(launcher, ["validate", str(tmp_path / "missing.yaml")], log, env)
    assert proc.wait(timeout=60) == 2
    assert proc.returncode == 2 and proc.poll() == 2
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    assert lines == [f"fedcare: error: {tmp_path / 'missing.yaml'}: no such file"]
    proc.kill()  # a no-op once it has ended, as with Popen


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_forked_coordinator_is_a_real_process(make_job: JobFactory, tmp_path: Path) -> None:
    """The runner's default launcher forks the coordinator from the fork server: a process of its
    own (not a child of the runner), serving mutual TLS, with Popen's timeout and signal manners."""
    run = start_job(make_job(rounds=1), tmp_path / "work")
    try:
        coordinator = run.processes["coordinator"]
        assert isinstance(coordinator, ForkedProc)
        assert coordinator.pid != os.getpid()
        server = _ppid(coordinator.pid)
        assert server != os.getpid() and _ppid(server) == os.getpid()  # fork server in between
        assert status(run).phase.value == "WaitingForParticipants"
        with pytest.raises(subprocess.TimeoutExpired):
            coordinator.wait(timeout=0.2)
        assert coordinator.poll() is None
        coordinator.send_signal(signal.SIGKILL)
        assert coordinator.wait(timeout=10) == -signal.SIGKILL
        assert coordinator.returncode == -signal.SIGKILL
    finally:
        run.stop()


def test_default_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fork server on Linux, fresh interpreters elsewhere; $FEDCARE_LAUNCHER decides."""
    monkeypatch.delenv("FEDCARE_LAUNCHER", raising=False)
    monkeypatch.setattr("sys.platform", "linux")
    assert default_launcher() == "forkserver"
    monkeypatch.setattr("sys.platform", "darwin")
    assert default_launcher() == "spawn"
    monkeypatch.setenv("FEDCARE_LAUNCHER", "forkserver")
    assert default_launcher() == "forkserver"
    monkeypatch.setenv("FEDCARE_LAUNCHER", "threads")
    with pytest.raises(SpecError, match="FEDCARE_LAUNCHER=threads: expected one of forkserver"):
        default_launcher()


def test_a_wrong_launcher_is_one_line_error(tmp_path: Path) -> None:
    """`fedcare run` with a bad $FEDCARE_LAUNCHER: exit 2 and one line, before anything runs."""
    env = dict(os.environ, FEDCARE_LAUNCHER="threads")
    proc = subprocess.run(
        [sys.executable, "-m", "fedcare", "run", "examples/quickstart.yaml"],
        capture_output=True, text=True, env=env, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "fedcare: error: FEDCARE_LAUNCHER=threads: expected one of forkserver, spawn"
    ]
