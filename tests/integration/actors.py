"""Test actors: a local job driven step by step, and hand-made gRPC clients (rogue or buggy)."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

from fedcare.local import LocalRun
from fedcare.pki import CertPair
from fedcare.spec import FederatedJob, FederatedJobStatus, TlsFiles, load_model
from fedcare.transport import make_mtls_channel
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc

SERVER_NAME = "fedcare-coordinator"


def start_job(manifest: Path, workdir: Path, capture_dir: Path | None = None) -> LocalRun:
    """Prepare a local run and start its coordinator (no trainers yet)."""
    job = load_model(FederatedJob, manifest)
    run = LocalRun(job=job, workdir=workdir, capture_dir=capture_dir)
    run.prepare()
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
