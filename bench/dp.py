"""Differential-privacy benchmark: local DP-SGD (Opacus) against non-private training.

Workload: one synthetic site (``fedcare.data.synthesize``, 250k rows, Parquet, cached under
``bench/.cache/dp/``), split 80/20 (200k training rows, 50k validation rows); the builtin MLP
with hidden units [64, 64]; Adam, learning rate 1e-3, batch 1024 (Poisson sample rate
1024 / 200k = 0.00512 under DP); 10 epochs, one epoch per "round" so the DP state composes
across rounds as it does in a job. DP: target epsilon 8 at delta 1e-5 over the 10 epochs
(the noise multiplier comes from Opacus' ``get_noise_multiplier`` with the RDP accountant),
maxGradNorm 1.0.

Arms, trained side by side from the same initial weights, one epoch of each in turn (so a
busy machine slows them alike):

- ``plain``: :func:`fedcare.training.train_local` (no privacy);
- ``dp-ghost``: :func:`fedcare.privacy.dp.local.train_local_dp` with ghost clipping;
- ``dp-hooks``: the same with per-sample gradient hooks;
- ``dp-opacus-loader``: Opacus' stock path for comparison: ``PrivacyEngine.make_private``
  (ghost clipping) over a DataLoader of a batched dataset (``__getitems__`` + identity
  collate), i.e. Opacus' ``DPDataLoader`` and its per-step O(n) Poisson sampler.

Reported per arm: median seconds per epoch (and the slowdown against ``plain``), validation
AUROC after the last epoch, and the epsilon spent. Also the cost of Poisson sampling alone
for one epoch: Opacus' sampler (one uniform number per row per step) against fedcare's
geometric-gap sampler. The load average is printed, since timings on a shared machine move
with it. Run: ``.venv/bin/python bench/dp.py`` (about a minute on 2 idle cores). The last
line of output is a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedcare.data import SYNTH_FEATURES, SYNTH_LABEL, load_site, synthesize
from fedcare.models import build_model, set_standardization
from fedcare.privacy.dp._opacus import quiet_opacus
from fedcare.privacy.dp.local import (
    DP_EPSILON,
    GradSampleMode,
    LocalDpState,
    poisson_batch,
    train_local_dp,
)
from fedcare.spec.job import DataSchema, DataSource, ModelName, ModelSpec, Task, TrainingSpec
from fedcare.spec.privacy import DifferentialPrivacySpec
from fedcare.training import evaluate, train_local

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE = BENCH_DIR / ".cache" / "dp"
TASK = Task.BINARY_CLASSIFICATION


@dataclass
class Arm:
    """One way of training: its per-epoch times, final AUROC and epsilon."""

    name: str
    epoch_s: list[float] = field(default_factory=list)
    auroc: float = math.nan
    epsilon: float | None = None


def load_data(cache: Path, rows: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Train/validation tensors of one synthetic site (generated once into ``cache``)."""
    path = cache / f"rows{rows}-seed{seed}" / "site-1.parquet"
    if not path.exists():
        synthesize(1, rows, path.parent, fmt="parquet", seed=seed)
    schema = DataSchema(features=list(SYNTH_FEATURES), label=SYNTH_LABEL)
    site = load_site(DataSource(path=str(path)), schema, seed=seed)
    return tuple(torch.from_numpy(a) for a in (site.x_train, site.y_train, site.x_val, site.y_val))


def fresh_model(x: torch.Tensor, seed: int) -> nn.Module:
    """The benchmark MLP, standardized on the training features."""
    model = build_model(
        ModelSpec(name=ModelName.MLP, hidden_units=[64, 64]), TASK, x.shape[1], seed
    )
    xs = x.cpu().numpy().astype(np.float64)
    set_standardization(model, xs.mean(axis=0), xs.std(axis=0))
    return model


class _Batched(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """Rows of ``(x, y)``, fetched a whole batch at a time through ``__getitems__``."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        t = torch.as_tensor(idx, dtype=torch.int64, device=self.x.device)
        return self.x.index_select(0, t), self.y.index_select(0, t)


def _identity(batch: Any) -> Any:  # noqa: ANN401 - DataLoader's collate contract
    return batch


def opacus_loader_arm(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    training: TrainingSpec,
    sigma: float,
    max_grad_norm: float,
) -> tuple[Callable[[], None], Callable[[float], float]]:
    """Opacus' stock pipeline; returns ``(train_one_epoch, epsilon(delta))``."""
    from opacus import PrivacyEngine  # type: ignore[import-untyped]

    loader = torch.utils.data.DataLoader(
        _Batched(x, y), batch_size=training.batch_size, collate_fn=_identity
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=training.learning_rate)
    with quiet_opacus():
        engine = PrivacyEngine(accountant="rdp")
        _, dp_opt, criterion, dp_loader = engine.make_private(
            module=model,
            optimizer=optimizer,
            criterion=nn.BCEWithLogitsLoss(),
            data_loader=loader,
            noise_multiplier=sigma,
            max_grad_norm=max_grad_norm,
            grad_sample_mode="ghost",
            wrap_model=False,
        )

    def epoch() -> None:
        model.train()
        with quiet_opacus():
            for xb, yb in dp_loader:
                dp_opt.zero_grad()
                loss = criterion(model(xb), yb)
                loss.backward()
                dp_opt.step()

    def epsilon(delta: float) -> float:
        with quiet_opacus():
            return float(engine.get_epsilon(delta))

    return epoch, epsilon


def sampling_cost(n: int, batch: int, repeats: int) -> tuple[float, float]:
    """Seconds to draw one epoch of Poisson batches: Opacus' way, and fedcare's."""
    q = batch / n
    steps = math.ceil(n / batch)
    gen = torch.Generator().manual_seed(0)
    opacus_s, fedcare_s = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            (torch.rand(n, generator=gen) < q).nonzero().reshape(-1).tolist()
        opacus_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(steps):
            poisson_batch(n, q, gen)
        fedcare_s.append(time.perf_counter() - t)
    return min(opacus_s), min(fedcare_s)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train every arm and return the summary."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    x, y, xv, yv = (t.to(device) for t in load_data(Path(args.cache), args.rows, args.seed))
    n = int(x.shape[0])
    training = TrainingSpec(batch_size=args.batch, epochs=1, learning_rate=args.lr)
    dp = DifferentialPrivacySpec.model_validate(
        {
            "mode": "local",
            "targetEpsilon": args.epsilon,
            "delta": args.delta,
            "maxGradNorm": args.max_grad_norm,
        }
    )
    t = time.perf_counter()
    state0 = LocalDpState.for_job(dp, training, n, rounds_total=args.epochs)
    calibrate_s = time.perf_counter() - t
    sigma = state0.noise_multiplier
    print(
        f"data: {n} training / {int(xv.shape[0])} validation rows, {x.shape[1]} features; "
        f"batch {args.batch} (q = {state0.sample_rate:.5f}), {args.epochs} epochs, "
        f"{args.threads} threads, {args.device}; "
        f"DP target epsilon {args.epsilon} at delta {args.delta}: "
        f"noise multiplier {sigma:.4f} (found in {calibrate_s:.2f} s), "
        f"maxGradNorm {args.max_grad_norm}",
        flush=True,
    )

    names = ["plain", "dp-ghost", "dp-hooks"] + (
        [] if args.skip_opacus_loader else ["dp-opacus-loader"]
    )
    arms = {name: Arm(name) for name in names}
    models = {name: fresh_model(x, args.seed).to(device) for name in names}
    states: dict[str, LocalDpState | None] = {"dp-ghost": None, "dp-hooks": None}
    loader_epoch, loader_eps = (None, None)
    if "dp-opacus-loader" in arms:
        loader_epoch, loader_eps = opacus_loader_arm(
            models["dp-opacus-loader"], x, y, training, sigma, args.max_grad_norm
        )

    loads = [os.getloadavg()[0]]
    for epoch in range(args.epochs):
        for name in names:
            model = models[name]
            t = time.perf_counter()
            if name == "plain":
                train_local(model, x, y, training, TASK, seed=args.seed + epoch)
            elif name == "dp-opacus-loader":
                assert loader_epoch is not None
                loader_epoch()
            else:
                mode: GradSampleMode = "ghost" if name == "dp-ghost" else "hooks"
                metrics, states[name] = train_local_dp(
                    model, x, y, training, TASK, args.seed + epoch, dp, args.epochs,
                    states[name], grad_sample_mode=mode,
                )  # fmt: skip
                arms[name].epsilon = metrics[DP_EPSILON]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            arms[name].epoch_s.append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
        row = "  ".join(f"{k} {arms[k].epoch_s[-1]:.2f}s" for k in names)
        print(f"epoch {epoch + 1}/{args.epochs}: {row}", flush=True)
    if loader_eps is not None:
        arms["dp-opacus-loader"].epsilon = loader_eps(args.delta)
    for name in names:
        arms[name].auroc = evaluate(models[name], xv, yv, TASK)["auroc"]

    opacus_sampling_s, fedcare_sampling_s = sampling_cost(n, args.batch, repeats=3)
    plain_s = statistics.median(arms["plain"].epoch_s)
    print()
    header = (
        f"{'arm':<18}{'s/epoch (median)':>18}{'min':>8}{'slowdown':>10}{'AUROC':>8}{'epsilon':>9}"
    )
    print(header)
    print("-" * len(header))
    summary_arms: dict[str, Any] = {}
    for name in names:
        arm = arms[name]
        med = statistics.median(arm.epoch_s)
        eps = "-" if arm.epsilon is None else f"{arm.epsilon:.3f}"
        print(
            f"{name:<18}{med:>18.3f}{min(arm.epoch_s):>8.3f}{med / plain_s:>9.2f}x"
            f"{arm.auroc:>8.4f}{eps:>9}"
        )
        summary_arms[name] = {
            "epochSecondsMedian": round(med, 4),
            "epochSecondsMin": round(min(arm.epoch_s), 4),
            "slowdown": round(med / plain_s, 3),
            "auroc": round(arm.auroc, 5),
            "epsilon": None if arm.epsilon is None else round(arm.epsilon, 4),
        }
    print(
        f"\nPoisson sampling alone, one epoch ({math.ceil(n / args.batch)} steps): Opacus' "
        f"sampler {opacus_sampling_s:.3f} s, fedcare's geometric gaps {fedcare_sampling_s:.4f} s"
    )
    print(f"load average (1 min) during the run: {min(loads):.2f} to {max(loads):.2f}")
    return {
        "bench": "dp",
        "rows": n,
        "validationRows": int(xv.shape[0]),
        "epochs": args.epochs,
        "batch": args.batch,
        "sampleRate": state0.sample_rate,
        "targetEpsilon": args.epsilon,
        "delta": args.delta,
        "noiseMultiplier": round(sigma, 5),
        "maxGradNorm": args.max_grad_norm,
        "threads": args.threads,
        "device": args.device,
        "arms": summary_arms,
        "samplingSecondsPerEpoch": {
            "opacus": round(opacus_sampling_s, 4),
            "fedcare": round(fedcare_sampling_s, 5),
        },
        "loadAverage": [round(min(loads), 2), round(max(loads), 2)],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=250_000, help="rows generated (80%% train)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epsilon", type=float, default=8.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default=str(DEFAULT_CACHE))
    parser.add_argument("--skip-opacus-loader", action="store_true")
    args = parser.parse_args(argv)
    summary = run(args)
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
