"""How ``fedcare run`` starts its coordinator and trainer processes.

Two launchers, one interface (:class:`Proc`, the part of :class:`subprocess.Popen` that
:class:`~fedcare.local.runner.LocalRun` and its tests use):

- ``spawn``: every process is a fresh ``python -m fedcare ROLE --config FILE``. Each one pays
  for importing torch, pyarrow and gRPC, for ``torch._dynamo`` (imported by the optimizer's first
  step) and, at exit, for the interpreter's final garbage collection: about 2.6 CPU-seconds per
  process here, most of a small job's wall time when ten trainers share two cores.
- ``forkserver`` (the default on Linux): the standard library's fork server
  (:mod:`multiprocessing`, ``forkserver`` context) preloads :mod:`fedcare.local._preload`, which
  does those imports and that warm-up once and freezes the garbage collector's view of them;
  every process is then forked from it and runs the same ``fedcare ROLE --config FILE`` command
  line through :func:`fedcare.cli.main`, with its own log file and environment, and leaves with
  ``os._exit`` (multiprocessing's own exit path, no final collection). Each process is still a
  separate OS process with its own certificate, its own gRPC channel or server and its own
  memory; nothing is shared but the copy-on-write pages of the modules.

The fork server never creates a gRPC channel or server and never initialises CUDA or torch's
intra-op thread pool, so forking it is safe; a forked trainer on a GPU machine initialises CUDA
itself. In Kubernetes every site is its own pod and none of this applies.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Literal, Protocol

from fedcare.errors import SpecError

#: The names ``fedcare run --launcher`` accepts.
LauncherName = Literal["forkserver", "spawn"]
LAUNCHERS: tuple[LauncherName, ...] = ("forkserver", "spawn")


class Proc(Protocol):
    """A started process: the part of :class:`subprocess.Popen` that fedcare uses."""

    @property
    def pid(self) -> int:
        """The OS process id."""
        ...

    @property
    def returncode(self) -> int | None:
        """Exit status once it ended (negative: killed by that signal), else None."""
        ...

    def poll(self) -> int | None:
        """The exit status if the process ended, else None."""
        ...

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; :class:`subprocess.TimeoutExpired` after ``timeout``."""
        ...

    def send_signal(self, sig: int) -> None:
        """Send a signal."""
        ...

    def terminate(self) -> None:
        """SIGTERM."""
        ...

    def kill(self) -> None:
        """SIGKILL."""
        ...


def default_launcher() -> LauncherName:
    """``$FEDCARE_LAUNCHER`` if set; else ``forkserver`` on Linux (where it is measured and
    tested) and ``spawn`` elsewhere (macOS's system libraries are not fork-safe once loaded)."""
    env = os.environ.get("FEDCARE_LAUNCHER", "")
    if env in LAUNCHERS:
        return env
    if env:
        raise SpecError(f"FEDCARE_LAUNCHER={env}: expected one of {', '.join(LAUNCHERS)}")
    return "forkserver" if sys.platform.startswith("linux") else "spawn"


def spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``python -m fedcare ARGV`` as a fresh interpreter, output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "fedcare", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            stdin=subprocess.DEVNULL,
        )


class ForkedProc:
    """A process forked from the fork server, with :class:`subprocess.Popen`'s manners."""

    def __init__(self, process: multiprocessing.process.BaseProcess, argv: list[str]) -> None:
        self._process = process
        self._argv = argv

    @property
    def pid(self) -> int:
        """The OS process id."""
        pid = self._process.pid
        assert pid is not None  # started in the constructor's caller
        return pid

    @property
    def returncode(self) -> int | None:
        """Exit status once it ended (negative: killed by that signal), else None."""
        return self._process.exitcode

    def poll(self) -> int | None:
        """The exit status if the process ended, else None."""
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit; :class:`subprocess.TimeoutExpired` after ``timeout``."""
        self._process.join(timeout)
        code = self._process.exitcode
        if code is None:
            raise subprocess.TimeoutExpired(["fedcare", *self._argv], timeout or 0.0)
        return code

    def send_signal(self, sig: int) -> None:
        """Send a signal (nothing once the process has ended, as Popen does)."""
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


def _context() -> ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    assert isinstance(ctx, ForkServerContext)
    ctx.set_forkserver_preload(["fedcare.local._preload"])
    return ctx


def fork(argv: list[str], log: Path, env: dict[str, str]) -> ForkedProc:
    """Fork ``fedcare ARGV`` from the (preloaded) fork server, output appended to ``log``.

    The first call starts the fork server (about two CPU-seconds of imports, paid once); it
    lives as long as this process.
    """
    process = _context().Process(
        target=_child,
        args=(argv, str(log), env),
        name=f"fedcare {' '.join(argv)}",
        daemon=False,
    )
    process.start()
    return ForkedProc(process, argv)


def _child(argv: list[str], log: str, env: dict[str, str]) -> None:
    """In the forked process: own log file and environment, then the ``fedcare`` command."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # New line-buffered streams on the redirected descriptors (they live as long as the process).
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.environ.clear()
    os.environ.update(env)
    from fedcare.cli import main

    try:
        code = main(argv)
    finally:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)


def launch(
    launcher: LauncherName, argv: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes] | ForkedProc:
    """Start ``fedcare ARGV`` with ``launcher``."""
    if launcher == "forkserver":
        return fork(argv, log, env)
    return spawn(argv, log, env)
