"""How `fedcare run` starts processes: forked from the preloaded fork server, or spawned fresh.

Both launchers give the runner the same process handle (exit status, signals, timeouts) and the
same command-line behaviour; the forked ones really are separate processes, children of the
fork server rather than of the runner.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from fedcare.local.launch import LAUNCHERS, ForkedProc, LauncherName, launch
from tests.integration.actors import start_job, status
from tests.integration.conftest import JobFactory


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
