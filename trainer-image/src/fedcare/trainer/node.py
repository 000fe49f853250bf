"""A participant node: joins the coordinator, trains and evaluates locally, sends updates.

Only model parameters, sample counts, aggregate feature statistics and metrics leave this
process; the site's records never do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import grpc
import numpy as np

import fedcare
from fedcare.data import SiteData, load_site
from fedcare.errors import FedcareError, SpecError
from fedcare.privacy.secagg import (
    KeyAdverts,
    MaskingRequest,
    SecAggClient,
    SecAggConfig,
    SecAggRefused,
    UnmaskRequest,
)
from fedcare.spec import (
    DpMode,
    FederatedJobSpec,
    SecureAggregationMode,
    TrainerConfig,
    load_model,
)
from fedcare.trainer.channel import ConnectTimeout, download, update_messages, with_retry
from fedcare.transport import flatten, layout_of, make_mtls_channel
from fedcare.transport._generated import coordinator_pb2 as pb
from fedcare.transport._generated import coordinator_pb2_grpc as pb_grpc
from fedcare.transport.tensors import unframe

if TYPE_CHECKING:
    from fedcare.privacy.ckks import TensealContext
    from fedcare.privacy.dp.local import LocalDpState

log = logging.getLogger("fedcare.trainer")

#: Exit codes of ``fedcare trainer``.
EXIT_OK, EXIT_ERROR, EXIT_REFUSED, EXIT_JOB_FAILED, EXIT_REPLACED, EXIT_BUDGET = 0, 1, 2, 3, 4, 5

_PRIVACY_STEPS = frozenset(
    {pb.Task.SECAGG_ADVERTISE, pb.Task.SECAGG_SHARE_KEYS, pb.Task.SECAGG_UNMASK}
)


class ParticipantNode:
    """One site's trainer. ``ParticipantNode(config_path=...).join_network()`` runs it."""

    def __init__(
        self, config_path: str | Path | None = None, config: TrainerConfig | None = None
    ) -> None:
        if config is None:
            if config_path is None:
                raise ValueError("pass config_path or config")
            config = load_model(TrainerConfig, config_path)
        self.config = config
        self.name = config.participant
        self._channel = make_mtls_channel(config.coordinator, config.tls, config.server_name)
        self._stub = pb_grpc.CoordinatorStub(self._channel)  # type: ignore[no-untyped-call]

    # -------------------------------------------------------------- set-up
    def _setup(self) -> None:
        import torch

        from fedcare.models import build_model

        cfg = self.config
        desc = with_retry(
            lambda: self._stub.DescribeJob(pb.DescribeJobRequest(), timeout=10),
            cfg.connect_timeout_seconds,
            "describe job",
        )
        self.spec = FederatedJobSpec.model_validate_json(desc.job_spec_json)
        self.site: SiteData = load_site(cfg.data, self.spec.data, seed=self.spec.training.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        want = cfg.device
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(want)
        n_features = len(self.spec.data.features)
        self.model = build_model(
            self.spec.model, self.spec.task, n_features, seed=self.spec.training.seed
        ).to(self.device)
        # The first optimizer a process builds imports torch._dynamo (about 1 CPU-second):
        # pay it at start-up, not inside round 1 (measured in bench/round.py).
        from fedcare.training import make_optimizer

        make_optimizer(self.model.parameters(), self.spec.training)
        #: values in the flat update vector (the secure-aggregation vector length)
        self.model_size = sum(int(v.numel()) for v in self.model.state_dict().values())
        self.job_name = self.config.job
        self._secagg: SecAggClient | None = None
        self._dp_state: LocalDpState | None = None
        self._layout = layout_of(self._state())
        self._ckks: TensealContext | None = None
        if self.spec.privacy.secure_aggregation.mode is SecureAggregationMode.CKKS:
            from fedcare.privacy.ckks import load_context

            if not cfg.ckks_context:
                raise SpecError("the job uses CKKS secure aggregation: ckksContext is required")
            self._ckks = load_context(Path(cfg.ckks_context).read_bytes())
        s = self.site
        self.x_train = torch.from_numpy(s.x_train).to(self.device)
        self.y_train = torch.from_numpy(s.y_train).to(self.device)
        self.x_val = torch.from_numpy(s.x_val).to(self.device)
        self.y_val = torch.from_numpy(s.y_val).to(self.device)
        log.info(
            "%s: %d training and %d validation rows on %s",
            self.name,
            len(s.y_train),
            len(s.y_val),
            self.device,
        )

    def _join(self) -> str:
        x = self.site.x_train
        # Accumulated in float64 without a float64 copy of the table (bench/RESULTS.md).
        request = pb.JoinRequest(
            train_samples=len(self.site.y_train),
            validation_samples=len(self.site.y_val),
            client_version=fedcare.__version__,
            feature_sum=x.sum(axis=0, dtype=np.float64).tolist(),
            feature_sum_sq=np.einsum("ij,ij->j", x, x, dtype=np.float64).tolist(),
        )
        resp = with_retry(
            lambda: self._stub.Join(request, timeout=30),
            self.config.connect_timeout_seconds,
            "join",
        )
        self.job_name = str(resp.job)
        log.info("%s joined job %s (session %s)", self.name, resp.job, resp.session_id[:8])
        return str(resp.session_id)

    # -------------------------------------------------------------- tasks
    def _load(self, session_id: str, version: str) -> None:
        import torch

        weights = download(self._stub, session_id, version)
        state = {k: torch.from_numpy(v) for k, v in weights.items()}
        self.model.load_state_dict(state, strict=True)

    def _state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

    def _train(self, session_id: str, task: pb.Task) -> int | None:
        """Train one round and upload; returns an exit code when the site must leave."""
        from fedcare.training import train_local

        self._load(session_id, task.model_version)
        layout, base = flatten(self._state())
        started = time.monotonic()
        seed = self.spec.training.seed + int(task.round)
        epsilon = 0.0
        if self.spec.privacy.dp.mode is DpMode.LOCAL:
            spent = self._spend_budget(int(task.round))
            if spent is not None:
                self._leave(session_id, "PrivacyBudgetExhausted", spent)
                return EXIT_BUDGET
            from fedcare.privacy.dp.local import DP_EPSILON, DP_EPSILON_ROUND, train_local_dp

            metrics, self._dp_state = train_local_dp(
                self.model, self.x_train, self.y_train, self.spec.training, self.spec.task,
                seed, self.spec.privacy.dp, self.spec.rounds, self._dp_state,
                proximal_mu=self.spec.strategy.proximal_mu,
            )  # fmt: skip
            epsilon = metrics.pop(DP_EPSILON)
            metrics.pop(DP_EPSILON_ROUND, None)
        else:
            metrics = train_local(
                self.model,
                self.x_train,
                self.y_train,
                self.spec.training,
                self.spec.task,
                seed=seed,
                proximal_mu=self.spec.strategy.proximal_mu,
            )
        _, local = flatten(self._state())
        delta = np.subtract(local, base, dtype=np.float32)
        header = pb.UpdateHeader(
            session_id=session_id,
            round=task.round,
            base_version=task.model_version,
            num_samples=len(self.site.y_train),
            train_metrics=metrics,
            epsilon=epsilon,
        )
        payload: np.ndarray | bytes | Iterator[bytes] = delta
        if self._ckks is not None:  # CKKS: only ciphertexts of the weighted delta leave
            from fedcare.privacy.ckks import encrypt_to_chunks

            payload = encrypt_to_chunks(self._ckks, task.weight * delta)
            header.encoding = pb.CKKS
        elif task.payload:  # secure aggregation: only the masked, weighted delta leaves the site
            if self._secagg is None:
                log.warning("%s: round %d: no secure-aggregation state", self.name, task.round)
                return None
            request = MaskingRequest.from_bytes(task.payload)
            payload = self._secagg.masked_input(request, task.weight * delta).data
            header.encoding = pb.MASKED
        try:
            ack = self._stub.UploadUpdate(update_messages(header, layout, payload), timeout=600)
            log.info(
                "%s: round %d trained in %.2fs; %s",
                self.name,
                task.round,
                time.monotonic() - started,
                ack.detail,
            )
        except grpc.RpcError as err:
            if err.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}:
                raise
            log.warning(
                "%s: round %d update refused: %s: %s",
                self.name,
                task.round,
                err.code().name,
                err.details(),
            )
        return None

    def _evaluate(self, session_id: str, task: pb.Task) -> None:
        from fedcare.training import evaluate

        self._load(session_id, task.model_version)
        metrics = evaluate(self.model, self.x_val, self.y_val, self.spec.task)
        clean = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        report = pb.EvaluationReport(
            session_id=session_id,
            round=task.round,
            model_version=task.model_version,
            num_samples=len(self.site.y_val),
            metrics=clean,
        )
        try:
            self._stub.ReportEvaluation(report, timeout=60)
        except grpc.RpcError as err:
            if err.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}:
                raise
            log.warning("%s: evaluation refused: %s", self.name, err.details())

    def _decrypt(self, session_id: str, task: pb.Task) -> None:
        """CKKS: decrypt the round's encrypted aggregate and send the (rounded) sum back."""
        from fedcare.privacy.ckks import CkksError, decrypt_vector

        if self._ckks is None:
            log.warning("%s: asked to decrypt without a CKKS context", self.name)
            return
        data = b"".join(
            c.data
            for c in self._stub.DownloadModel(
                pb.ModelRequest(session_id=session_id, model_version=task.payload.decode())
            )
        )
        try:
            total = decrypt_vector(self._ckks, unframe(data), length=self.model_size)
        except (CkksError, ValueError) as err:
            log.warning("%s: cannot decrypt the aggregate: %s", self.name, err)
            return
        header = pb.UpdateHeader(
            session_id=session_id, round=task.round, encoding=pb.DECRYPTED_AGGREGATE
        )
        self._stub.UploadUpdate(update_messages(header, self._layout, total), timeout=600)

    def _spend_budget(self, round_number: int) -> str | None:
        """Local DP: charge the next round to the site's ledger before training it.

        Returns why the round cannot be trained (the budget would be exceeded), else None.
        """
        from fedcare.privacy.dp import BudgetExhausted, BudgetLedger, ledger_path_for
        from fedcare.privacy.dp.local import LocalDpState, reserve_round

        if self._dp_state is None:
            self._dp_state = LocalDpState.for_job(
                self.spec.privacy.dp, self.spec.training, len(self.site.y_train), self.spec.rounds
            )
        ledger = BudgetLedger(ledger_path_for(self.config.data.path))
        budget = self.config.privacy_budget
        if budget is None:  # no budget set: still keep the site's record of what it spent
            state = self._dp_state
            ledger.record(self.job_name, round_number, state.next_round_cost(), state.delta)
            return None
        try:
            reserve_round(self._dp_state, ledger, budget, self.job_name, round_number)
        except BudgetExhausted as err:
            return str(err)
        return None

    def _leave(self, session_id: str, reason: str, message: str) -> None:
        """Tell the coordinator this site leaves the job for good, and why."""
        eps = self._dp_state.epsilon() if self._dp_state is not None else 0.0
        log.error("%s: leaving the job: %s", self.name, message)
        request = pb.LeaveRequest(
            session_id=session_id, reason=reason, message=message, epsilon=eps
        )
        with contextlib.suppress(grpc.RpcError):
            self._stub.Leave(request, timeout=30)

    def _privacy_step(self, session_id: str, task: pb.Task) -> None:
        """Answer a secure-aggregation step (masking) of the current round."""
        try:
            if task.kind == pb.Task.SECAGG_ADVERTISE:
                names = json.loads(task.payload)["participants"]
                config = SecAggConfig.from_spec(
                    self.spec.privacy.secure_aggregation,
                    job_id=self.job_name,
                    round_number=int(task.round),
                    participants=names,
                    vector_length=self.model_size,
                )
                self._secagg = SecAggClient(config, self.name)
                message: bytes = self._secagg.advertise().to_bytes()
            elif self._secagg is None:
                log.warning("%s: secure-aggregation step out of order", self.name)
                return
            elif task.kind == pb.Task.SECAGG_SHARE_KEYS:
                message = self._secagg.share_keys(KeyAdverts.from_bytes(task.payload)).to_bytes()
            else:
                message = self._secagg.unmask(UnmaskRequest.from_bytes(task.payload)).to_bytes()
                self._secagg = None
        except (SecAggRefused, ValueError, KeyError) as err:
            log.warning("%s: secure-aggregation step refused: %s", self.name, err)
            return
        request = pb.PrivacyMessage(
            session_id=session_id, round=task.round, phase=task.kind, payload=message
        )
        try:
            self._stub.SubmitPrivacy(request, timeout=60)
        except grpc.RpcError as err:
            if err.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}:
                raise
            log.warning("%s: secure-aggregation message refused: %s", self.name, err.details())

    def _session(self) -> int | None:
        """One session: join, follow tasks. Returns an exit code, or None to reconnect."""
        session_id = self._join()
        for task in self._stub.Tasks(pb.TasksRequest(session_id=session_id)):
            if task.kind == pb.Task.TRAIN:
                code = self._train(session_id, task)
                if code is not None:
                    return code
            elif task.kind == pb.Task.EVALUATE:
                self._evaluate(session_id, task)
            elif task.kind == pb.Task.DECRYPT_AGGREGATE:
                self._decrypt(session_id, task)
            elif task.kind in _PRIVACY_STEPS:
                self._privacy_step(session_id, task)
            elif task.kind == pb.Task.DONE:
                log.info("%s: job ended: %s", self.name, task.message)
                return EXIT_OK if task.succeeded else EXIT_JOB_FAILED
        return None

    def join_network(self) -> int:
        """Run until the job ends; returns the process exit code."""
        try:
            self._setup()
            while True:
                try:
                    code = self._session()
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.ABORTED:
                        log.error("%s: %s", self.name, err.details())
                        return EXIT_REPLACED
                    if err.code() not in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}:
                        raise
                    code = None
                if code is not None:
                    return code
                # The stream broke without DONE: the coordinator restarted or the network
                # dropped. Join again (with_retry gives up after connect_timeout_seconds).
                log.info("%s: lost the coordinator; reconnecting", self.name)
                time.sleep(0.5)
        except ConnectTimeout as err:
            log.error("%s: %s", self.name, err)
            return EXIT_ERROR
        except grpc.RpcError as err:
            log.error(
                "%s: refused by the coordinator: %s: %s", self.name, err.code().name, err.details()
            )
            return EXIT_REFUSED
        except FedcareError as err:
            log.error("%s: %s", self.name, err)
            return EXIT_ERROR
        finally:
            self._channel.close()
