"""Prototype, for measuring only: ``fedcare run`` with its processes forked from a warm one.

``fedcare run`` (``fedcare/local/runner.py``, ``LocalRun._spawn``) starts the coordinator and
every trainer as a fresh ``python -m fedcare ...``: on a 2-CPU machine, 10 trainers each
importing torch, pyarrow and gRPC and then ``torch._dynamo`` (which ``torch.optim`` imports on
its first step) take most of a small job's wall time, and so does each process's interpreter
shutdown (the final garbage collection over those modules' objects). This script runs the same
``LocalRun``, with one change: processes are forked from a *fork server*, one process that did
those imports once (then ``gc.freeze()``), and each forked process leaves with ``os._exit``
once its command returns (logs flushed). Everything else (certificates, mutual TLS, configs,
the coordinator and trainer code, the status stream) is fedcare's own, unchanged.

``bench/compare_flower.py --experiments N`` times it against ``fedcare run``; alone:
``.venv/bin/python bench/forkrun.py JOB.yaml --workdir DIR [--json]``. Not a fedcare feature:
a measurement of what one would save.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fedcare.local.runner import LocalRun
from fedcare.spec import FederatedJob, load_model

#: What the fork server imports before forking (what a coordinator and a trainer need).
PRELOAD = (
    "import fedcare.cli, fedcare.coordinator, fedcare.trainer, fedcare.models, "
    "fedcare.training, fedcare.data, fedcare.transport, torch, pyarrow"
)

SERVER = f"""
import gc, io, json, os, signal, sys, traceback
{PRELOAD}
torch.set_num_threads(1)  # no intra-op thread pool may exist when forking
_p = torch.nn.Parameter(torch.zeros(1)); _p.grad = torch.zeros(1)
torch.optim.Adam([_p], fused=True).step()  # imports torch._dynamo, as a trainer's first step
del _p
gc.collect(); gc.freeze()
signal.signal(signal.SIGCHLD, lambda *_: _reap())
def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
out = os.fdopen(os.dup(1), "w", buffering=1)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(fd, 1); os.dup2(fd, 2); os.close(fd)
            null = os.open(os.devnull, os.O_RDONLY); os.dup2(null, 0); os.close(null)
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", 0), line_buffering=True)
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", 0), line_buffering=True)
            os.environ.update(req["env"])
            code = fedcare.cli.main(req["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            import logging
            logging.shutdown()
            sys.stdout.flush(); sys.stderr.flush()
            os._exit(code or 0)
    out.write(f"{{pid}}\\n")
while True:  # stdin closed: wait for the children, then leave
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
os._exit(0)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@dataclass
class Forked:
    """A ``subprocess.Popen`` look-alike for a process the fork server started.

    The fork server reaps it, so its exit status is not known here (``returncode`` is 0 once
    it has gone); fedcare's runner only waits for and kills its processes.
    """

    pid: int
    args: str
    returncode: int | None = None

    def poll(self) -> int | None:
        """0 once the process has gone, else None."""
        if self.returncode is None and not _alive(self.pid):
            self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait until the process has gone."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            time.sleep(0.02)
        return code

    def terminate(self) -> None:
        """SIGTERM."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


class ForkServer:
    """The warm process; :meth:`spawn` forks one fedcare command from it."""

    def __init__(self) -> None:
        """Start it (it imports while the caller goes on)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in: IO[str] = self.proc.stdin
        self._out: IO[str] = self.proc.stdout

    def spawn(self, argv: list[str], log: Path, env: dict[str, str]) -> Forked:
        """Fork ``fedcare ARGV`` with stdout and stderr appended to ``log``."""
        self._in.write(json.dumps({"argv": argv, "log": str(log), "env": env}) + "\n")
        self._in.flush()
        pid = int(self._out.readline())
        return Forked(pid=pid, args=" ".join(["fedcare", *argv]))

    def close(self) -> None:
        """No more forks: the server waits for its children and exits."""
        self._in.close()
        self.proc.wait()


@dataclass
class ForkedLocalRun(LocalRun):
    """fedcare's ``LocalRun`` with ``_spawn`` going through a fork server."""

    server: ForkServer | None = None

    def _spawn(self, name: str, role: str, config: Path, threads: int | None = None) -> None:
        assert self.server is not None
        env = {"PYTHONUNBUFFERED": "1"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        proc = self.server.spawn([role, "--config", str(config)], self.logs / f"{name}.log", env)
        self.processes[name] = proc  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> int:
    """``forkrun.py JOB --workdir DIR [--json]``: as ``fedcare run``, 0 when it succeeded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job")
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    server = ForkServer()  # starts importing now, while certificates are issued
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        job = load_model(FederatedJob, args.job)
        status = ForkedLocalRun(job=job, workdir=workdir, server=server).run()
    finally:
        server.close()
    if args.json:
        print(json.dumps(status.to_json_dict(), indent=None, sort_keys=True))
    else:
        print(f"{status.phase.value}: {status.message}")
    return 0 if status.phase.value == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
