"""Participant sessions: one live session per certificate identity."""

from __future__ import annotations

import queue
import secrets
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from fedcare.transport._generated import coordinator_pb2 as pb

#: Put on a session's queue to end its task stream.
END_STREAM = None


@dataclass
class Session:
    """A participant's connection: joined at ``Join``, live until its task stream ends."""

    participant: str
    train_samples: int
    validation_samples: int
    feature_sum: npt.NDArray[np.float64]
    feature_sum_sq: npt.NDArray[np.float64]
    session_id: str = field(default_factory=lambda: secrets.token_hex(16))
    tasks: queue.Queue[pb.Task | None] = field(default_factory=queue.Queue)
    joined_at: float = field(default_factory=time.monotonic)
    live: bool = True
    replaced: bool = False

    def send(self, task: pb.Task) -> None:
        """Queue a task for the participant's stream."""
        if self.live:
            self.tasks.put(task)

    def close(self, replaced: bool = False) -> None:
        """End the session's stream (``replaced`` when a newer session took over)."""
        if self.live:
            self.live = False
            self.replaced = replaced
            self.tasks.put(END_STREAM)


class SessionTable:
    """Sessions by participant name; a newer Join replaces the older session, never adds one."""

    def __init__(self) -> None:
        self._by_name: dict[str, Session] = {}

    def add(self, session: Session) -> Session | None:
        """Register ``session``; returns the session it replaced, if any (closed)."""
        old = self._by_name.get(session.participant)
        if old is not None:
            old.close(replaced=True)
        self._by_name[session.participant] = session
        return old

    def get(self, name: str) -> Session | None:
        """The current session of ``name``, live or not."""
        return self._by_name.get(name)

    def current(self, name: str, session_id: str) -> Session | None:
        """The live session of ``name`` if its id is ``session_id``."""
        s = self._by_name.get(name)
        if s is None or s.session_id != session_id or not s.live:
            return None
        return s

    def live(self) -> list[Session]:
        """Live sessions, in join order."""
        return sorted((s for s in self._by_name.values() if s.live), key=lambda s: s.joined_at)

    def all(self) -> list[Session]:
        """Every participant's latest session."""
        return list(self._by_name.values())
