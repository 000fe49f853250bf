"""Helpers shared by the benchmarks: machine line, other load, memory of fedcare's processes.

:class:`MemorySampler` polls the memory and CPU of a ``fedcare run``'s processes.

This machine has 2 CPUs and is shared (test suites run fedcare federations on it too), so a
timing means little without knowing what else ran meanwhile. :func:`wait_for_quiet` waits for
the CPUs to go idle before a measurement, and :class:`CpuWatch` says how many CPU-seconds other
processes took during it.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def machine_line(extra: str = "") -> str:
    """One line: CPUs, CPU model, memory, Python, the OPENBLAS_* environment (left as found)."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    blas = " ".join(f"{k}={os.environ[k]}" for k in sorted(os.environ) if k.startswith("OPENBLAS_"))
    return (
        f"machine: {os.cpu_count()} CPUs, {cpu_model()}, {mem_kib / 1024**2:.1f} GiB RAM, "
        f"python {platform.python_version()}{extra}, env {blas or '(no OPENBLAS_* set)'}"
    )


def busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (all CPUs, idle/iowait excluded)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def own_cpu_seconds() -> float:
    """CPU-seconds of this process and its waited-for children."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def wait_for_quiet(
    max_wait: float, threshold: float = 0.15, settle: int = 3, interval: float = 1.0
) -> tuple[float, float]:
    """Wait until the machine is idle, or ``max_wait`` seconds.

    Idle means ``settle`` intervals in a row with a busy share below ``threshold`` (0..1 of
    all CPUs). Returns (seconds waited, the busy share of the last interval).
    """
    start = time.monotonic()
    calm = 0
    share = 1.0
    ncpu = os.cpu_count() or 1
    while True:
        b0, t0 = busy_seconds(), time.monotonic()
        time.sleep(interval)
        share = (busy_seconds() - b0) / ((time.monotonic() - t0) * ncpu)
        calm = calm + 1 if share < threshold else 0
        waited = time.monotonic() - start
        if calm >= settle or waited >= max_wait:
            return waited, share


@dataclass
class CpuWatch:
    """Busy CPU-seconds of the machine over a measurement, split into ours and the others'."""

    busy0: float = field(default_factory=busy_seconds)
    own0: float = field(default_factory=own_cpu_seconds)
    wall0: float = field(default_factory=time.monotonic)

    def others(self, extra_own: float = 0.0) -> tuple[float, float]:
        """(CPU-seconds used by other processes so far, that as a share of all CPUs' time).

        ``extra_own`` adds CPU time of our own processes that :func:`own_cpu_seconds` cannot
        see (descendants not yet waited for, or not waited for by this process).
        """
        busy = busy_seconds() - self.busy0
        own = own_cpu_seconds() - self.own0 + extra_own
        wall = time.monotonic() - self.wall0
        other = max(0.0, busy - own)
        return other, other / (wall * (os.cpu_count() or 1))


def tree_line() -> str:
    """The commit the measured code is at, and whether the working tree had other changes."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %cd", "--date=iso"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "code: not a git checkout"
    state = "with uncommitted changes to tracked files" if dirty else "clean"
    return f"code: commit {head}, working tree {state}"


# --------------------------------------------------------------------------- memory
@dataclass
class ProcInfo:
    """What was seen of one fedcare process."""

    pid: int
    name: str
    ppid: int | None = None
    hwm_kib: int = 0
    rss_kib: int = 0
    pss_kib: int = 0
    cpu_s: float = 0.0
    last_seen: float = 0.0


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def status_kib(text: str, key: str) -> int:
    """A ``/proc/<pid>/status`` (or ``smaps_rollup``) field in KiB, 0 when absent."""
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(m.group(1)) if m else 0


@dataclass
class MemorySampler:
    """Polls ``/proc`` for this run's fedcare processes (see :meth:`_identify`)."""

    workdir: Path
    interval: float = 0.2
    procs: dict[int, ProcInfo] = field(default_factory=dict)
    peak_rss_sum_kib: int = 0
    peak_pss_sum_kib: int = 0
    samples: int = 0
    _ignored: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _identify(self, pid: int) -> str | None:
        """The process's role name (``coordinator``, ``trainer-site-3``, ``fork-server``) or None.

        A fresh interpreter (``--launcher spawn``) names its ``--config`` on its command line;
        a process forked from the fork server (the default) has the fork server's command line
        but writes to its own log, ``logs/<role>.log``; the fork server is this process's
        child running ``multiprocessing.forkserver``.
        """
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        args = [a.decode(errors="replace") for a in argv if a]
        if "fedcare" in args and "--config" in args:
            config = Path(args[args.index("--config") + 1])
            return config.stem if config.is_relative_to(self.workdir) else None
        try:
            out = Path(os.readlink(f"/proc/{pid}/fd/1"))
        except OSError:
            out = None
        if out is not None and out.parent == self.workdir / "logs" and out.suffix == ".log":
            return out.stem
        if any("multiprocessing.forkserver" in a for a in args) and _ppid(pid) == os.getpid():
            return "fork-server"
        return None

    def sample(self) -> None:
        """Read RSS, VmHWM, PSS and CPU time of every matching process once."""
        now = time.monotonic()
        rss_sum = pss_sum = 0
        tick = os.sysconf("SC_CLK_TCK")
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in self._ignored:
                continue
            info = self.procs.get(pid)
            if info is None:
                name = self._identify(pid)
                if name is None:
                    self._ignored.add(pid)
                    continue
                info = self.procs[pid] = ProcInfo(pid=pid, name=name, ppid=_ppid(pid))
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue  # exited between the listing and the read
            if "State:\tZ" in status:
                continue  # a zombie has no memory left to report
            rss = status_kib(status, "VmRSS")
            info.rss_kib = rss
            info.hwm_kib = max(info.hwm_kib, status_kib(status, "VmHWM"))
            info.pss_kib = status_kib(rollup, "Pss")
            fields = stat.rsplit(")", 1)[1].split()
            info.cpu_s = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            info.last_seen = now
            rss_sum += rss
            pss_sum += info.pss_kib
        self.peak_rss_sum_kib = max(self.peak_rss_sum_kib, rss_sum)
        self.peak_pss_sum_kib = max(self.peak_pss_sum_kib, pss_sum)
        self.samples += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread = threading.Thread(target=self._loop, name="mem-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def by_name(self, prefix: str) -> list[ProcInfo]:
        """Processes whose role name starts with ``prefix``."""
        return [p for p in self.procs.values() if p.name.startswith(prefix)]


# --------------------------------------------------------------------------- status
