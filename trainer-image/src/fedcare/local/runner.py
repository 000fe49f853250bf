"""Run a FederatedJob manifest on this machine: a coordinator process and one trainer process per
inline participant, talking mutual TLS over loopback, with certificates issued for this run."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

from fedcare.errors import FedcareError, JobFailed, SpecError
from fedcare.local.launch import LauncherName, Proc, default_launcher, launch
from fedcare.pki import ROLE_OBSERVER, CertPair, create_ca, issue_client_cert, issue_server_cert
from fedcare.spec import (
    CoordinatorConfig,
    FederatedJob,
    FederatedJobStatus,
    InlineParticipant,
    Phase,
    SecureAggregationMode,
    TlsFiles,
    TrainerConfig,
    load_model,
)
from fedcare.transport import make_mtls_channel
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc

log = logging.getLogger("fedcare.local")

OBSERVER = "fedcare-observer"
SERVER_NAME = "fedcare-coordinator"
StatusCallback = Callable[[FederatedJobStatus], None]


def _tls(ca: CertPair, own: CertPair) -> TlsFiles:
    return TlsFiles(ca=str(ca.cert), cert=str(own.cert), key=str(own.key))


def _write_yaml(path: Path, doc: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


@dataclass
class LocalRun:
    """One local execution of a job; :meth:`run` drives it from certificates to final status."""

    job: FederatedJob
    workdir: Path
    on_status: StatusCallback | None = None
    keep_workdir: bool = False
    startup_timeout: float = 60.0
    #: Record every message the coordinator receives here (privacy audits, tests).
    capture_dir: Path | None = None
    #: The coordinator's HTTP address (status, metrics, web dashboard); port 0: a free one.
    http_listen: str = "127.0.0.1:0"
    #: Called with the coordinator's HTTP port once it serves (``fedcare run --dashboard``).
    on_http: Callable[[int], None] | None = None
    #: How processes start: forked from a preloaded fork server, or fresh interpreters.
    launcher: LauncherName = field(default_factory=default_launcher)
    processes: dict[str, Proc] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        """Folder with one log file per process."""
        return self.workdir / "logs"

    def _check(self) -> None:
        spec = self.job.spec
        if not spec.participants:
            raise SpecError(
                "spec.participants: `fedcare run` needs the participants listed "
                "inline (name and data path of each site)"
            )
        for i, p in enumerate(spec.participants):
            if not Path(p.data.path).exists():
                raise SpecError(f"spec.participants[{i}].data.path: {p.data.path}: no such file")

    def _issue(self) -> tuple[CertPair, CertPair, CertPair, dict[str, CertPair]]:
        pki = self.workdir / "pki"
        ca = create_ca(pki, self.job.metadata.name)
        server = issue_server_cert(
            ca, pki, common_name=SERVER_NAME, sans=(SERVER_NAME, "localhost", "127.0.0.1")
        )
        observer = issue_client_cert(ca, pki, OBSERVER, role=ROLE_OBSERVER)
        clients = {p.name: issue_client_cert(ca, pki, p.name) for p in self.job.spec.participants}
        return ca, server, observer, clients

    def _spawn(
        self,
        name: str,
        role: str,
        config: Path,
        threads: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = dict(os.environ) | (extra_env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        argv = [role, "--config", str(config)]
        self.processes[name] = launch(self.launcher, argv, self.logs / f"{name}.log", env)

    def _wait_ports(self, port_file: Path) -> dict[str, int]:
        deadline = time.monotonic() + self.startup_timeout
        proc = self.processes["coordinator"]
        while time.monotonic() < deadline:
            if port_file.exists():
                ports: dict[str, int] = json.loads(port_file.read_text())
                return ports
            if proc.poll() is not None:
                raise JobFailed(
                    f"coordinator exited at start-up: {_last_line(self.logs / 'coordinator.log')}"
                )
            time.sleep(0.05)
        raise JobFailed(f"coordinator did not start within {self.startup_timeout:g}s")

    def prepare(self) -> None:
        """Check the job, issue this run's certificates and write the coordinator's config."""
        self._check()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.ca, self.server_cert, self.observer_cert, self.client_certs = self._issue()
        self.ckks_secret: Path | None = None
        ckks_public: Path | None = None
        if self.job.spec.privacy.secure_aggregation.mode is SecureAggregationMode.CKKS:
            from fedcare.privacy.ckks import write_contexts

            # The secret context goes to the sites only; the coordinator gets the public one.
            self.ckks_secret, ckks_public = write_contexts(self.workdir / "pki" / "ckks")
        self.port_file = self.workdir / "coordinator.ports.json"
        coord_cfg = CoordinatorConfig(
            job=self.job,
            listen="127.0.0.1:0",
            http_listen=self.http_listen,
            tls=_tls(self.ca, self.server_cert),
            port_file=str(self.port_file),
            observers=[OBSERVER],
            run_id=uuid.uuid4().hex,
            capture_dir=str(self.capture_dir) if self.capture_dir else None,
            ckks_public_context=str(ckks_public) if ckks_public else None,
            # With a dashboard open, let the page show the final state before the end.
            linger_seconds=3.0 if self.on_http is not None else 0.0,
        )
        self.coordinator_config = _write_yaml(
            self.workdir / "coordinator.yaml", coord_cfg.to_json_dict()
        )

    def start_coordinator(self) -> str:
        """Start the coordinator process; returns its gRPC endpoint once it serves."""
        endpoint = self.job.spec.repository.endpoint
        # ``spec.repository.endpoint`` reaches the S3 client as the Kubernetes pod gets it.
        extra = {"FEDCARE_S3_ENDPOINT_URL": endpoint} if endpoint is not None else None
        self._spawn("coordinator", "coordinator", self.coordinator_config, extra_env=extra)
        ports = self._wait_ports(self.port_file)
        self.http_port = ports["http"]
        self.endpoint = f"127.0.0.1:{ports['grpc']}"
        return self.endpoint

    def restart_coordinator(self) -> str:
        """Start a new coordinator process for the same run, on the same ports.

        Used after the previous one died: it resumes from the run's last stored version, and
        the trainers, retrying, reconnect to the same endpoint.
        """
        config = CoordinatorConfig.model_validate(
            yaml.safe_load(self.coordinator_config.read_text())
        )
        config.listen = self.endpoint
        config.http_listen = f"127.0.0.1:{self.http_port}"
        _write_yaml(self.coordinator_config, config.to_json_dict())
        self.port_file.unlink(missing_ok=True)
        return self.start_coordinator()

    def start_trainer(self, participant: InlineParticipant) -> None:
        """Start one site's trainer process."""
        threads = max(1, (os.cpu_count() or 1) // len(self.job.spec.participants))
        tcfg = TrainerConfig(
            participant=participant.name,
            job=self.job.metadata.name,
            coordinator=self.endpoint,
            server_name=SERVER_NAME,
            tls=_tls(self.ca, self.client_certs[participant.name]),
            data=participant.data,
            threads=threads,
            privacy_budget=participant.privacy_budget,
            ckks_context=str(self.ckks_secret) if self.ckks_secret else None,
        )
        path = _write_yaml(self.workdir / f"trainer-{participant.name}.yaml", tcfg.to_json_dict())
        self._spawn(f"trainer-{participant.name}", "trainer", path, threads=threads)

    def follow(self) -> FederatedJobStatus:
        """Follow the status stream (as an observer) until the job ends."""
        return self._follow(self.endpoint, _tls(self.ca, self.observer_cert))

    def run(self) -> FederatedJobStatus:
        """Start every process, follow the status stream to the end, return the final status."""
        spec = self.job.spec
        if spec.participants and len(spec.participants) < spec.min_participants:
            # Valid under the operator (more sites may enroll); here nobody else can come.
            raise SpecError(
                f"spec.minParticipants: {spec.min_participants} sites needed, but `fedcare run` "
                f"has only the {len(spec.participants)} listed inline"
            )
        self.prepare()
        try:
            self.start_coordinator()
            if self.on_http is not None:
                self.on_http(self.http_port)
            for p in self.job.spec.participants:
                self.start_trainer(p)
            status = self.follow()
            self.reap()
            return status
        finally:
            self.stop()

    def _follow(self, endpoint: str, tls: TlsFiles) -> FederatedJobStatus:
        status: FederatedJobStatus | None = None
        channel = make_mtls_channel(endpoint, tls, SERVER_NAME)
        stub = pb_grpc.CoordinatorStub(channel)  # type: ignore[no-untyped-call]
        try:
            for event in stub.WatchStatus(pb.WatchRequest()):
                status = FederatedJobStatus.model_validate_json(event.status_json)
                if self.on_status is not None:
                    self.on_status(status)
                if status.phase in (Phase.SUCCEEDED, Phase.FAILED):
                    break
        except grpc.RpcError as err:
            coord = self.processes["coordinator"]
            with contextlib.suppress(subprocess.TimeoutExpired):
                coord.wait(timeout=5)
            last = _last_line(self.logs / "coordinator.log")
            raise JobFailed(f"lost the coordinator ({err.code().name}): {last}") from None
        finally:
            channel.close()
        if status is None or status.phase not in (Phase.SUCCEEDED, Phase.FAILED):
            raise JobFailed("status stream ended before the job did")
        return status

    def reap(self, timeout: float = 30.0) -> None:
        """Wait for every process to exit (terminating stragglers after ``timeout``)."""
        deadline = time.monotonic() + timeout
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.terminate()

    def stop(self) -> None:
        """Kill whatever is still running."""
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run(
    path: str | Path,
    *,
    workdir: str | Path | None = None,
    on_status: StatusCallback | None = None,
    keep_workdir: bool = False,
    check: bool = True,
    http_port: int = 0,
    on_http: Callable[[int], None] | None = None,
    launcher: LauncherName | None = None,
) -> FederatedJobStatus:
    """Run the FederatedJob manifest at ``path`` locally; returns its final status.

    With ``check`` (default) a Failed job raises :class:`JobFailed` with its message.
    Certificates, configs and per-process logs go to ``workdir`` (a temporary folder by
    default, removed afterwards unless the job failed or ``keep_workdir`` is set).
    ``http_port`` pins the coordinator's HTTP port on 127.0.0.1 (0: a free one); ``on_http``
    is called with it once the coordinator serves (the web dashboard is at ``/``).
    ``launcher`` chooses how processes start (:mod:`fedcare.local.launch`; default: the fork
    server where the platform has one, or ``$FEDCARE_LAUNCHER``).
    """
    job = load_model(FederatedJob, path)
    temp = workdir is None
    wd = (
        Path(tempfile.mkdtemp(prefix=f"fedcare-{job.metadata.name}-"))
        if temp
        else Path(str(workdir))
    )
    wd.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        status = LocalRun(
            job=job,
            workdir=wd,
            on_status=on_status,
            http_listen=f"127.0.0.1:{http_port}",
            on_http=on_http,
            launcher=launcher or default_launcher(),
        ).run()
        ok = status.phase is Phase.SUCCEEDED
        if check and not ok:
            raise JobFailed(f"{status.message} (logs: {wd / 'logs'})")
        return status
    except FedcareError as err:
        if not isinstance(err, SpecError) and "logs:" not in str(err):
            raise type(err)(f"{err} (logs: {wd / 'logs'})") from None
        raise
    finally:
        if temp and ok and not keep_workdir:
            shutil.rmtree(wd, ignore_errors=True)
