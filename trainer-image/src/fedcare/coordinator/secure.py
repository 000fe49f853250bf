"""Secure aggregation with the sites: masking set-up and unmasking, CKKS sums and decryption.

:class:`SecureExchange` runs the protocol steps of a masked or CKKS round for the engine: it
sends each step's task to the sites, waits for their answers and turns them into the round's
aggregation and, once the round closed, its candidate weights. It shares the engine's condition
variable and session table; the open step is read and written under that lock only, and waiting
for answers releases it, as every wait in the engine does.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import numpy as np

from fedcare.coordinator.aggregation import CkksAggregation, MaskedAggregation, RoundAggregation
from fedcare.coordinator.rounds import Exchange, JobFailure, TrainRound, check_asked
from fedcare.coordinator.sessions import Session, SessionTable
from fedcare.coordinator.uploads import read_vector
from fedcare.errors import SpecError
from fedcare.privacy.ckks import (
    CiphertextSum,
    TensealContext,
    has_secret_key,
    load_context,
    slot_count,
)
from fedcare.privacy.secagg import (
    AdvertiseKeys,
    SecAggAborted,
    SecAggConfig,
    SecAggRefused,
    ShareBundle,
    UnmaskResponse,
)
from fedcare.spec import FederatedJobSpec, SecureAggregationMode
from fedcare.strategies import Strategy
from fedcare.transport import TensorLayout
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport.tensors import F32, frame

log = logging.getLogger("fedcare.coordinator")

_M = TypeVar("_M")

#: What a round's set-up returns: its aggregation, each site's sample share, and the protocol
#: payload addressed to each site with its TRAIN task (secure modes; empty otherwise).
RoundSetup = tuple[RoundAggregation, dict[str, float], dict[str, bytes]]


def coordinator_ckks_context(
    mode: SecureAggregationMode, public_context: bytes | None
) -> TensealContext | None:
    """The coordinator's CKKS context (public only) when the job aggregates with CKKS."""
    if mode is not SecureAggregationMode.CKKS:
        return None
    if public_context is None:
        raise SpecError(
            "privacy.secureAggregation.mode is 'ckks' but the coordinator has no ckksPublicContext"
        )
    ckks = load_context(public_context)
    if has_secret_key(ckks):
        raise SpecError("the coordinator's CKKS context holds a secret key; refusing it")
    return ckks


class SecureExchange:
    """The secure-aggregation steps of the engine's rounds, over the engine's lock."""

    def __init__(
        self,
        job_name: str,
        spec: FederatedJobSpec,
        cond: threading.Condition,
        sessions: SessionTable,
        strategy: Strategy,
        ckks: TensealContext | None,
        rejected: Callable[[str], None],
    ) -> None:
        self._job_name = job_name
        self._spec = spec
        #: the engine's condition variable: guards ``_exchange`` and the session table
        self._cond = cond
        self._sessions = sessions
        self._strategy = strategy
        self._ckks = ckks
        #: counts a refused protocol message (the engine's metrics and status)
        self._rejected = rejected
        self._exchange: Exchange | None = None

    # ----------------------------------------------------------------- round set-up
    def ckks_setup(self, selected: dict[str, str], size: int) -> RoundSetup:
        """A CKKS round: an empty encrypted sum, weighted by the samples announced at join."""
        assert self._ckks is not None
        weights = self._sample_weights(sorted(selected))
        chunks = -(-size // slot_count(self._ckks)) + 1
        total = CiphertextSum(self._ckks, size)
        return CkksAggregation(total, weights, chunks), weights, {}

    def _sample_weights(self, names: list[str]) -> dict[str, float]:
        """Each site's share of the samples the sites announced at join."""
        with self._cond:
            samples = {n: (s.train_samples if (s := self._sessions.get(n)) else 0) for n in names}
        total = sum(samples.values()) or 1
        return {n: k / total for n, k in samples.items()}

    def masked_setup(
        self, number: int, selected: dict[str, str], deadline: float, size: int
    ) -> RoundSetup:
        """Secure aggregation steps 0 and 1: advertise keys, then exchange encrypted shares."""
        names = sorted(selected)
        config = SecAggConfig.from_spec(
            self._spec.privacy.secure_aggregation,
            job_id=self._job_name,
            round_number=number,
            participants=names,
            vector_length=size,
        )
        agg = MaskedAggregation(config, self._sample_weights(names))
        setup = json.dumps({"participants": names}).encode()
        try:
            adverts = self._exchange_step(
                number, pb.Task.SECAGG_ADVERTISE, dict.fromkeys(names, setup), selected, deadline
            )
            for name, data in sorted(adverts.items()):
                self._relay(name, agg.server.add_advert, AdvertiseKeys.from_bytes, data)
            closed = agg.server.close_adverts()
            holders = [a.sender for a in closed.adverts]
            bundles = self._exchange_step(
                number, pb.Task.SECAGG_SHARE_KEYS, dict.fromkeys(holders, closed.to_bytes()),
                selected, deadline,
            )  # fmt: skip
            for name, data in sorted(bundles.items()):
                self._relay(name, agg.server.add_shares, ShareBundle.from_bytes, data)
            requests = agg.server.close_shares()
        except SecAggAborted as err:
            raise JobFailure(
                "SecureAggregationFailed", f"round {number}: secure aggregation: {err}"
            ) from None
        return agg, agg.weights, {n: r.to_bytes() for n, r in requests.items()}

    def _relay(
        self, name: str, apply: Callable[[_M], None], parse: Callable[[bytes], _M], data: bytes
    ) -> None:
        """Apply a site's protocol message; a malformed one drops that site from the round."""
        try:
            apply(parse(data))
        except (ValueError, SecAggRefused) as err:
            log.warning("secure aggregation: message from %s refused: %s", name, err)
            self._rejected("malformed")

    # ----------------------------------------------------------------- candidates
    def masked_candidate(self, rnd: TrainRound, agg: MaskedAggregation, global_weights: F32) -> F32:
        """Unmask the sum of the round's masked inputs (step 3) and apply the strategy."""
        number = rnd.number
        try:
            unmask = agg.server.close_inputs()
            request = unmask.to_bytes()
            answers = self._exchange_step(
                number, pb.Task.SECAGG_UNMASK, dict.fromkeys(unmask.survivors, request),
                rnd.selected, time.monotonic() + self._spec.round_timeout_seconds,
            )  # fmt: skip
            for name, data in sorted(answers.items()):
                self._relay(name, agg.server.add_unmask_response, UnmaskResponse.from_bytes, data)
            result = agg.server.finish()
        except SecAggAborted as err:
            raise JobFailure(
                "SecureAggregationFailed", f"round {number}: secure aggregation: {err}"
            ) from None
        share = sum(agg.weights[c] for c in result.contributors)
        log.info(
            "round %d: unmasked the sum of %d inputs (%d dropped)",
            number, result.count, len(result.dropped),
        )  # fmt: skip
        mean_delta = (result.total / share).astype(np.float32)
        return self._strategy.apply(global_weights, mean_delta)

    def ckks_candidate(
        self,
        rnd: TrainRound,
        agg: CkksAggregation,
        global_weights: F32,
        served: dict[str, bytes],
    ) -> F32:
        """Ask up to two contributing sites to decrypt the encrypted weighted sum; they must
        agree. The coordinator learns only the aggregate, as with masking.

        The encrypted sum is served for download in ``served`` (the engine's map of served
        versions, changed under the lock) while the sites decrypt it."""
        number = rnd.number
        name = f"ckks-aggregate-r{number}"
        with self._cond:
            served[name] = frame(agg.total.to_chunks())
        deciders = sorted(rnd.received)[:2]
        answers = self._exchange_step(
            number, pb.Task.DECRYPT_AGGREGATE,
            dict.fromkeys(deciders, name.encode()), rnd.selected,
            time.monotonic() + self._spec.round_timeout_seconds,
        )  # fmt: skip
        with self._cond:
            served.pop(name, None)
        vectors = [np.frombuffer(v, dtype="<f4") for v in answers.values()]
        if not vectors:
            raise JobFailure(
                "SecureAggregationFailed", f"round {number}: no site decrypted the aggregate"
            )
        if len(vectors) > 1 and not np.allclose(vectors[0], vectors[1], rtol=0, atol=1e-5):
            raise JobFailure(
                "SecureAggregationFailed",
                f"round {number}: sites {sorted(answers)} decrypted different aggregates",
            )
        share = sum(agg.weights[n] for n in rnd.received)
        mean_delta = (vectors[0].astype(np.float64) / share).astype(np.float32)
        return self._strategy.apply(global_weights, mean_delta)

    def receive_decrypted(
        self,
        session: Session,
        header: pb.UpdateHeader,
        chunks: Iterator[bytes],
        layout: TensorLayout,
        size: int,
    ) -> None:
        """A site's decryption of the round's encrypted aggregate (CKKS)."""
        vector = read_vector(chunks, layout, size)
        message = pb.PrivacyMessage(
            session_id=session.session_id, round=header.round,
            phase=pb.Task.DECRYPT_AGGREGATE, payload=vector.tobytes(),
        )  # fmt: skip
        self.submit(session, message)

    # ----------------------------------------------------------------- protocol steps
    def _exchange_step(
        self,
        number: int,
        kind: pb.Task.Kind,
        payloads: dict[str, bytes],
        sessions: dict[str, str],
        deadline: float,
    ) -> dict[str, bytes]:
        """Send ``kind`` with each site's payload; wait for the answers of those still live."""
        with self._cond:
            expected = {
                n: sid
                for n, sid in sessions.items()
                if n in payloads and self._sessions.current(n, sid) is not None
            }
            step = Exchange(round=number, phase=kind, deadline=deadline, expected=expected)
            self._exchange = step
            for name, sid in expected.items():
                session = self._sessions.current(name, sid)
                if session is not None:
                    session.send(
                        pb.Task(
                            kind=kind,
                            round=number,
                            payload=payloads[name],
                            deadline_seconds=max(0.0, deadline - time.monotonic()),
                        )
                    )

            def done() -> bool:
                return not [
                    n for n in step.waiting_for()
                    if self._sessions.current(n, step.expected[n]) is not None
                ]  # fmt: skip

            self._cond.wait_for(done, timeout=max(0.0, deadline - time.monotonic()))
            self._exchange = None
            return dict(step.responses)

    def submit(self, session: Session, message: pb.PrivacyMessage) -> None:
        """A site's answer to the open secure-aggregation step."""
        name = session.participant
        with self._cond:
            step = self._exchange
            open_ = step is not None and (step.round, step.phase) == (message.round, message.phase)
            check_asked(
                session, step.expected if step and open_ else None,
                answered=step is not None and name in step.responses,
                what=f"secure-aggregation step {message.phase} of round {message.round}",
            )  # fmt: skip
            assert step is not None
            step.responses[name] = bytes(message.payload)
            self._cond.notify_all()
