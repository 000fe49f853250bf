"""The gRPC servicer: thin adapters from RPCs to the engine, identity from the certificate."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc

from fedcare.coordinator.engine import Engine
from fedcare.coordinator.sessions import END_STREAM, Session
from fedcare.coordinator.uploads import Rejected
from fedcare.pki import ROLE_OBSERVER, ROLE_PARTICIPANT
from fedcare.transport import CHUNK_BYTES, iter_byte_chunks, peer_identity
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger("fedcare.coordinator")


class CoordinatorService(pb_grpc.CoordinatorServicer):
    """Implements ``fedcare.v1.Coordinator`` on top of an :class:`Engine`."""

    def __init__(self, engine: Engine, observers: set[str]) -> None:
        self._engine = engine
        self._observers = observers

    # A participant's identity is the CN of its verified certificate, never a message field.
    def _participant(self, context: grpc.ServicerContext) -> str:
        ident = peer_identity(context)
        if ident is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "no verified client certificate")
        name, role = ident
        if role != ROLE_PARTICIPANT:
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"certificate role {role!r} may not act as a participant",
            )
        return name

    def _session(self, context: grpc.ServicerContext, session_id: str) -> Session:
        name = self._participant(context)
        try:
            return self._engine.session_for(name, session_id)
        except Rejected as rej:
            context.abort(rej.code, rej.detail)

    def DescribeJob(
        self, request: pb.DescribeJobRequest, context: grpc.ServicerContext
    ) -> pb.JobDescription:
        """The job's spec, for a participant to load its data with the right schema."""
        name = self._participant(context)
        if not self._engine.is_participant(name):
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"certificate for {name!r} is not a participant of job {self._engine.name!r}",
            )
        return pb.JobDescription(
            job=self._engine.name,
            job_spec_json=self._engine.job.spec.model_dump_json(by_alias=True),
        )

    def Join(self, request: pb.JoinRequest, context: grpc.ServicerContext) -> pb.JoinResponse:
        """Admit the caller and open its session."""
        name = self._participant(context)
        try:
            session = self._engine.join(name, request)
        except Rejected as rej:
            log.warning("join refused for %s: %s", name, rej.detail)
            context.abort(rej.code, rej.detail)
        log.info("%s joined (%d training samples)", name, request.train_samples)
        return pb.JoinResponse(
            session_id=session.session_id,
            participant=name,
            job=self._engine.name,
        )

    def Tasks(self, request: pb.TasksRequest, context: grpc.ServicerContext) -> Iterator[pb.Task]:
        """Stream the session's tasks until the job ends or the session is replaced."""
        session = self._session(context, request.session_id)
        context.add_callback(lambda: self._engine.stream_ended(session))
        while context.is_active():
            try:
                task = session.tasks.get(timeout=1.0)
            except Exception:  # noqa: BLE001 - queue.Empty: poll is_active again
                continue
            if task is END_STREAM:
                if session.replaced:
                    context.abort(
                        grpc.StatusCode.ABORTED,
                        "session replaced by a newer connection with the same identity",
                    )
                return
            yield task
            if task.kind == pb.Task.DONE:
                return

    def DownloadModel(
        self, request: pb.ModelRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Chunk]:
        """Stream a served model version in chunks."""
        self._session(context, request.session_id)
        try:
            data = self._engine.model_bytes(request.model_version)
        except Rejected as rej:
            context.abort(rej.code, rej.detail)
        first = True
        for piece in iter_byte_chunks(data, CHUNK_BYTES):
            yield pb.Chunk(data=piece, total_bytes=len(data) if first else 0)
            first = False
            self._engine.metrics.bytes_out.inc(len(piece))

    def UploadUpdate(
        self, request_iterator: Iterator[pb.UpdateChunk], context: grpc.ServicerContext
    ) -> pb.UploadAck:
        """Receive one update: a header, then its float32 bytes in chunks."""
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("payload") != "header":
            self._engine.rejected("malformed")
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a header")
        header = first.header
        session = self._session(context, header.session_id)

        def data() -> Iterator[bytes]:
            for msg in request_iterator:
                if msg.WhichOneof("payload") != "data":
                    raise Rejected(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "malformed",
                        "only data chunks may follow the header",
                    )
                yield msg.data

        try:
            self._engine.receive_update(session, header, data())
        except Rejected as rej:
            log.warning(
                "update from %s refused (%s): %s", session.participant, rej.reason, rej.detail
            )
            self._engine.rejected(rej.reason)
            context.abort(rej.code, rej.detail)
        return pb.UploadAck(accepted=True, detail=f"round {header.round} update accepted")

    def ReportEvaluation(
        self, request: pb.EvaluationReport, context: grpc.ServicerContext
    ) -> pb.UploadAck:
        """Record a site's evaluation of the candidate model."""
        session = self._session(context, request.session_id)
        try:
            self._engine.report_evaluation(session, request)
        except Rejected as rej:
            self._engine.rejected(rej.reason)
            context.abort(rej.code, rej.detail)
        return pb.UploadAck(accepted=True, detail="evaluation recorded")

    def SubmitPrivacy(
        self, request: pb.PrivacyMessage, context: grpc.ServicerContext
    ) -> pb.UploadAck:
        """A site's message for the open secure-aggregation step."""
        session = self._session(context, request.session_id)
        try:
            self._engine.submit_privacy(session, request)
        except Rejected as rej:
            self._engine.rejected(rej.reason)
            context.abort(rej.code, rej.detail)
        return pb.UploadAck(accepted=True, detail="received")

    def Leave(self, request: pb.LeaveRequest, context: grpc.ServicerContext) -> pb.UploadAck:
        """A participant leaves the job for good, with its reason."""
        session = self._session(context, request.session_id)
        self._engine.leave(session, request)
        return pb.UploadAck(accepted=True, detail="left the job")

    def WatchStatus(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.StatusEvent]:
        """Stream the job status to an observer (the operator or the local runner)."""
        ident = peer_identity(context)
        if ident is None or ident[1] != ROLE_OBSERVER or ident[0] not in self._observers:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "only observers may watch status")
        for doc in self._engine.watch(context.is_active):
            yield pb.StatusEvent(status_json=doc)
