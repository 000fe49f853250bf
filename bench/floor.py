"""The no-framework floor of the round benchmark: the same training in plain torch.

Each round, every site's data gets one epoch of the same network (standardize, MLP 64-64,
Adam, batch 4096, rows sliced from a random permutation with ``index_select``) and one forward
pass over its validation rows, like a fedcare round minus everything federated (no processes
per site, no gRPC, no TLS, no aggregation, no metrics). The sites are split over one worker
process per CPU, one torch thread each, started together at a barrier; a round's time is the
slowest worker's. This is the "limit" of pitfalls.md, measured on the same data and machine so
that fedcare's figures can be read against it.

Run alone: ``.venv/bin/python bench/floor.py --data bench/.cache/synth-10x1000000-seed0-parquet``
(``bench/round.py`` runs it after the federated run unless ``--no-floor``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq  # type: ignore[import-untyped,unused-ignore]
import torch
from torch import nn

EVAL_BATCH = 65536


Site = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def _load(path: Path, features: Sequence[str], label: str, val_fraction: float, seed: int) -> Site:
    """(x_train, y_train, x_val, y_val) float32 tensors of one site's Parquet file."""
    table = pq.read_table(path, columns=[*features, label])
    x = np.column_stack([table.column(f).to_numpy().astype(np.float32) for f in features])
    y = table.column(label).to_numpy().astype(np.float32)
    perm = np.random.default_rng(seed).permutation(len(y))
    n_val = round(len(y) * val_fraction)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return (
        torch.from_numpy(np.ascontiguousarray(x[train])),
        torch.from_numpy(y[train]),
        torch.from_numpy(np.ascontiguousarray(x[val])),
        torch.from_numpy(y[val]),
    )


def _worker(
    paths: list[str],
    features: list[str],
    label: str,
    rounds: int,
    batch: int,
    lr: float,
    val_fraction: float,
    barrier: Barrier,
    out: Queue[list[float]],
) -> None:
    """Train ``rounds`` rounds over ``paths``; puts the list of per-round seconds on ``out``."""
    torch.set_num_threads(1)
    sites = [_load(Path(p), features, label, val_fraction, k) for k, p in enumerate(paths)]
    models = []
    for x, _, _, _ in sites:
        mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
        torch.manual_seed(0)
        core = nn.Sequential(
            nn.Linear(x.shape[1], 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1)
        )
        models.append((core, mean, std))
    # warm-up outside the timed rounds (first optimizer import, first backward)
    torch.optim.Adam(models[0][0].parameters(), lr=lr)
    times: list[float] = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(rounds):
        barrier.wait()
        start = time.perf_counter()
        for (x, y, xv, _), (core, mean, std) in zip(sites, models, strict=True):
            opt = torch.optim.Adam(core.parameters(), lr=lr, fused=True)
            perm = torch.randperm(x.shape[0], generator=generator)
            for b in range(0, x.shape[0], batch):
                idx = perm[b : b + batch]
                opt.zero_grad(set_to_none=True)
                out_b = core((x.index_select(0, idx) - mean) / std).squeeze(1)
                loss = nn.functional.binary_cross_entropy_with_logits(out_b, y.index_select(0, idx))
                torch.autograd.backward(loss)
                opt.step()
            with torch.no_grad():
                for i in range(0, xv.shape[0], EVAL_BATCH):
                    core((xv[i : i + EVAL_BATCH] - mean) / std)
        times.append(time.perf_counter() - start)
    out.put(times)


def measure_floor(
    data: Sequence[Path],
    features: Sequence[str],
    label: str,
    rounds: int = 3,
    batch: int = 4096,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    workers: int | None = None,
) -> list[float]:
    """Per-round wall seconds of the plain-torch floor over ``data`` (see the module doc)."""
    n = max(1, min(workers or os.cpu_count() or 1, len(data)))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(n)
    out: Queue[list[float]] = ctx.Queue()
    shards = [[str(p) for p in data[k::n]] for k in range(n)]
    procs = [
        ctx.Process(
            target=_worker,
            args=(shard, list(features), label, rounds, batch, lr, val_fraction, barrier, out),
        )
        for shard in shards
    ]
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return [max(r[i] for r in results) for i in range(rounds)]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure the floor for the Parquet files in ``--data``; prints one JSON line."""
    from fedcare.data.synth import SYNTH_FEATURES, SYNTH_LABEL

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of site-*.parquet")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="default: one per CPU")
    args = parser.parse_args(argv)
    paths = sorted(args.data.glob("site-*.parquet"), key=lambda p: int(p.stem.split("-")[1]))
    times = measure_floor(paths, SYNTH_FEATURES, SYNTH_LABEL, args.rounds, workers=args.workers)
    print(json.dumps({"bench": "floor", "sites": len(paths), "round_s": times}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
