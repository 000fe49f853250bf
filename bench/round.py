"""Round benchmark: a real local federation (coordinator + one trainer process per site).

Workload (the issue's): 10 sites x 1M synthetic rows each (``fedcare data synth``, Parquet,
cached under ``bench/.cache/``), MLP with hidden units [64, 64], Adam, batch 4096, one local
epoch per round, 3 rounds, FedAvg, ``minParticipants`` = number of sites, run through
``fedcare.run`` (mutual TLS over loopback, real processes, as ``fedcare run`` does).

Reported:

- per round: ``durationSeconds`` from the job status (the coordinator's clock, from sending
  the training tasks to the new global version being stored, federated evaluation included),
  training records per second (the round's training samples / duration), the round's
  federated AUROC and loss, and the trainers' own "trained in" times from their logs;
- start-up (runner start to the job's Training phase: certificates, process start, data
  loading, joins) and total wall time (runner start to ``fedcare.run`` returning);
- memory, from ``/proc`` polled every 0.2 s: the coordinator's peak RSS (``VmHWM``; the kernel
  keeps the high-water mark, so the last sample, taken while the coordinator lingers after the
  job, is its peak), the sum of every fedcare process's ``VmHWM`` (an upper bound: peaks need
  not coincide), the highest *simultaneous* RSS sum seen, and the same for PSS (shared library
  pages split between processes, so it does not count torch's pages ten times);
- how much CPU other processes took during the run (the machine is shared; the script first
  waits up to ``--quiet-wait`` seconds for it to go idle), and the no-framework floor
  (``bench/floor.py``: the same training in plain torch) measured right after.

Targets (from the issue): steady-state round (mean of rounds 2..N) under 15 s on the 2-core
CPU, no round over 60 s. Run: ``.venv/bin/python bench/round.py`` (about a minute once the
machine is idle, plus a few seconds the first time to generate the data). The last line of
output is a JSON summary; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

import fedcare
from benchutil import (
    CpuWatch,
    MemorySampler,
    machine_line,
    status_kib,
    tree_line,
    wait_for_quiet,
)
from fedcare.data import synthesize
from fedcare.data.synth import SYNTH_FEATURES, SYNTH_LABEL
from fedcare.spec import FederatedJobStatus, Phase
from floor import measure_floor

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE = BENCH_DIR / ".cache"
STEADY_TARGET_S = 15.0
ROUND_LIMIT_S = 60.0
POLL_S = 0.2
KIB = 1024


# --------------------------------------------------------------------------- data
def ensure_data(cache: Path, sites: int, rows: int, seed: int) -> tuple[list[Path], float | None]:
    """Parquet files of ``sites`` x ``rows`` synthetic rows, generated once and then reused.

    Returns the paths and the generation time in seconds (``None`` when the cache was used).
    Generation writes to a temporary folder that is renamed into place when complete, so an
    interrupted run never leaves a partial cache behind.
    """
    target = cache / f"synth-{sites}x{rows}-seed{seed}-parquet"
    paths = [target / f"site-{k}.parquet" for k in range(1, sites + 1)]
    if all(p.is_file() for p in paths):
        return paths, None
    tmp = cache / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    start = time.monotonic()
    synthesize(sites, rows, tmp, fmt="parquet", seed=seed)
    elapsed = time.monotonic() - start
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return paths, elapsed


def write_job(path: Path, data: Sequence[Path], models: Path, args: argparse.Namespace) -> None:
    """Write the FederatedJob manifest of the benchmark to ``path``."""
    job = {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "bench-round"},
        "spec": {
            "task": "binary-classification",
            "model": {"name": "mlp", "hiddenUnits": [64, 64]},
            "data": {"features": list(SYNTH_FEATURES), "label": SYNTH_LABEL},
            "rounds": args.rounds,
            "minParticipants": len(data),
            "joinTimeoutSeconds": 600,
            "roundTimeoutSeconds": 600,
            "training": {
                "epochs": 1,
                "batchSize": 4096,
                "optimizer": "adam",
                "learningRate": args.learning_rate,
            },
            "strategy": {"name": "fedavg"},
            "repository": {"uri": f"file://{models}"},
            "participants": [
                {
                    "name": f"site-{k}",
                    "data": {"path": str(p), "validationFraction": args.validation_fraction},
                }
                for k, p in enumerate(data, start=1)
            ],
        },
    }
    path.write_text(yaml.safe_dump(job, sort_keys=False))


# --------------------------------------------------------------------------- memory
@dataclass
class Timeline:
    """Monotonic times of status events seen by ``on_status``."""

    start: float
    training_at: float | None = None
    round_start_at: dict[int, float] = field(default_factory=dict)
    updates_in_at: dict[int, float] = field(default_factory=dict)
    round_done_at: dict[int, float] = field(default_factory=dict)

    def on_status(self, status: FederatedJobStatus) -> None:
        """``fedcare.run`` callback: training start, and each round's start, last update, end."""
        now = time.monotonic()
        for r in status.rounds:
            self.round_done_at.setdefault(r.round, now)
        if status.phase is not Phase.TRAINING:
            return
        if self.training_at is None:
            self.training_at = now
        current = status.current_round
        if current:
            self.round_start_at.setdefault(current, now)
            if status.participants and all(p.last_round >= current for p in status.participants):
                self.updates_in_at.setdefault(current, now)

    def phases(self, number: int) -> tuple[float, float] | None:
        """(training + upload, evaluation + store) seconds of round ``number``, as observed."""
        try:
            start = self.round_start_at[number]
            mid = self.updates_in_at[number]
            end = self.round_done_at[number]
        except KeyError:
            return None
        return mid - start, end - mid


_TRAINED = re.compile(r"^(\S+ \S+) \S+ INFO (\S+): round (\d+) trained in ([\d.]+)s")
_LOADED = re.compile(r"^(\S+ \S+) \S+ INFO (\S+): (\d+) training and (\d+) validation rows")


def _log_time(stamp: str) -> float:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def trainer_logs(logs: Path) -> tuple[dict[int, list[float]], list[float]]:
    """Per round, each trainer's "trained in" seconds; and each trainer's data-ready time.

    The data-ready times are wall-clock timestamps (epoch seconds) of the trainers' "N training
    and M validation rows" lines, i.e. when set-up (describe job, read Parquet, split, build the
    model) finished.
    """
    trained: dict[int, list[float]] = {}
    ready: list[float] = []
    for path in sorted(logs.glob("trainer-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if m := _TRAINED.match(line):
                trained.setdefault(int(m.group(3)), []).append(float(m.group(4)))
            elif m := _LOADED.match(line):
                ready.append(_log_time(m.group(1)))
    return trained, ready


# --------------------------------------------------------------------------- report
def _versions() -> str:
    import numpy
    import torch

    return f", torch {torch.__version__}, numpy {numpy.__version__}, fedcare {fedcare.__version__}"


def _mib(kib: int) -> float:
    return kib / KIB


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints tables and a final JSON line. 0 when the targets are met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows per site")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="synthetic data seed")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument(
        "--workdir", type=Path, help="run folder (default: a new one under <cache>/runs/)"
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=180.0,
        help="seconds to wait at most for the machine to go idle before measuring (0: no wait)",
    )
    parser.add_argument(
        "--no-floor", action="store_true", help="skip the plain-torch floor (bench/floor.py)"
    )
    args = parser.parse_args(argv)

    print(machine_line(_versions()))
    print(tree_line())
    cache = args.cache.resolve()
    data, gen_s = ensure_data(cache, args.sites, args.rows, args.seed)
    print(
        f"data: {args.sites} x {args.rows:,} rows (Parquet) in {data[0].parent} "
        + (f"(generated in {gen_s:.1f} s)" if gen_s is not None else "(cached)")
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = (args.workdir or cache / "runs" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    job_path = workdir / "job.yaml"
    write_job(job_path, data, workdir / "models", args)
    print(f"run folder: {workdir} (logs in {workdir / 'logs'})")

    if args.quiet_wait > 0:
        waited, share = wait_for_quiet(args.quiet_wait)
        print(f"waited {waited:.0f} s for an idle machine (busy share now {share:.0%})")
    sampler = MemorySampler(workdir)
    sampler.start()
    watch = CpuWatch()
    timeline = Timeline(start=time.monotonic())
    t0 = time.monotonic()
    try:
        status = fedcare.run(job_path, workdir=workdir, on_status=timeline.on_status)
    finally:
        total_s = time.monotonic() - t0
        sampler.stop()
    sampler.sample()  # anything still alive (nothing, normally)
    # Processes this one does not wait for (the fork server and what it forked) are ours too.
    unwaited = sum(p.cpu_s for p in sampler.procs.values() if p.ppid != os.getpid())
    other_cpu_s, other_share = watch.others(extra_own=unwaited)
    children_maxrss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own_hwm_kib = status_kib(Path("/proc/self/status").read_text(), "VmHWM")

    trained, ready = trainer_logs(workdir / "logs")
    expected_train = round(args.rows * (1 - args.validation_fraction)) * args.sites
    startup_s = (timeline.training_at or t0) - t0
    print()
    print(
        "| round | duration s | records/s | AUROC  | loss   | train+upload s | eval+store s "
        "| trainers' train s, median / max |"
    )
    print(
        f"|------:|-----------:|----------:|-------:|-------:|---------------:|-------------:|"
        f"{'-' * 33}:|"
    )
    rows_out = []
    for r in status.rounds:
        rate = r.samples / r.duration_seconds if r.duration_seconds > 0 else 0.0
        tt = trained.get(r.round, [])
        tt_text = f"{statistics.median(tt):.2f} / {max(tt):.2f}" if tt else "n/a"
        auroc = r.metrics.get("auroc", float("nan"))
        loss = r.metrics.get("loss", float("nan"))
        split = timeline.phases(r.round)
        train_text, eval_text = (f"{split[0]:.2f}", f"{split[1]:.2f}") if split else ("n/a",) * 2
        print(
            f"| {r.round:5d} | {r.duration_seconds:10.2f} | {rate:9,.0f} | {auroc:.4f} "
            f"| {loss:.4f} | {train_text:>14} | {eval_text:>12} | {tt_text:>32} |"
        )
        rows_out.append(
            {
                "round": r.round,
                "duration_s": r.duration_seconds,
                "train_rows": r.samples,
                "records_per_s": round(rate),
                "auroc": auroc,
                "loss": loss,
                "train_upload_s": None if split is None else round(split[0], 3),
                "eval_store_s": None if split is None else round(split[1], 3),
                "trainer_train_s_median": statistics.median(tt) if tt else None,
                "trainer_train_s_max": max(tt) if tt else None,
            }
        )
    durations = [r.duration_seconds for r in status.rounds]
    steady = durations[1:] or durations
    steady_s = statistics.fmean(steady) if steady else float("nan")
    worst_s = max(durations) if durations else float("nan")
    final_auroc = status.rounds[-1].metrics.get("auroc") if status.rounds else None

    coord = sampler.by_name("coordinator")
    trainers = sampler.by_name("trainer-")
    coord_hwm = max((p.hwm_kib for p in coord), default=0)
    hwm_sum = sum(p.hwm_kib for p in sampler.procs.values())
    trainer_hwm = [p.hwm_kib for p in trainers]
    print()
    print(f"phase: {status.phase.value} ({status.message})")
    print(
        f"training rows per round: {expected_train:,} expected "
        f"(rows x (1 - validationFraction) x sites), status says "
        f"{status.rounds[-1].samples if status.rounds else 0:,}"
    )
    print(f"start-up (runner start -> Training phase): {startup_s:.1f} s")
    if ready:
        spread = max(ready) - min(ready)
        print(f"trainers' data ready within {spread:.1f} s of each other")
    print(f"total wall time (fedcare.run call): {total_s:.1f} s")
    print(
        f"other processes on the machine meanwhile: {other_cpu_s:.1f} CPU-s "
        f"({other_share:.0%} of the {os.cpu_count()} CPUs' time; near 0% = a clean measurement)"
    )
    print(
        f"steady-state round (mean of rounds 2..{len(durations)}): {steady_s:.2f} s "
        f"(target < {STEADY_TARGET_S:g} s); worst round {worst_s:.2f} s "
        f"(limit {ROUND_LIMIT_S:g} s)"
    )
    print()
    mem_rows = [
        ("coordinator peak RSS (VmHWM)", coord_hwm),
        (
            "fork server peak RSS (VmHWM)",
            max((p.hwm_kib for p in sampler.by_name("fork-server")), default=0),
        ),
        (f"trainer peak RSS, max of {len(trainer_hwm)}", max(trainer_hwm, default=0)),
        (f"sum of per-process peak RSS ({len(sampler.procs)} processes)", hwm_sum),
        ("highest simultaneous RSS sum (sampled)", sampler.peak_rss_sum_kib),
        ("highest simultaneous PSS sum (sampled)", sampler.peak_pss_sum_kib),
        ("largest child peak RSS (getrusage, exact)", children_maxrss_kib),
        ("this benchmark process (runner) peak RSS", own_hwm_kib),
    ]
    print(f"| {'memory (MiB)':<45} | {'value':>9} |")
    print(f"|{'-' * 47}|{'-' * 10}:|")
    for label, kib in mem_rows:
        print(f"| {label:<45} | {_mib(kib):9.0f} |")
    print()
    print("| process      | CPU s (user+sys) |")
    print("|--------------|-----------------:|")
    for p in coord:
        print(f"| coordinator  | {p.cpu_s:16.1f} |")
    for p in sampler.by_name("fork-server"):
        print(f"| fork server  | {p.cpu_s:16.1f} |")
    if trainers:
        cpu = [p.cpu_s for p in trainers]
        print(f"| trainer, mean| {statistics.fmean(cpu):16.1f} |")
        print(f"| trainers, sum| {sum(cpu):16.1f} |")
    print(f"memory samples: {sampler.samples} every {POLL_S} s")

    floor_s: list[float] = []
    floor_other = None
    if not args.no_floor:
        floor_watch = CpuWatch()
        floor_s = measure_floor(
            data,
            SYNTH_FEATURES,
            SYNTH_LABEL,
            rounds=args.rounds,
            lr=args.learning_rate,
            val_fraction=args.validation_fraction,
        )
        floor_steady = statistics.fmean(floor_s[1:] or floor_s)
        floor_other = floor_watch.others()[1]
        print()
        print(
            f"no-framework floor (bench/floor.py: plain torch, {os.cpu_count()} worker processes, "
            f"same data and training): rounds {', '.join(f'{x:.2f}' for x in floor_s)} s; "
            f"fedcare steady round = {steady_s / floor_steady:.2f}x the floor "
            f"(other processes meanwhile: {floor_other:.0%})"
        )

    ok = status.phase is Phase.SUCCEEDED and steady_s < STEADY_TARGET_S and worst_s <= ROUND_LIMIT_S
    result = {
        "bench": "round",
        "sites": args.sites,
        "rows_per_site": args.rows,
        "rounds": args.rounds,
        "phase": status.phase.value,
        "round_s": durations,
        "records_per_s": [x["records_per_s"] for x in rows_out],
        "steady_round_s": round(steady_s, 3),
        "worst_round_s": round(worst_s, 3),
        "final_auroc": final_auroc,
        "startup_s": round(startup_s, 2),
        "total_s": round(total_s, 2),
        "data_generation_s": None if gen_s is None else round(gen_s, 2),
        "coordinator_peak_rss_mib": round(_mib(coord_hwm), 1),
        "trainer_peak_rss_max_mib": round(_mib(max(trainer_hwm, default=0)), 1),
        "sum_peak_rss_mib": round(_mib(hwm_sum), 1),
        "peak_simultaneous_rss_mib": round(_mib(sampler.peak_rss_sum_kib), 1),
        "peak_simultaneous_pss_mib": round(_mib(sampler.peak_pss_sum_kib), 1),
        "other_cpu_share": round(other_share, 3),
        "floor_round_s": [round(x, 3) for x in floor_s],
        "floor_other_cpu_share": None if floor_other is None else round(floor_other, 3),
        "coordinator_cpu_s": round(sum(p.cpu_s for p in coord), 2),
        "trainers_cpu_s": round(sum(p.cpu_s for p in trainers), 2),
        "targets_met": ok,
    }
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
