"""Test actors: a local job driven step by step, and hand-made gRPC clients (rogue or buggy)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import yaml

from fedcare.local import LocalRun
from fedcare.pki import CertPair
from fedcare.spec import FederatedJob, FederatedJobStatus, TlsFiles, load_model
from fedcare.transport import make_mtls_channel
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc

SERVER_NAME = "fedcare-coordinator"


def start_job(
    manifest: Path,
    workdir: Path,
    capture_dir: Path | None = None,
    participants_file: Path | None = None,
) -> LocalRun:
    """Prepare a local run and start its coordinator (no trainers yet).

    ``participants_file`` goes into the coordinator's config (``participantsFile``), as the
    operator sets it in a pod.
    """
    job = load_model(FederatedJob, manifest)
    run = LocalRun(job=job, workdir=workdir, capture_dir=capture_dir)
    run.prepare()
    if participants_file is not None:
        config = yaml.safe_load(run.coordinator_config.read_text())
        config["participantsFile"] = str(participants_file)
        run.coordinator_config.write_text(yaml.safe_dump(config, sort_keys=False))
    run.start_coordinator()
    return run


def http_get(run: LocalRun, path: str) -> str:
    """GET a path on the coordinator's HTTP side."""
    with urllib.request.urlopen(f"http://127.0.0.1:{run.http_port}{path}", timeout=10) as r:
        return str(r.read().decode())


def status(run: LocalRun) -> FederatedJobStatus:
    """The coordinator's current ``/status``."""
    return FederatedJobStatus.model_validate(json.loads(http_get(run, "/status")))


def wait_for(run: LocalRun, predicate: str, timeout: float = 60.0) -> FederatedJobStatus:
    """Poll ``/status`` until ``eval(predicate)`` on it (variable ``s``) holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = status(run)
        if eval(predicate, {}, {"s": s}):
            return s
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {predicate}: {status(run)}")


def stub_for(
    run: LocalRun, own: CertPair | None, ca: Path | None = None
) -> pb_grpc.CoordinatorStub:
    """A stub presenting ``own`` (None: no client certificate) and trusting ``ca``."""
    ca_path = ca or run.ca.cert
    if own is None:
        creds = grpc.ssl_channel_credentials(root_certificates=ca_path.read_bytes())
        channel = grpc.secure_channel(
            run.endpoint, creds, options=[("grpc.ssl_target_name_override", SERVER_NAME)]
        )
    else:
        tls = TlsFiles(ca=str(ca_path), cert=str(own.cert), key=str(own.key))
        channel = make_mtls_channel(run.endpoint, tls, SERVER_NAME)
    return pb_grpc.CoordinatorStub(channel)


def join_request(n_features: int, samples: int = 100) -> pb.JoinRequest:
    """A plausible join request (standardized statistics: mean 0, variance 1)."""
    return pb.JoinRequest(
        train_samples=samples,
        validation_samples=20,
        feature_sum=[0.0] * n_features,
        feature_sum_sq=[float(samples)] * n_features,
    )


def update_stream(
    session_id: str,
    task: pb.Task,
    layout: list[tuple[str, list[int]]],
    values: np.ndarray,
    samples: int = 100,
) -> Iterator[pb.UpdateChunk]:
    """An update's client stream with arbitrary values (may be malicious)."""
    header = pb.UpdateHeader(
        session_id=session_id,
        round=task.round,
        base_version=task.model_version,
        num_samples=samples,
    )
    header.tensors.extend(pb.TensorInfo(name=n, shape=s) for n, s in layout)
    yield pb.UpdateChunk(header=header)
    yield pb.UpdateChunk(data=np.ascontiguousarray(values, dtype="<f4").tobytes())


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """Read one sample from Prometheus text output (0.0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics_text.splitlines():
        if line.startswith(name + "{"):
            lab, _, value = line[len(name) + 1 :].partition("} ")
            if ",".join(sorted(lab.split(","))) == want:
                return float(value)
    return 0.0


def masked_dropper(run: LocalRun, name: str) -> threading.Thread:
    """A site that follows secure aggregation up to its masked upload in round 1, then drops
    (its task stream is cancelled) before the unmasking step. Its update is all zeros."""
    from fedcare.models import build_model
    from fedcare.privacy.secagg import KeyAdverts, MaskingRequest, SecAggClient, SecAggConfig
    from fedcare.spec import FederatedJobSpec

    stub = stub_for(run, run.client_certs[name])
    spec = FederatedJobSpec.model_validate_json(
        stub.DescribeJob(pb.DescribeJobRequest(), timeout=10).job_spec_json
    )
    model = build_model(spec.model, spec.task, len(spec.data.features))
    size = sum(int(v.numel()) for v in model.state_dict().values())
    layout = [(k, list(model.state_dict()[k].shape)) for k in sorted(model.state_dict())]

    def play() -> None:
        session = stub.Join(join_request(len(spec.data.features)), timeout=10).session_id
        tasks = stub.Tasks(pb.TasksRequest(session_id=session))
        client: SecAggClient | None = None
        for task in tasks:
            if task.kind == pb.Task.SECAGG_ADVERTISE:
                config = SecAggConfig.from_spec(
                    spec.privacy.secure_aggregation, job_id=run.job.metadata.name,
                    round_number=int(task.round),
                    participants=json.loads(task.payload)["participants"], vector_length=size,
                )  # fmt: skip
                client = SecAggClient(config, name)
                message = client.advertise().to_bytes()
            elif task.kind == pb.Task.SECAGG_SHARE_KEYS and client is not None:
                message = client.share_keys(KeyAdverts.from_bytes(task.payload)).to_bytes()
            elif task.kind == pb.Task.TRAIN and client is not None:
                masked = client.masked_input(
                    MaskingRequest.from_bytes(task.payload), np.zeros(size, dtype=np.float32)
                )
                header = pb.UpdateHeader(session_id=session, round=task.round,
                                         base_version=task.model_version, num_samples=100,
                                         encoding=pb.MASKED)  # fmt: skip
                header.tensors.extend(pb.TensorInfo(name=n, shape=s) for n, s in layout)
                chunks = [pb.UpdateChunk(header=header), pb.UpdateChunk(data=masked.data)]
                stub.UploadUpdate(iter(chunks), timeout=30)
                tasks.cancel()  # gone before the unmasking step
                return
            else:
                continue
            stub.SubmitPrivacy(
                pb.PrivacyMessage(session_id=session, round=task.round, phase=task.kind,
                                  payload=message), timeout=10,
            )  # fmt: skip

    def guarded() -> None:
        with contextlib.suppress(grpc.RpcError):
            play()

    thread = threading.Thread(target=guarded, daemon=True, name=f"dropper-{name}")
    thread.start()
    return thread
