"""The Flower side of ``bench/compare_flower.py``: the same job in Flower's simulation (ray).

Runs with the Python of the separate Flower virtual environment (flwr 1.42 pins protobuf < 7,
which fedcare's grpcio-tools cannot use; see ``compare_flower.py --setup``), never with
fedcare's: ``bench/.cache/flower-venv/bin/python bench/flower_app.py PLAN.json``. It does not
import fedcare. ``PLAN.json`` (written by ``compare_flower.py``) names each site's CSV, its
training and validation rows (fedcare's own split), the features and label, the initial model
(fedcare's, as ``.npz``: ``input_mean``, ``input_std``, ``core.weight``, ``core.bias``) and the
training settings.

What runs: ``flwr.simulation.run_simulation`` with a ``ServerApp`` (FedAvg weighted by training
samples, every client fits and evaluates every round, ``rounds`` rounds) and a ``ClientApp``
whose ``NumPyClient`` trains the model exactly as fedcare's ``train_local`` does (standardize,
one linear layer, BCE on logits, a fresh fused Adam or SGD each round, ``epochs`` passes over
a ``torch.randperm`` seeded with ``seed + round``, ``batch`` rows per step) and evaluates it on
its validation rows (accuracy = logit >= 0); accuracy is averaged weighted by validation rows,
as fedcare's coordinator does. torch is imported by the clients only (the server needs none).

Prints timestamps while it runs and one JSON line at the end: per round the duration (fit
sent to evaluation aggregated, as fedcare's ``durationSeconds``), the federated loss and
accuracy, and when the phases began (epoch seconds).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import flwr  # type: ignore[import-not-found,unused-ignore]
import numpy as np
from flwr.client import Client, ClientApp, NumPyClient  # type: ignore[import-not-found,unused-ignore]
from flwr.common import (  # type: ignore[import-not-found,unused-ignore]
    Context,
    EvaluateRes,
    FitIns,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
)
from flwr.server import (  # type: ignore[import-not-found,unused-ignore]
    ServerApp,
    ServerAppComponents,
    ServerConfig,
)
from flwr.server.client_manager import ClientManager  # type: ignore[import-not-found,unused-ignore]
from flwr.server.client_proxy import ClientProxy  # type: ignore[import-not-found,unused-ignore]
from flwr.server.strategy import FedAvg  # type: ignore[import-not-found,unused-ignore]
from flwr.simulation import run_simulation  # type: ignore[import-not-found,unused-ignore]

if TYPE_CHECKING:
    import torch

T_IMPORTED = time.time()
Arrays = list[np.ndarray]


def _plan() -> dict[str, Any]:
    if len(sys.argv) != 2:
        sys.exit("usage: flower_app.py PLAN.json")
    plan: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    return plan


PLAN = _plan()
KEYS: list[str] = PLAN["state_keys"]


def _initial() -> Arrays:
    with np.load(PLAN["initial_npz"]) as npz:
        return [np.asarray(npz[k], dtype=np.float32) for k in KEYS]


# ----------------------------------------------------------------------------- client side
Site = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor", "torch.Tensor"]
_SITES: dict[int, Site] = {}  # per actor process: partition id -> tensors, loaded once


def _site(pid: int) -> Site:
    """(x_train, y_train, x_val, y_val) of site ``pid`` as float32 tensors (cached)."""
    if pid not in _SITES:
        import torch

        torch.set_num_threads(int(PLAN["threads"]))
        site = PLAN["sites"][pid]
        with Path(site["path"]).open() as f:
            header = f.readline().strip().split(",")
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
        cols = [header.index(f) for f in PLAN["features"]]
        x = table[:, cols].astype(np.float32)
        y = table[:, header.index(PLAN["label"])].astype(np.float32)
        train, val = np.asarray(site["train"]), np.asarray(site["val"])
        xt, yt, xv, yv = (
            torch.from_numpy(np.ascontiguousarray(a)) for a in (x[train], y[train], x[val], y[val])
        )
        _SITES[pid] = (xt, yt, xv, yv)
    return _SITES[pid]


def _model(weights: Arrays) -> torch.nn.Module:
    """The model as fedcare builds it (``Standardized(Linear)``) holding ``weights``."""
    import torch
    from torch import nn

    class Standardized(nn.Module):
        input_mean: torch.Tensor
        input_std: torch.Tensor

        def __init__(self, n: int) -> None:
            super().__init__()
            self.register_buffer("input_mean", torch.zeros(n))
            self.register_buffer("input_std", torch.ones(n))
            self.core = nn.Linear(n, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.core((x - self.input_mean) / self.input_std)
            return out.squeeze(1)

    model = Standardized(len(PLAN["features"]))
    model.load_state_dict(
        {k: torch.from_numpy(np.array(w)) for k, w in zip(KEYS, weights, strict=True)},
        strict=True,
    )
    return model


def _weights(model: torch.nn.Module) -> Arrays:
    state = model.state_dict()
    return [state[k].detach().cpu().numpy().copy() for k in KEYS]


def _optimizer(model: torch.nn.Module) -> torch.optim.Optimizer:
    import torch

    t = PLAN["training"]
    params = list(model.parameters())
    if t["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=t["learning_rate"], fused=True)
    return torch.optim.Adam(params, lr=t["learning_rate"], fused=True)


class SiteClient(NumPyClient):  # type: ignore[misc]
    """One site: local training as fedcare's ``train_local``, evaluation as its ``evaluate``."""

    def __init__(self, pid: int) -> None:
        """Client for partition ``pid`` (site ``pid + 1``)."""
        self.pid = pid

    def fit(self, parameters: Arrays, config: dict[str, Any]) -> tuple[Arrays, int, dict[str, Any]]:
        """``epochs`` passes of mini-batch training from ``parameters``."""
        import torch
        from torch.nn import functional

        x, y, _, _ = _site(self.pid)
        model = _model(parameters)
        t = PLAN["training"]
        n = int(x.shape[0])
        batch = min(int(t["batch_size"]), n)
        per_pass = math.ceil(n / batch)
        optimizer = _optimizer(model)
        generator = torch.Generator().manual_seed(int(t["seed"]) + int(config["round"]))
        model.train()
        loss_sum = 0.0
        for _ in range(int(t["epochs"])):
            perm = torch.randperm(n, generator=generator)
            loss_sum = 0.0
            for b in range(per_pass):
                idx = perm[b * batch : (b + 1) * batch]
                optimizer.zero_grad(set_to_none=True)
                loss = functional.binary_cross_entropy_with_logits(
                    model(x.index_select(0, idx)), y.index_select(0, idx)
                )
                torch.autograd.backward(loss)
                optimizer.step()
                loss_sum += float(loss.detach()) * int(idx.numel())
        return _weights(model), n, {"loss": loss_sum / n}

    def evaluate(
        self, parameters: Arrays, config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        """BCE and accuracy (logit >= 0) on this site's validation rows."""
        import torch
        from torch.nn import functional

        _, _, x, y = _site(self.pid)
        model = _model(parameters)
        model.eval()
        with torch.no_grad():
            logits = model(x)
            loss = float(functional.binary_cross_entropy_with_logits(logits, y))
        acc = float(((logits >= 0).to(torch.float32) == y).to(torch.float64).mean())
        return loss, int(x.shape[0]), {"accuracy": acc}


def client_fn(context: Context) -> Client:
    """The ``ClientApp``'s factory: site ``partition-id``."""
    return SiteClient(int(context.node_config["partition-id"])).to_client()


# ----------------------------------------------------------------------------- server side
def _weighted(metrics: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Sample-weighted mean of every metric (fedcare's coordinator does the same)."""
    total = sum(n for n, _ in metrics)
    keys = sorted({k for _, m in metrics for k in m})
    return {k: sum(n * float(m[k]) for n, m in metrics if k in m) / total for k in keys}


ROUNDS: list[dict[str, Any]] = []
MARKS: dict[str, float] = {}


class TimedFedAvg(FedAvg):  # type: ignore[misc]
    """FedAvg that records when each round's fit starts and its evaluation is aggregated."""

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        """Round start: the fit instructions go out."""
        now = time.time()
        MARKS.setdefault("first_fit", now)
        ROUNDS.append({"round": server_round, "start": now})
        print(f"flower: round {server_round} starts at {now:.3f}", flush=True)
        fit: list[tuple[ClientProxy, FitIns]] = super().configure_fit(
            server_round, parameters, client_manager
        )
        return fit

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        """Round end: the federated evaluation is aggregated."""
        loss, metrics = super().aggregate_evaluate(server_round, results, failures)
        now = time.time()
        rec = ROUNDS[-1]
        rec.update(
            duration_s=now - rec["start"],
            end=now,
            loss=loss,
            accuracy=metrics.get("accuracy"),
            clients=len(results),
            failures=len(failures),
        )
        print(
            f"flower: round {server_round} done in {rec['duration_s']:.2f} s, "
            f"accuracy {rec['accuracy']:.4f}",
            flush=True,
        )
        return loss, metrics


def server_fn(context: Context) -> ServerAppComponents:
    """The ``ServerApp``'s components: timed FedAvg over every client, ``rounds`` rounds."""
    n = len(PLAN["sites"])
    strategy = TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=1.0,
        min_fit_clients=n,
        min_evaluate_clients=n,
        min_available_clients=n,
        accept_failures=False,
        initial_parameters=ndarrays_to_parameters(_initial()),
        on_fit_config_fn=lambda r: {"round": r},
        fit_metrics_aggregation_fn=_weighted,
        evaluate_metrics_aggregation_fn=_weighted,
    )
    return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=PLAN["rounds"]))


def main() -> int:
    """Run the simulation; print the JSON summary last."""
    print(f"flower: flwr {flwr.__version__} imported at {T_IMPORTED:.3f}", flush=True)
    backend: dict[str, Any] = {"init_args": {"num_cpus": os.cpu_count() or 1}}
    if PLAN.get("client_cpus"):
        backend["client_resources"] = {"num_cpus": PLAN["client_cpus"], "num_gpus": 0.0}
    t_sim = time.time()
    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=len(PLAN["sites"]),
        backend_name="ray",
        backend_config=backend,
    )
    t_end = time.time()
    done = [r for r in ROUNDS if "duration_s" in r]
    out = {
        "flwr": flwr.__version__,
        "client_cpus": PLAN.get("client_cpus") or "flower default (2)",
        "imported": T_IMPORTED,
        "simulation_start": t_sim,
        "first_fit": MARKS.get("first_fit"),
        "end": t_end,
        "rounds": done,
        "final_accuracy": done[-1]["accuracy"] if done else None,
        "complete": len(done) == PLAN["rounds"] and all(r["failures"] == 0 for r in done),
    }
    print(json.dumps(out), flush=True)
    return 0 if out["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
