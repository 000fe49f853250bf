"""The job's status as the coordinator publishes it: a versioned JSON copy and its watchers.

:class:`StatusPublisher` holds the FederatedJob ``.status`` document, edits participants'
entries, the phase and the privacy spend in it, and publishes every change as a new JSON
version that :meth:`StatusPublisher.watch` streams. All of it runs under the condition
variable it is given, which the engine shares for all its state.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator

from fedcare.repository import VersionMetadata
from fedcare.spec import FederatedJobStatus, ParticipantState, ParticipantStatus, Phase


class StatusPublisher:
    """The status document, its published JSON versions and the job's end (:attr:`finished`).

    Methods whose names start with ``_`` expect the caller to hold the lock (``self._cond``).
    """

    def __init__(self, status: FederatedJobStatus, cond: threading.Condition) -> None:
        self.status = status
        #: the one lock of all the coordinator's state; watchers wait on it
        self._cond = cond
        #: set once the job has ended (Succeeded or Failed)
        self.finished = threading.Event()
        self._status_version = 0
        self._status_json = ""
        with self._cond:
            self._publish()

    def _publish(self) -> None:
        """Bump the status version and wake watchers (caller holds the lock)."""
        self._status_version += 1
        self._status_json = json.dumps(self.status.to_json_dict(), sort_keys=True)
        self._cond.notify_all()

    def status_json(self) -> str:
        """The current status as JSON."""
        with self._cond:
            return self._status_json

    def watch(self, is_active: Callable[[], bool]) -> Iterator[str]:
        """Yield the status JSON now and after every change, until the job ends."""
        seen = 0

        def changed() -> bool:
            return self._status_version != seen or self.finished.is_set()

        while is_active():
            with self._cond:
                self._cond.wait_for(changed, timeout=1.0)
                version, doc = self._status_version, self._status_json
                terminal = self.status.phase in (Phase.SUCCEEDED, Phase.FAILED)
            if version != seen:
                seen = version
                yield doc
            if terminal and self.finished.is_set():
                return

    def _participant_state(
        self, name: str, state: ParticipantState, **kw: int | float | str | None
    ) -> None:
        for i, p in enumerate(self.status.participants):
            if p.name == name:
                if p.state is ParticipantState.BUDGET_EXHAUSTED:
                    state = p.state  # it left for good; later events do not revive it
                data = p.model_dump() | {"state": state} | kw
                self.status.participants[i] = ParticipantStatus(**data)
                return
        self.status.participants.append(
            ParticipantStatus.model_validate({"name": name, "state": state, **kw})
        )

    def _credit(self, meta: VersionMetadata) -> None:
        """Count a stored version's round for every site whose update it includes."""
        for contribution in meta.participants:
            entry = next((p for p in self.status.participants if p.name == contribution.name), None)
            done = entry.rounds_contributed if entry is not None else 0
            self._participant_state(
                contribution.name,
                entry.state if entry is not None else ParticipantState.PENDING,
                rounds_contributed=done + 1,
            )

    def _set_phase(self, phase: Phase, message: str | None = None) -> None:
        self.status.phase = phase
        self.status.message = message

    def _note_epsilon(self, name: str, epsilon: float, delta: float) -> None:
        """Record a site's reported local-DP spend (caller holds the lock)."""
        if not (math.isfinite(epsilon) and epsilon > 0):
            return
        self._participant_state(name, ParticipantState.CONNECTED, epsilon_spent=epsilon)
        spent = [p.epsilon_spent for p in self.status.participants if p.epsilon_spent]
        self.status.epsilon_spent = max(spent)
        self.status.delta = delta
