"""A coordinator process: the gRPC server, the HTTP side and the engine thread together."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import grpc
import numpy as np

from fedcare.audit import AuditError, AuditLog, audit_path_for
from fedcare.coordinator.admitted import AdmittedFile
from fedcare.coordinator.engine import Engine
from fedcare.coordinator.service import CoordinatorService
from fedcare.monitoring import CoordinatorMetrics, HttpSide
from fedcare.monitoring.dashboard import Dashboard
from fedcare.repository import open_repository
from fedcare.spec import CoordinatorConfig, FederatedJob, FederatedJobStatus, Phase, load_model
from fedcare.transport import add_mtls_port, add_tls_port, make_server
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc
from fedcare.transport.capture import CaptureInterceptor

log = logging.getLogger("fedcare.coordinator")

#: At most this long after the job ends for the trainers' task streams to end (DONE sent).
STREAMS_GRACE_SECONDS = 5.0


def initial_weights(job: FederatedJob, mean: np.ndarray, std: np.ndarray) -> dict[str, np.ndarray]:
    """The job's model, seeded, with the federation-wide input standardization set."""
    from fedcare.models import build_model, set_standardization  # torch: imported when needed

    spec = job.spec
    model = build_model(spec.model, spec.task, len(spec.data.features), seed=spec.training.seed)
    set_standardization(model, mean, std)
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def _audit_log(uri: str, job: str) -> AuditLog | None:
    """The job's audit trail beside its model versions (file:// repositories)."""
    try:
        return AuditLog(audit_path_for(uri, job))
    except AuditError as err:
        log.warning("no audit trail: %s", err)
        return None


def _enrollment_server(config: CoordinatorConfig, engine: Engine) -> tuple[grpc.Server, int]:
    """The Enrollment service on its own port (server-authenticated TLS; token + CSR)."""
    from fedcare.enrollment import EnrollmentService, TokenStore
    from fedcare.pki import CertPair
    from fedcare.transport._generated import enrollment_pb2_grpc as enroll_grpc

    enrollment = config.enrollment
    assert enrollment is not None
    server = make_server(max_workers=4)
    service = EnrollmentService(
        engine.name,
        CertPair(cert=Path(config.tls.ca), key=Path(enrollment.ca_key)),
        TokenStore(enrollment.tokens_file),
        engine.allow,
    )
    enroll_grpc.add_EnrollmentServicer_to_server(service, server)  # type: ignore[no-untyped-call]
    port = add_tls_port(server, enrollment.listen, config.tls.cert, config.tls.key)
    return server, port


class Coordinator:
    """The coordinator of one federated job.

    ``Coordinator(config_path="coordinator.yaml").start()`` serves; ``.train()`` runs the job to
    its end and returns the final status.
    """

    def __init__(
        self, config_path: str | Path | None = None, config: CoordinatorConfig | None = None
    ) -> None:
        if config is None:
            if config_path is None:
                raise ValueError("pass config_path or config")
            config = load_model(CoordinatorConfig, config_path)
        self.config = config
        job = config.job
        participants = config.participants
        if participants is None:
            participants = [p.name for p in job.spec.participants]
        self.metrics = CoordinatorMetrics(job.metadata.name)
        uri = job.spec.repository.uri
        self.engine = Engine(
            job=job,
            repository=open_repository(uri),
            initial_weights=initial_weights,
            participants=participants,
            metrics=self.metrics,
            run_id=config.run_id,
            audit=_audit_log(uri, job.metadata.name),
            ckks_public_context=(
                Path(config.ckks_public_context).read_bytes()
                if config.ckks_public_context
                else None
            ),
            max_concurrent_uploads=config.max_concurrent_uploads,
        )
        interceptors = [CaptureInterceptor(config.capture_dir)] if config.capture_dir else []
        self._server = make_server(
            max_workers=3 * max(len(participants), 1) + 16, interceptors=interceptors
        )
        pb_grpc.add_CoordinatorServicer_to_server(  # type: ignore[no-untyped-call]
            CoordinatorService(self.engine, set(config.observers)), self._server
        )
        self.grpc_port = add_mtls_port(self._server, config.listen, config.tls)
        host, port = _split_host_port(config.http_listen)
        self._http = HttpSide(
            host,
            port,
            self.engine.status_json,
            self.metrics.registry,
            healthy=lambda: True,
            dashboard=Dashboard(job.metadata.name, job.spec.headline_metric.value),
        )
        self.http_port = self._http.port
        self._enroll_server: grpc.Server | None = None
        #: Port of the Enrollment service (0 when it is off).
        self.enroll_port = 0
        if config.enrollment is not None:
            self._enroll_server, self.enroll_port = _enrollment_server(config, self.engine)
            from fedcare.enrollment import TokenStore

            # Sites enrolled before a restart keep their certificates: admit them again.
            for name in TokenStore(config.enrollment.tokens_file).enrolled(job.metadata.name):
                self.engine.allow(name)
        self._admitted = (
            AdmittedFile(config.participants_file, self.engine.allow)
            if config.participants_file
            else None
        )
        self._started = False

    def start(self) -> Coordinator:
        """Start serving gRPC and HTTP; writes the port file when configured."""
        if self._started:
            return self
        self._server.start()
        self._http.start()
        if self._enroll_server is not None:
            self._enroll_server.start()
        if self._admitted is not None:
            self._admitted.start()
        self._started = True
        if self.config.port_file:
            target = Path(self.config.port_file)
            tmp = target.with_suffix(".tmp")
            ports = {"grpc": self.grpc_port, "http": self.http_port}
            if self.enroll_port:
                ports["enroll"] = self.enroll_port
            tmp.write_text(json.dumps(ports))
            os.replace(tmp, target)
        log.info(
            "coordinator for job %s serving gRPC on %d, HTTP on %d",
            self.engine.name,
            self.grpc_port,
            self.http_port,
        )
        return self

    def train(self) -> FederatedJobStatus:
        """Run the job to its end (starting the servers if needed); returns the final status."""
        self.start()
        status = self.engine.run()
        if self.config.exit_on_completion:
            ended = time.monotonic()
            # Every trainer's task stream ends with its DONE task: wait for that (bounded),
            # then for whatever is left of the linger (a dashboard's last look).
            self.engine.wait_streams_ended(STREAMS_GRACE_SECONDS)
            time.sleep(max(0.0, self.config.linger_seconds - (time.monotonic() - ended)))
            self.stop()
        return status

    def serve_forever(self) -> FederatedJobStatus:
        """Run the job, then keep serving its final status until the process is stopped."""
        status = self.train()
        if not self.config.exit_on_completion:
            self._server.wait_for_termination()
        return status

    def stop(self) -> None:
        """Stop both servers."""
        if self._admitted is not None:
            self._admitted.stop()
        if self._enroll_server is not None:
            self._enroll_server.stop(grace=None)
        self._server.stop(grace=2.0).wait()
        self._http.stop()


def run_coordinator(config_path: str | Path) -> int:
    """``fedcare coordinator``: 0 when the job succeeded, 1 when it failed."""
    status = Coordinator(config_path=config_path).serve_forever()
    return 0 if status.phase is Phase.SUCCEEDED else 1
