"""A ~485 MB model through `fedcare run`: chunked transfer with memory bounded by the model.

Issue 2, transport: "chunked model transfer so a 500 MB model moves with bounded memory". An MLP
with hidden layers [11000, 11000] over the 11 synthetic features has 121.2M float32 parameters
(484.6 MB of safetensors). Each round the coordinator streams it to every site in 1 MiB chunks
and every site streams its update back the same way; the coordinator folds updates into one
running sum as they arrive. The script runs the job with 2 and then 4 sites (a few hundred
rows each: the point is the transfer, not the training) and reports, per run: round times,
the bytes the coordinator moved per round (model out + updates in), and the peak RSS
(``VmHWM``) of the coordinator and of each trainer, also as a multiple of the model's size.

What "bounded" means here: gRPC messages never exceed the transport's limit (each chunk is
1 MiB), and the coordinator's peak does not grow with the number of sites (it holds the global
model, its serialized copy, the running sum, at most ``maxConcurrentUploads`` update buffers and
the candidate: a constant number of model-sized arrays). Target: the coordinator's peak with 4
sites within 15% of its peak with 2 sites. Ends with one JSON line; exit 1 when the target is
missed or a run fails. Run: ``.venv/bin/python bench/large_model.py`` (about 3 minutes and
16 GB of RAM at the peak with 4 sites; data and run folders in ``bench/.cache/large-model``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

import fedcare
from benchutil import CpuWatch, MemorySampler, machine_line, tree_line, wait_for_quiet
from fedcare.data import SYNTH_FEATURES, SYNTH_LABEL, synthesize

BENCH_DIR = Path(__file__).resolve().parent
HIDDEN = [11000, 11000]
#: Coordinator peak RSS with 4 sites over its peak with 2 sites, at most.
GROWTH_LIMIT = 1.15
MIB = 1024 * 1024


def model_bytes(features: int, hidden: Sequence[int]) -> int:
    """float32 bytes of the MLP's parameters (weights and biases, one output)."""
    sizes = [features, *hidden, 1]
    return 4 * sum(a * b + b for a, b in itertools.pairwise(sizes))


def write_job(path: Path, sites: list[Path], models: Path, rounds: int) -> None:
    """The FederatedJob manifest of one run."""
    doc: dict[str, Any] = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "large-model"},
        "spec": {
            "task": "binary-classification",
            "model": {"name": "mlp", "hiddenUnits": HIDDEN},
            "data": {"features": list(SYNTH_FEATURES), "label": SYNTH_LABEL},
            "rounds": rounds,
            "minParticipants": len(sites),
            "joinTimeoutSeconds": 600,
            "roundTimeoutSeconds": 900,
            "training": {"epochs": 1, "batchSize": 256, "optimizer": "sgd", "learningRate": 1e-3},
            "repository": {"uri": f"file://{models}"},
            "participants": [
                {"name": f"site-{i}", "data": {"path": str(p)}}
                for i, p in enumerate(sites, start=1)
            ],
        },
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def run_once(root: Path, n_sites: int, rounds: int, quiet_wait: float) -> dict[str, Any]:
    """Run the job with ``n_sites`` sites; its figures."""
    folder = root / f"{n_sites}-sites"
    shutil.rmtree(folder, ignore_errors=True)
    data = synthesize(n_sites, 300, folder / "data", seed=0)
    job = folder / "job.yaml"
    write_job(job, data, folder / "models", rounds)
    if quiet_wait > 0:
        wait_for_quiet(quiet_wait)
    work = folder / "work"
    sampler = MemorySampler(work)
    sampler.start()
    watch = CpuWatch()
    t0 = time.monotonic()
    try:
        status = fedcare.run(job, workdir=work, check=False)
    finally:
        wall = time.monotonic() - t0
        sampler.stop()
    coordinator = max((p.hwm_kib for p in sampler.by_name("coordinator")), default=0)
    trainers = [p.hwm_kib for p in sampler.by_name("trainer-")]
    _, other_share = watch.others(
        extra_own=sum(p.cpu_s for p in sampler.procs.values() if p.ppid is not None)
    )
    size = model_bytes(len(SYNTH_FEATURES), HIDDEN)
    return {
        "sites": n_sites,
        "phase": status.phase.value,
        "message": status.message,
        "wall_s": round(wall, 2),
        "round_s": [r.duration_seconds for r in status.rounds],
        "bytes_per_round": 2 * n_sites * size,  # the model to every site, an update from each
        "coordinator_peak_mib": round(coordinator / 1024, 1),
        "trainer_peak_mib_max": round(max(trainers, default=0) / 1024, 1),
        "trainer_peak_mib_median": round(statistics.median(trainers) / 1024, 1) if trainers else 0,
        "other_cpu_share": round(other_share, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run both sizes, print the table and the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=BENCH_DIR / ".cache" / "large-model")
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    args = parser.parse_args(argv)

    size = model_bytes(len(SYNTH_FEATURES), HIDDEN)
    print(machine_line())
    print(tree_line())
    print(f"date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"model: MLP {len(SYNTH_FEATURES)}-{'-'.join(map(str, HIDDEN))}-1, "
        f"{size // 4:,} float32 parameters = {size / MIB:.1f} MiB; {args.rounds} rounds, "
        "300 rows per site, 1 MiB chunks"
    )
    runs = [run_once(args.cache, n, args.rounds, args.quiet_wait) for n in args.sites]
    print()
    print(
        "| sites | phase | wall s | round s | MiB moved / round | coordinator peak MiB "
        "(x model) | trainer peak MiB, max (x model) | other load |"
    )
    print("|---:|---|---:|---|---:|---:|---:|---:|")
    for r in runs:
        rounds = ", ".join(f"{s:.1f}" for s in r["round_s"])
        print(
            f"| {r['sites']} | {r['phase']} | {r['wall_s']:.1f} | {rounds} "
            f"| {r['bytes_per_round'] / MIB:,.0f} "
            f"| {r['coordinator_peak_mib']:,.0f} ({r['coordinator_peak_mib'] * MIB / size:.1f}) "
            f"| {r['trainer_peak_mib_max']:,.0f} ({r['trainer_peak_mib_max'] * MIB / size:.1f}) "
            f"| {r['other_cpu_share']:.0%} |"
        )
    ok = all(r["phase"] == "Succeeded" for r in runs)
    growth = None
    if ok and len(runs) >= 2 and runs[0]["coordinator_peak_mib"] > 0:
        growth = runs[-1]["coordinator_peak_mib"] / runs[0]["coordinator_peak_mib"]
        met = growth <= GROWTH_LIMIT
        ok = ok and met
        print()
        print(
            f"coordinator peak with {runs[-1]['sites']} sites / with {runs[0]['sites']} sites: "
            f"{growth:.2f} (target <= {GROWTH_LIMIT}): {'met' if met else 'MISSED'}"
        )
    print(
        json.dumps(
            {
                "bench": "large_model",
                "model_bytes": size,
                "runs": runs,
                "coordinator_growth": None if growth is None else round(growth, 3),
                "target_met": ok,
            }
        )
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
