"""Participant names the coordinator admits from a file it re-reads while it runs.

Under the operator, a Participant created in the job's own cluster after the job (not one of
its inline sites) is listed in the ``<job>-coordinator-participants`` ConfigMap, which the
coordinator pod mounts as a folder; kubelet replaces the file when the ConfigMap changes. The
coordinator reads it at start and every ``interval`` seconds and admits every new name (from the
next round on, like an enrolled site). Names are never taken back here: removing a site from a
running job is not supported (its certificate stays valid until the job's CA goes).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("fedcare.coordinator")

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def read_names(path: Path) -> list[str]:
    """The participant names in ``path``: one per line, ``#`` comments and blank lines ignored.

    A missing file is an empty list; a line that is not a DNS-1123 label is skipped with a
    warning (it could never match a certificate's name the operator issued).
    """
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    names: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line) > 63 or not _NAME.match(line):
            log.warning("%s:%d: %r is not a participant name; skipped", path, number, line)
            continue
        names.append(line)
    return names


class AdmittedFile:
    """Polls a names file and calls ``admit`` once for every name it has not seen yet."""

    def __init__(self, path: str | Path, admit: Callable[[str], None], interval: float = 2.0):
        self.path = Path(path)
        self._admit = admit
        self._interval = interval
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self) -> list[str]:
        """Read the file once; returns the names admitted now."""
        try:
            names = read_names(self.path)
        except OSError as err:  # mid-swap or unreadable: try again next time
            log.warning("cannot read %s: %s", self.path, err)
            return []
        new = [n for n in names if n not in self._seen]
        for name in new:
            self._admit(name)
            self._seen.add(name)
            log.info("admitted participant %s (listed in %s)", name, self.path)
        return new

    def start(self) -> None:
        """Read the file now, then keep polling in a daemon thread."""
        self.poll()
        self._thread = threading.Thread(target=self._loop, name="admitted-file", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.poll()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 1)
