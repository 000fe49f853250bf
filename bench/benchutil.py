"""Helpers shared by the benchmarks: the machine line and the machine's other load.

This machine has 2 CPUs and is shared (test suites run fedcare federations on it too), so a
timing means little without knowing what else ran meanwhile. :func:`wait_for_quiet` waits for
the CPUs to go idle before a measurement, and :class:`CpuWatch` says how many CPU-seconds other
processes took during it.
"""

from __future__ import annotations

import os
import platform
import resource
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
