"""Byzantine robustness end to end: one of five sites sends a scaled, sign-flipped update.

Five sites hold scikit-learn's breast-cancer data split five ways. In the attacked runs the
fifth site is a hand-written gRPC client with a real participant certificate: every round it
trains honestly with :func:`fedcare.training.train_local`, then uploads ``-10 x`` its delta
(it evaluates honestly, so every run's federated metrics cover the same five validation
splits). FedAvg is dragged off by that one site; trimmed mean and Krum are not: their final
AUROC stays within 0.02 of the clean run's.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from fedcare.data import load_site
from fedcare.local import LocalRun
from fedcare.models import build_model
from fedcare.repository import from_safetensors_bytes
from fedcare.spec import FederatedJob, Phase, load_model
from fedcare.spec.job import DataSource
from fedcare.training import evaluate, train_local
from fedcare.transport import flatten
from fedcare.transport._generated import coordinator_pb2 as pb
from tests.integration.actors import stub_for, update_stream
from tests.integration.conftest import BC_FEATURES

# Part of the default run (about a minute): the issue asks for it to pass on every change.

SITES = 5
ROUNDS = 5
MALLORY = "hospital-e"
#: What the attacker multiplies its honest delta by: sign-flipped and scaled.
ATTACK_SCALE = -10.0
TOLERANCE = 0.02


@pytest.fixture(scope="module")
def five_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Breast-cancer data split into five sites (CSV), label 1 = malignant."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    order = np.random.default_rng(11).permutation(len(y))
    out = tmp_path_factory.mktemp("bc5")
    paths = []
    for i, part in enumerate(np.array_split(order, SITES)):
        path = out / f"site-{i + 1}.csv"
        rows = np.column_stack([x[part], 1 - y[part]])
        header = ",".join([*BC_FEATURES, "malignant"])
        np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.6g")
        paths.append(path)
    return paths


def _manifest(where: Path, sites: list[Path], strategy: dict[str, Any]) -> Path:
    doc: dict[str, Any] = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "byz"},
        "spec": {
            "task": "binary-classification",
            "model": {"name": "logistic-regression"},
            "data": {"features": BC_FEATURES, "label": "malignant"},
            "rounds": ROUNDS,
            "minParticipants": SITES,
            "joinTimeoutSeconds": 90,
            "roundTimeoutSeconds": 90,
            "training": {"epochs": 5, "batchSize": 32, "optimizer": "adam", "learningRate": 0.05},
            "strategy": strategy,
            "repository": {"uri": f"file://{where / 'models'}"},
            "participants": [
                {"name": f"hospital-{chr(ord('a') + i)}", "data": {"path": str(p)}}
                for i, p in enumerate(sites)
            ],
        },
    }
    where.mkdir(parents=True, exist_ok=True)
    path = where / "job.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class SignFlipper:
    """A participant that trains honestly, then uploads ``scale x`` its delta every round."""

    def __init__(self, run: LocalRun, name: str, data: Path, scale: float) -> None:
        self.run, self.name, self.scale = run, name, scale
        self.spec = run.job.spec
        self.site = load_site(DataSource(path=str(data)), self.spec.data, self.spec.training.seed)
        self.model = build_model(
            self.spec.model, self.spec.task, len(self.spec.data.features), self.spec.training.seed
        )
        self.x_train = torch.from_numpy(self.site.x_train)
        self.y_train = torch.from_numpy(self.site.y_train)
        self.x_val = torch.from_numpy(self.site.x_val)
        self.y_val = torch.from_numpy(self.site.y_val)
        self.errors: list[BaseException] = []
        self.rounds_attacked = 0
        self.thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        """Join the job and follow its tasks in a background thread."""
        self.thread.start()

    def _main(self) -> None:
        try:
            self._follow()
        except BaseException as err:  # noqa: BLE001 - reported by the test
            self.errors.append(err)

    def _follow(self) -> None:
        stub = stub_for(self.run, self.run.client_certs[self.name])
        x = self.site.x_train.astype(np.float64)
        joined = stub.Join(
            pb.JoinRequest(
                train_samples=len(self.site.y_train),
                validation_samples=len(self.site.y_val),
                feature_sum=x.sum(axis=0).tolist(),
                feature_sum_sq=(x * x).sum(axis=0).tolist(),
            ),
            timeout=30,
        )
        session = joined.session_id
        for task in stub.Tasks(pb.TasksRequest(session_id=session)):
            if task.kind == pb.Task.DONE:
                return
            payload = b"".join(
                c.data
                for c in stub.DownloadModel(
                    pb.ModelRequest(session_id=session, model_version=task.model_version)
                )
            )
            weights = from_safetensors_bytes(payload)
            self.model.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
            if task.kind == pb.Task.TRAIN:
                layout, base = flatten(weights)  # canonical (sorted-name) order
                train_local(
                    self.model,
                    self.x_train,
                    self.y_train,
                    self.spec.training,
                    self.spec.task,
                    seed=self.spec.training.seed + int(task.round),
                )
                state = {k: v.detach().numpy() for k, v in self.model.state_dict().items()}
                _, local = flatten(state)
                evil = np.float32(self.scale) * (local - base)
                stub.UploadUpdate(
                    update_stream(
                        session,
                        task,
                        [(n, list(s)) for n, s in layout],
                        evil,
                        samples=len(self.site.y_train),
                    ),
                    timeout=60,
                )
                self.rounds_attacked += 1
            elif task.kind == pb.Task.EVALUATE:
                metrics = evaluate(self.model, self.x_val, self.y_val, self.spec.task)
                stub.ReportEvaluation(
                    pb.EvaluationReport(
                        session_id=session,
                        round=task.round,
                        model_version=task.model_version,
                        num_samples=len(self.site.y_val),
                        metrics={k: float(v) for k, v in metrics.items() if np.isfinite(v)},
                    ),
                    timeout=30,
                )


def _final_auroc(where: Path, sites: list[Path], strategy: dict[str, Any], attacked: bool) -> float:
    """Run the job (the last site malicious when ``attacked``); the final federated AUROC."""
    job = load_model(FederatedJob, _manifest(where, sites, strategy))
    run = LocalRun(job=job, workdir=where / "work")
    run.prepare()
    attacker: SignFlipper | None = None
    try:
        run.start_coordinator()
        for p in job.spec.participants:
            if attacked and p.name == MALLORY:
                attacker = SignFlipper(run, p.name, Path(p.data.path), ATTACK_SCALE)
                attacker.start()
            else:
                run.start_trainer(p)
        final = run.follow()
        assert final.phase is Phase.SUCCEEDED, final.message
        assert [r.participants for r in final.rounds] == [SITES] * ROUNDS
        if attacker is not None:
            attacker.thread.join(timeout=30)
            assert not attacker.errors, attacker.errors
            assert attacker.rounds_attacked == ROUNDS
        return final.rounds[-1].metrics["auroc"]
    finally:
        run.stop()


@pytest.fixture(scope="module")
def clean_auroc(five_sites: list[Path], tmp_path_factory: pytest.TempPathFactory) -> float:
    """Final AUROC of FedAvg with five honest sites."""
    auroc = _final_auroc(tmp_path_factory.mktemp("clean"), five_sites, {"name": "fedavg"}, False)
    assert auroc >= 0.95
    return auroc


def test_fedavg_is_dragged_off_by_one_sign_flipper(
    clean_auroc: float, five_sites: list[Path], tmp_path: Path
) -> None:
    attacked = _final_auroc(tmp_path, five_sites, {"name": "fedavg"}, True)
    print(f"fedavg: clean AUROC {clean_auroc:.4f}, attacked {attacked:.4f}")
    assert attacked < clean_auroc - TOLERANCE


@pytest.mark.parametrize(
    "strategy",
    [
        {"name": "trimmed-mean", "trimFraction": 0.2},
        {"name": "krum", "byzantine": 1},
    ],
    ids=["trimmed-mean", "krum"],
)
def test_robust_strategy_holds_against_one_sign_flipper(
    strategy: dict[str, Any], clean_auroc: float, five_sites: list[Path], tmp_path: Path
) -> None:
    attacked = _final_auroc(tmp_path, five_sites, strategy, True)
    print(f"{strategy['name']}: clean AUROC {clean_auroc:.4f}, attacked {attacked:.4f}")
    assert attacked >= clean_auroc - TOLERANCE
