"""Benchmark against Flower: the same 10-site job with ``fedcare run`` and in Flower's simulation.

The job (issue 6, item 5): scikit-learn's breast-cancer data (569 rows, 30 features; label
``malignant`` = 1 - sklearn's target) split 10 ways, stratified, with a fixed seed, written as
one CSV per site; logistic regression; 5 rounds of FedAvg; 5 local epochs per round; the same
optimizer, learning rate and batch size on both sides (default Adam, lr 0.05, batch 32).

- **fedcare**: a FederatedJob manifest (``minParticipants`` 10, every site inline) run as
  ``fedcare run job.yaml --json --workdir DIR`` in a subprocess: a coordinator and 10 trainer
  processes, mutual TLS over loopback, certificates issued for the run. Timed end to end (wall
  time of the subprocess, interpreter start-up included); the rounds' time is the sum of the
  status's ``durationSeconds``; the final accuracy is the last round's federated (validation
  sample-weighted) accuracy.
- **Flower**: ``bench/flower_app.py`` run by the Python of a separate virtual environment with
  ``flwr[simulation]`` 1.42 and ray (flwr pins protobuf < 7, which fedcare's grpcio-tools
  cannot use; ``--setup`` creates it in ``bench/.cache/flower-venv``). ``run_simulation`` with
  a ``NumPyClient`` per site, FedAvg, 10 clients, 5 rounds, federated evaluation on every
  client's validation rows, accuracy weighted by validation rows. Timed the same way.

Both sides train exactly the same thing: each site's rows are split into training and
validation by fedcare's own ``split_indices`` (validationFraction 0.2, seed 0) and handed to
the Flower clients by index; the Flower model is fedcare's initial model (its seeded weights and
the federation-wide input standardization, computed from the sites' training rows as fedcare's
coordinator does); the clients reproduce ``train_local`` step for step (fused optimizer, a
``torch.randperm`` per epoch seeded with ``seed + round``, BCE on logits) with one torch thread,
as fedcare's runner gives each of its 10 trainers on this 2-CPU machine. So the accuracies
should agree to float32 rounding, and the wall times differ by the frameworks alone.

The runs alternate (fedcare, Flower, fedcare, ...), each after waiting for an idle machine;
for each the script reports the CPU-seconds other processes took meanwhile (processes of our
own are told apart by ancestry, or by the run folder or the Flower venv in their command line,
since ray's daemons are not our children) and the peak simultaneous RSS of our processes.
After the runs it profiles fedcare: a timeline of the last fedcare run from its per-process
logs (and of the last Flower run from its own stamps), then what each of fedcare's 11
processes pays before doing any work (interpreter, imports, torch, the ``torch._dynamo`` that
``torch.optim`` imports on its first step) and at exit, alone and 11 at once: what each
process would pay as a fresh interpreter (``fedcare run --launcher spawn``), and what the fork
server (the default launcher, ``fedcare/local/launch.py``) pays once. With ``--experiments N``
it then times both launchers (``VARIANTS``), N runs each, alternating.

Target (issue 6): fedcare, with real processes and mTLS, no slower than Flower (about 9 s for
this job on this machine, pitfalls.md) at equal accuracy. Run:
``.venv/bin/python bench/compare_flower.py [--setup] [--repeat 3] [--experiments 3]``. The last
line of output is a JSON summary; the exit status is 1 when the target is missed (or a run
failed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import fedcare
from benchutil import (
    CpuWatch,
    busy_seconds,
    machine_line,
    own_cpu_seconds,
    tree_line,
    wait_for_quiet,
)

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_CACHE = BENCH_DIR / ".cache"
FLOWER_APP = BENCH_DIR / "flower_app.py"
FLWR_VERSION = "1.42.0"
LABEL = "malignant"
FEATURES = [f"f{i:02d}" for i in range(30)]
POLL_S = 0.1
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


# --------------------------------------------------------------------------- set-up
def flower_python(venv: Path) -> Path:
    """The Flower venv's interpreter."""
    return venv / "bin" / "python"


def setup_flower(venv: Path) -> None:
    """Create the Flower venv: ``flwr[simulation]`` (ray) and the torch fedcare uses."""
    import torch

    torch_version = torch.__version__.split("+", 1)[0]
    if not flower_python(venv).exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(flower_python(venv)),
            "-m",
            "pip",
            "install",
            "--quiet",
            f"flwr[simulation]=={FLWR_VERSION}",
            f"torch=={torch_version}",
        ],
        check=True,
    )
    subprocess.run([str(flower_python(venv)), "-m", "pip", "check"], check=True)


def flower_versions(venv: Path) -> dict[str, str]:
    """flwr, ray, torch, protobuf and numpy versions in the Flower venv."""
    code = (
        "import json, importlib.metadata as m; print(json.dumps({p: m.version(p) for p in "
        "('flwr', 'ray', 'torch', 'protobuf', 'numpy')}))"
    )
    out = subprocess.run(
        [str(flower_python(venv)), "-c", code], capture_output=True, text=True, check=True
    )
    versions: dict[str, str] = json.loads(out.stdout)
    return versions


# --------------------------------------------------------------------------- the job
def write_sites(out: Path, sites: int, seed: int) -> list[Path]:
    """Breast-cancer data split ``sites`` ways (stratified, shuffled with ``seed``) as CSVs."""
    from sklearn.datasets import load_breast_cancer  # type: ignore[import-untyped,unused-ignore]
    from sklearn.model_selection import (  # type: ignore[import-untyped,unused-ignore]
        StratifiedKFold,
    )

    x, y = load_breast_cancer(return_X_y=True)
    label = 1 - y  # 1 = malignant
    out.mkdir(parents=True, exist_ok=True)
    folds = StratifiedKFold(n_splits=sites, shuffle=True, random_state=seed).split(x, label)
    paths = []
    for k, (_, part) in enumerate(folds, start=1):
        path = out / f"site-{k}.csv"
        rows = np.column_stack([x[part], label[part]])
        header = ",".join([*FEATURES, LABEL])
        np.savetxt(path, rows, delimiter=",", header=header, comments="", fmt="%.6g")
        paths.append(path)
    return paths


def job_doc(sites: Sequence[Path], models: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The FederatedJob manifest of the benchmark."""
    return {
        "apiVersion": "fedcare.io/v1alpha1",
        "kind": "FederatedJob",
        "metadata": {"name": "bench-flower"},
        "spec": {
            "task": "binary-classification",
            "model": {"name": "logistic-regression"},
            "data": {"features": FEATURES, "label": LABEL},
            "rounds": args.rounds,
            "minParticipants": len(sites),
            "joinTimeoutSeconds": 120,
            "roundTimeoutSeconds": 120,
            "training": {
                "epochs": args.epochs,
                "batchSize": args.batch_size,
                "optimizer": args.optimizer,
                "learningRate": args.learning_rate,
            },
            "strategy": {"name": "fedavg"},
            "repository": {"uri": f"file://{models}"},
            "participants": [
                {
                    "name": f"site-{k}",
                    "data": {"path": str(p), "validationFraction": args.validation_fraction},
                }
                for k, p in enumerate(sites, start=1)
            ],
        },
    }


def write_plan(folder: Path, job_path: Path) -> tuple[Path, dict[str, Any]]:
    """The Flower side's plan: fedcare's split, initial model and training settings.

    The split comes from fedcare's ``split_indices`` (what each trainer's ``load_site`` uses);
    the standardization from the sites' training rows summed in float64 as the trainers send
    them at join and combined as the coordinator does; the initial weights from the
    coordinator's own ``initial_weights``.
    """
    from fedcare.coordinator.app import initial_weights
    from fedcare.data import load_site
    from fedcare.data.split import split_indices
    from fedcare.spec import FederatedJob, load_model

    job = load_model(FederatedJob, job_path)
    spec = job.spec
    sites = []
    total = 0
    fsum = np.zeros(len(FEATURES))
    fsq = np.zeros(len(FEATURES))
    for p in spec.participants:
        with Path(p.data.path).open() as f:
            n = sum(1 for _ in f) - 1
        train, val = split_indices(n, p.data.validation_fraction, spec.training.seed)
        site = load_site(p.data, spec.data, seed=spec.training.seed)  # the trainer's arrays
        x = site.x_train
        total += len(site.y_train)
        fsum += x.sum(axis=0, dtype=np.float64)
        fsq += np.einsum("ij,ij->j", x, x, dtype=np.float64)
        sites.append({"path": p.data.path, "train": train.tolist(), "val": val.tolist()})
    mean = fsum / total
    std = np.sqrt(np.maximum(fsq / total - mean * mean, 0.0))
    weights = initial_weights(job, mean.astype(np.float32), std.astype(np.float32))
    npz = folder / "initial.npz"
    np.savez(npz, **weights)  # type: ignore[arg-type]
    plan = {
        "sites": sites,
        "features": list(spec.data.features),
        "label": spec.data.label,
        "state_keys": list(weights),
        "initial_npz": str(npz),
        "rounds": spec.rounds,
        "threads": max(1, (os.cpu_count() or 1) // len(sites)),  # as fedcare's LocalRun
        "training": {
            "epochs": spec.training.epochs,
            "batch_size": spec.training.batch_size,
            "optimizer": spec.training.optimizer.value,
            "learning_rate": spec.training.learning_rate,
            "seed": spec.training.seed,
        },
    }
    path = folder / "plan.json"
    path.write_text(json.dumps(plan))
    return path, plan


# --------------------------------------------------------------------------- processes
@dataclass
class _Proc:
    base_cpu: float
    cpu: float
    ours: bool
    cmd: str
    first_seen: float
    last_seen: float


@dataclass
class ProcTracker:
    """CPU and memory of every process on the machine during one run, ours and others'.

    Ours: descendants of this process, or any process whose command line holds one of
    ``markers`` (ray's daemons outlive their parent and are not our descendants). CPU of a
    process that exits between two samples is counted up to its last sample.
    """

    markers: Sequence[str]
    interval: float = POLL_S
    procs: dict[int, _Proc] = field(default_factory=dict)
    peak_rss_kib: int = 0
    ours_seen: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _read(self) -> dict[int, tuple[int, float, str, int]]:
        """Every process now: pid -> (ppid, CPU seconds, command line, RSS KiB)."""
        out = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue  # exited, not yet reaped: its CPU time was counted when last seen
            cpu = (int(fields[11]) + int(fields[12])) / TICK
            out[pid] = (int(fields[1]), cpu, cmd.decode(errors="replace"), int(fields[21]))
        return out

    def sample(self, first: bool = False) -> None:
        """One look at every process."""
        snap = self._read()
        me = os.getpid()
        ours = {me}
        changed = True
        while changed:  # descendants, whatever order the pids come in
            changed = False
            for pid, (ppid, _, cmd, _) in snap.items():
                if pid in ours:
                    continue
                known = self.procs.get(pid)
                if (
                    ppid in ours
                    or (known is not None and known.ours)
                    or any(m in cmd for m in self.markers)
                ):
                    ours.add(pid)
                    changed = True
        rss = 0
        now = time.time()
        for pid, (_, cpu, cmd, pages) in snap.items():
            p = self.procs.get(pid)
            if p is None:
                base = cpu if first else 0.0
                p = self.procs[pid] = _Proc(base, cpu, False, cmd, now, now)
            p.cpu = cpu
            p.last_seen = now
            if pid in ours and pid != me:
                p.ours = True
                rss += pages * PAGE_KIB
        self.peak_rss_kib = max(self.peak_rss_kib, rss)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> ProcTracker:
        """Take the baseline sample and start polling."""
        self.sample(first=True)
        self._thread = threading.Thread(target=self._loop, name="proc-tracker", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop polling; one last sample."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def ours_matching(self, text: str) -> list[_Proc]:
        """Our processes whose command line contains ``text``."""
        return [p for p in self.procs.values() if p.ours and text in p.cmd]

    def cpu(self, ours: bool) -> float:
        """CPU-seconds our (or the others') processes took since the start."""
        return sum(p.cpu - p.base_cpu for p in self.procs.values() if p.ours is ours)


@dataclass
class Timed:
    """One timed subprocess run."""

    wall_s: float
    start: float  # epoch seconds
    rc: int
    stdout: str
    own_cpu_s: float
    other_cpu_s: float
    other_share: float
    peak_rss_mib: float
    tracker: ProcTracker


def run_timed(
    cmd: Sequence[str], markers: Sequence[str], log: Path, env: dict[str, str] | None = None
) -> Timed:
    """Run ``cmd`` to completion, stderr to ``log``; wall time and the machine's other load."""
    busy0, own0 = busy_seconds(), own_cpu_seconds()
    with ProcTracker(markers) as tracker, log.open("wb") as err:
        start = time.time()
        t0 = time.monotonic()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, env=env, check=False)
        wall = time.monotonic() - t0
    busy = busy_seconds() - busy0
    own = max(own_cpu_seconds() - own0, tracker.cpu(ours=True))
    other = max(0.0, busy - own)
    return Timed(
        wall_s=wall,
        start=start,
        rc=proc.returncode,
        stdout=proc.stdout.decode(errors="replace"),
        own_cpu_s=own,
        other_cpu_s=other,
        other_share=other / (wall * (os.cpu_count() or 1)),
        peak_rss_mib=tracker.peak_rss_kib / 1024,
        tracker=tracker,
    )


def last_json(text: str) -> dict[str, Any] | None:
    """The last line of ``text`` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                doc: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue
            return doc
    return None


@dataclass
class Result:
    """One side's run: wall time, rounds' time, per-round durations, final accuracy."""

    side: str
    timed: Timed
    ok: bool
    rounds_s: list[float]
    accuracy: list[float]
    workdir: Path
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def final_accuracy(self) -> float:
        """Accuracy after the last round (nan when the run failed)."""
        return self.accuracy[-1] if self.accuracy else float("nan")

    @property
    def rounds_total_s(self) -> float:
        """Sum of the rounds' durations."""
        return sum(self.rounds_s)


#: fedcare variants for ``--experiments``: name -> extra ``fedcare run`` arguments.
VARIANTS: dict[str, list[str]] = {
    "fedcare run (fork server, the default)": [],
    "fedcare run --launcher spawn (fresh interpreters)": ["--launcher", "spawn"],
}


def run_fedcare(base_job: Path, workdir: Path, rounds: int, extra: Sequence[str] = ()) -> Result:
    """``fedcare run job.yaml --json [EXTRA]`` in a subprocess, timed.

    Each run gets its own copy of the manifest with its own model repository in ``workdir``.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    doc = yaml.safe_load(base_job.read_text())
    doc["spec"]["repository"]["uri"] = f"file://{workdir / 'models'}"
    job = workdir / "job.yaml"
    job.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = dict(os.environ)
    exe = Path(sys.executable).parent / "fedcare"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "fedcare"]
    cmd += ["run", str(job), "--json", "--workdir", str(workdir), *extra]
    timed = run_timed(cmd, [str(workdir)], workdir / "fedcare-run.stderr", env=env)
    status = last_json(timed.stdout) or {}
    rounds_doc = status.get("rounds", [])
    ok = timed.rc == 0 and status.get("phase") == "Succeeded" and len(rounds_doc) == rounds
    return Result(
        side="fedcare",
        timed=timed,
        ok=ok,
        rounds_s=[float(r["durationSeconds"]) for r in rounds_doc],
        accuracy=[float(r["metrics"].get("accuracy", float("nan"))) for r in rounds_doc],
        workdir=workdir,
        detail={"phase": status.get("phase"), "message": status.get("message")},
    )


def run_flower(venv: Path, plan: Path, workdir: Path, rounds: int) -> Result:
    """``flower_app.py`` with the Flower venv's Python, timed."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # No network here: Flower's telemetry and ray's usage stats would only try and fail.
    env.update(FLWR_TELEMETRY_ENABLED="0", RAY_USAGE_STATS_ENABLED="0", RAY_DEDUP_LOGS="0")
    cmd = [str(flower_python(venv)), str(FLOWER_APP), str(plan)]
    markers = [str(venv), "ray::", "raylet", "gcs_server"]
    timed = run_timed(cmd, markers, workdir / "flower.log", env=env)
    (workdir / "flower.stdout").write_text(timed.stdout)
    doc = last_json(timed.stdout) or {}
    done = doc.get("rounds", [])
    ok = timed.rc == 0 and bool(doc.get("complete")) and len(done) == rounds
    return Result(
        side="Flower",
        timed=timed,
        ok=ok,
        rounds_s=[float(r["duration_s"]) for r in done],
        accuracy=[float(r["accuracy"]) for r in done],
        workdir=workdir,
        detail={
            k: doc.get(k)
            for k in ("flwr", "client_cpus", "imported", "simulation_start", "first_fit", "end")
        }
        | {"round_ends": [r["end"] for r in done]},
    )


# --------------------------------------------------------------------------- fedcare profile
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ (.*)$")


def _stamp(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def _events(path: Path) -> list[tuple[float, str]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if m := _LOG_LINE.match(line):
            out.append((_stamp(m.group(1)), m.group(2)))
    return out


def fedcare_timeline(res: Result) -> list[tuple[str, float]]:
    """Milestones of a fedcare run (seconds after the ``fedcare run`` subprocess started).

    From the per-process logs (millisecond stamps): coordinator serving; trainers' set-up
    done (data loaded, model and optimizer built), first and last; all joined; each round's
    last upload; first and last trainer told the job ended; and the subprocess's exit.
    """
    logs = res.workdir / "logs"
    t0 = res.timed.start
    marks: list[tuple[str, float]] = []
    coord = _events(logs / "coordinator.log") if (logs / "coordinator.log").exists() else []
    if coord:
        marks.append(("coordinator serving (its first log line)", coord[0][0] - t0))
    ready, joined, ended = [], [], []
    trained: dict[int, list[float]] = {}
    for path in sorted(logs.glob("trainer-*.log")):
        for ts, msg in _events(path):
            if "training and" in msg and "validation rows" in msg:
                ready.append(ts - t0)
            elif " joined job " in msg:
                joined.append(ts - t0)
            elif m := re.search(r"round (\d+) trained in", msg):
                trained.setdefault(int(m.group(1)), []).append(ts - t0)
            elif "job ended" in msg:
                ended.append(ts - t0)
    if ready:
        marks.append(("first trainer set up (imports, data, model, optimizer)", min(ready)))
        marks.append(("last trainer set up", max(ready)))
    if joined:
        marks.append(("last trainer joined", max(joined)))
    for number in sorted(trained):
        marks.append((f"round {number}: last update uploaded", max(trained[number])))
    if ended:
        marks.append(("first trainer told the job ended", min(ended)))
        marks.append(("last trainer told the job ended", max(ended)))
    tracker = res.timed.tracker
    trainers = tracker.ours_matching("fedcare trainer --config")
    coordinators = tracker.ours_matching("fedcare coordinator --config")
    if trainers:
        marks.append(
            (
                "last trainer process seen (polled every 0.1 s)",
                max(p.last_seen for p in trainers) - t0,
            )
        )
    if coordinators:
        marks.append(("coordinator process last seen", max(p.last_seen for p in coordinators) - t0))
    marks.append(("`fedcare run` exited", res.timed.wall_s))
    return marks


def flower_timeline(res: Result) -> list[tuple[str, float]]:
    """Milestones of a Flower run (seconds after its subprocess started), from its own stamps."""
    t0 = res.timed.start
    d = res.detail
    marks: list[tuple[str, float]] = []
    if d.get("imported"):
        marks.append(("flwr imported (interpreter start-up included)", d["imported"] - t0))
    if d.get("simulation_start"):
        marks.append(("run_simulation called", d["simulation_start"] - t0))
    if d.get("first_fit"):
        marks.append(("round 1 fit sent (ray and the server app up)", d["first_fit"] - t0))
    for number, end in enumerate(d.get("round_ends", []), start=1):
        marks.append((f"round {number}: evaluation aggregated", end - t0))
    if d.get("end"):
        marks.append(("run_simulation returned (ray shut down)", d["end"] - t0))
    marks.append(("the Flower process exited", res.timed.wall_s))
    return marks


_TRAINER_IMPORTS = "import fedcare.trainer, fedcare.models, fedcare.training, fedcare.data, torch"
_FIRST_STEP = (
    "p = torch.nn.Parameter(torch.zeros(1)); p.grad = torch.zeros(1); "
    "torch.optim.Adam([p], fused=True).step()"
)
#: Start-up steps, each ending in ``os._exit(0)`` (no interpreter shutdown) except the last.
STARTUP_STEPS = {
    "interpreter only (python -c pass)": "pass",
    "`fedcare run` CLI imports (fedcare.local.runner)": "import fedcare.local.runner",
    "coordinator imports at start (fedcare.coordinator)": "import fedcare.coordinator",
    "import torch alone": "import torch",
    "trainer imports (fedcare.trainer, torch, pyarrow, ...)": _TRAINER_IMPORTS,
    "trainer imports + first optimizer step (imports torch._dynamo)": (
        f"{_TRAINER_IMPORTS}; {_FIRST_STEP}"
    ),
}
SHUTDOWN_STEP = "the same, then a normal interpreter exit (final garbage collection)"


def _spawn_wall(code: str, count: int, exit_fast: bool = True) -> tuple[float, float]:
    """Start ``count`` interpreters running ``code`` at once; (wall s, CPU s per process)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if exit_fast:
        code = f"import os\n{code}\nos._exit(0)"
    before = own_cpu_seconds()
    t0 = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(count)]
    for p in procs:
        p.wait()
    wall = time.monotonic() - t0
    return wall, (own_cpu_seconds() - before) / count


def startup_costs(
    quiet_wait: float, processes: int
) -> list[tuple[str, float, float, float, float]]:
    """Per start-up step: name, wall s alone, CPU s, wall s of ``processes`` at once, other load.

    The other load is the other processes' share of the CPUs while the step was measured.
    Each is the best of 3 (alone) or of 2 (all at once), after a quiet-machine wait.
    """
    steps = [(name, code, True) for name, code in STARTUP_STEPS.items()]
    steps.append((SHUTDOWN_STEP, f"{_TRAINER_IMPORTS}; {_FIRST_STEP}", False))
    rows = []
    for name, code, fast in steps:
        if quiet_wait > 0:
            wait_for_quiet(quiet_wait)
        watch = CpuWatch()
        alone = min((_spawn_wall(code, 1, fast) for _ in range(3)), key=lambda r: r[0])
        many = min(_spawn_wall(code, processes, fast)[0] for _ in range(2))
        rows.append((name, alone[0], alone[1], many, watch.others()[1]))
    return rows


def log_marks(res: Result) -> dict[str, float]:
    """Phases of a fedcare run from its logs (seconds): start-up, admission, rounds, shutdown."""
    marks = dict(fedcare_timeline(res))
    ready = marks.get("last trainer set up")
    joined = marks.get("last trainer joined")
    first = marks.get("round 1: last update uploaded")
    ended = marks.get("last trainer told the job ended")
    out = {"wall": res.timed.wall_s}
    if ready is not None:
        out["trainers_ready"] = ready
    if joined is not None and first is not None:
        out["joined_to_round1_upload"] = first - joined
    if ended is not None:
        out["end_to_exit"] = res.timed.wall_s - ended
    return out


def run_variants(
    job: Path, folder: Path, args: argparse.Namespace, flower_wall: float | None
) -> dict[str, Any]:
    """Run every fedcare variant ``args.experiments`` times, alternating; print a table.

    ``flower_wall``: Flower's median wall time, for the ratio column.
    """
    runs: dict[str, list[Result]] = {name: [] for name in VARIANTS}
    for i in range(1, args.experiments + 1):
        for k, name in enumerate(VARIANTS):
            if args.quiet_wait > 0:
                wait_for_quiet(args.quiet_wait)
            res = run_fedcare(job, folder / f"variant-{k}-{i}", args.rounds, VARIANTS[name])
            runs[name].append(res)
            print(
                f"variant {name!r} run {i}: {'ok' if res.ok else 'FAILED'}, wall "
                f"{res.timed.wall_s:.2f} s, accuracy {res.final_accuracy:.4f}, other processes "
                f"{res.timed.other_share:.0%}",
                flush=True,
            )
    print()
    print(
        f"fedcare variants (median of {args.experiments} runs each, alternating; seconds; "
        "'set up' = last trainer's set-up done, 'to round 1' = last join to round 1's last "
        "upload, 'exit' = last trainer told the job ended to `fedcare run` exiting):"
    )
    print()
    print(
        "| variant | wall s | / Flower | set up | to round 1 | exit | accuracy | CPU-s "
        "| peak RSS MiB | other load |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    out: dict[str, Any] = {}
    for name, results in runs.items():
        good = [r for r in results if r.ok]
        if not good:
            print(f"| {name} | failed | | | | | | | | |")
            out[name] = {"failed": len(results)}
            continue
        marks = [log_marks(r) for r in good]

        def med(key: str, marks: list[dict[str, float]] = marks) -> float:
            vals = [m[key] for m in marks if key in m]
            return statistics.median(vals) if vals else float("nan")

        cpu = statistics.median(r.timed.own_cpu_s for r in good)
        other = statistics.median(r.timed.other_share for r in good)
        acc = statistics.median(r.final_accuracy for r in good)
        rss = statistics.median(r.timed.peak_rss_mib for r in good)
        ratio = med("wall") / flower_wall if flower_wall else float("nan")
        print(
            f"| {name} | {med('wall'):.2f} | {ratio:.2f} | {med('trainers_ready'):.2f} | "
            f"{med('joined_to_round1_upload'):.2f} | {med('end_to_exit'):.2f} | {acc:.4f} | "
            f"{cpu:.1f} | {rss:.0f} | {other:.0%} |"
        )
        out[name] = {
            "wall_s": [round(r.timed.wall_s, 3) for r in good],
            "wall_over_flower": None if not flower_wall else round(ratio, 3),
            "trainers_ready_s": round(med("trainers_ready"), 3),
            "joined_to_round1_upload_s": round(med("joined_to_round1_upload"), 3),
            "end_to_exit_s": round(med("end_to_exit"), 3),
            "final_accuracy": acc,
            "own_cpu_s": round(cpu, 2),
            "peak_rss_mib": round(rss, 1),
            "other_cpu_share": round(other, 3),
            "failed": len(results) - len(good),
        }
    return out


# --------------------------------------------------------------------------- report
def _fmt_pair(values: Sequence[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-" + (
        f"{fmt.format(max(values))})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison; prints tables and a final JSON line. 0 when the target is met."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--optimizer", choices=["adam", "sgd"], default="adam")
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seed of the 10-way split")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--flower-venv", type=Path, help="default: <cache>/flower-venv")
    parser.add_argument(
        "--flower-client-cpus",
        type=float,
        default=None,
        help="ray CPUs per Flower client (default: Flower's own, 2 = one client at a time here)",
    )
    parser.add_argument("--setup", action="store_true", help="create the Flower venv first")
    parser.add_argument("--quiet-wait", type=float, default=120.0)
    parser.add_argument("--no-profile", action="store_true", help="skip the start-up profile")
    parser.add_argument(
        "--experiments",
        type=int,
        default=0,
        help="then run each fedcare variant (VARIANTS) this many times, alternating",
    )
    parser.add_argument("--only", choices=["fedcare", "flower"], help="run one side only")
    args = parser.parse_args(argv)

    import torch

    cache = args.cache.resolve()
    venv = (args.flower_venv or cache / "flower-venv").resolve()
    if args.setup:
        setup_flower(venv)
    print(machine_line(f", torch {torch.__version__}, fedcare {fedcare.__version__}"))
    print(tree_line())
    fl_versions: dict[str, str] = {}
    if args.only != "fedcare":
        if not flower_python(venv).exists():
            print(f"no Flower venv at {venv}: run with --setup (or --only fedcare)")
            return 1
        fl_versions = flower_versions(venv)
        print("Flower venv: " + ", ".join(f"{k} {v}" for k, v in fl_versions.items()))

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = cache / "compare-flower" / stamp
    sites = write_sites(folder / "data", args.sites, args.seed)
    job_path = folder / "job.yaml"
    job_path.write_text(yaml.safe_dump(job_doc(sites, folder / "models", args), sort_keys=False))
    plan_path, plan = write_plan(folder, job_path)
    n_train = sum(len(s["train"]) for s in plan["sites"])
    n_val = sum(len(s["val"]) for s in plan["sites"])
    print(
        f"job: breast cancer, {args.sites} sites ({n_train} training + {n_val} validation rows), "
        f"logistic regression, {args.rounds} rounds x {args.epochs} epochs, {args.optimizer} "
        f"lr {args.learning_rate:g}, batch {args.batch_size}; run folder {folder}"
    )
    if args.flower_client_cpus:
        plan["client_cpus"] = args.flower_client_cpus
        plan_path.write_text(json.dumps(plan))

    results: dict[str, list[Result]] = {"fedcare": [], "Flower": []}
    for i in range(1, args.repeat + 1):
        for side in ("fedcare", "Flower"):
            if args.only and args.only != side.lower():
                continue
            if args.quiet_wait > 0:
                waited, share = wait_for_quiet(args.quiet_wait)
                note = f"waited {waited:.0f} s for an idle machine (busy {share:.0%})"
            else:
                note = "no wait"
            if side == "fedcare":
                res = run_fedcare(job_path, folder / f"fedcare-{i}", args.rounds)
            else:
                res = run_flower(venv, plan_path, folder / f"flower-{i}", args.rounds)
            results[side].append(res)
            t = res.timed
            print(
                f"run {i} {side:7}: {'ok' if res.ok else 'FAILED'}, wall {t.wall_s:.2f} s, "
                f"rounds {res.rounds_total_s:.2f} s ({', '.join(f'{x:.2f}' for x in res.rounds_s)})"
                f", accuracy {res.final_accuracy:.4f}, other processes {t.other_share:.0%} "
                f"({t.other_cpu_s:.1f} CPU-s), ours {t.own_cpu_s:.1f} CPU-s, peak RSS "
                f"{t.peak_rss_mib:.0f} MiB; {note}",
                flush=True,
            )
            if not res.ok:
                print(f"  see {res.workdir} ({res.detail})")

    def ok_runs(side: str) -> list[Result]:
        return [r for r in results[side] if r.ok]

    print()
    print("median (min-max) over the successful runs:")
    print()
    print(
        "| side    | runs | wall s             | rounds s           | first round s | "
        "accuracy | CPU-s (ours) | peak RSS MiB | other load |"
    )
    print(
        "|---------|-----:|-------------------:|-------------------:|--------------:|"
        "---------:|-------------:|-------------:|-----------:|"
    )
    summary: dict[str, dict[str, Any]] = {}
    for side in ("fedcare", "Flower"):
        runs = ok_runs(side)
        if not runs:
            continue
        walls = [r.timed.wall_s for r in runs]
        rts = [r.rounds_total_s for r in runs]
        firsts = [r.rounds_s[0] for r in runs]
        accs = [r.final_accuracy for r in runs]
        cpus = [r.timed.own_cpu_s for r in runs]
        rss = [r.timed.peak_rss_mib for r in runs]
        others = [r.timed.other_share for r in runs]
        print(
            f"| {side:7} | {len(runs):4d} | {_fmt_pair(walls):>18} | {_fmt_pair(rts):>18} | "
            f"{_fmt_pair(firsts):>13} | {_fmt_pair(accs, '{:.4f}'):>8} | "
            f"{_fmt_pair(cpus, '{:.1f}'):>12} | {_fmt_pair(rss, '{:.0f}'):>12} | "
            f"{_fmt_pair(others, '{:.0%}'):>10} |"
        )
        summary[side] = {
            "runs": len(runs),
            "failed": len(results[side]) - len(runs),
            "wall_s": [round(x, 3) for x in walls],
            "rounds_total_s": [round(x, 3) for x in rts],
            "round_s": [[round(x, 3) for x in r.rounds_s] for r in runs],
            "final_accuracy": accs,
            "own_cpu_s": [round(x, 2) for x in cpus],
            "peak_rss_mib": [round(x, 1) for x in rss],
            "other_cpu_share": [round(x, 3) for x in others],
        }

    ratio = None
    target_met = False
    if "fedcare" in summary and "Flower" in summary:
        fc = statistics.median(summary["fedcare"]["wall_s"])
        fl = statistics.median(summary["Flower"]["wall_s"])
        ratio = fc / fl
        acc_fc = statistics.median(summary["fedcare"]["final_accuracy"])
        acc_fl = statistics.median(summary["Flower"]["final_accuracy"])
        equal_acc = abs(acc_fc - acc_fl) <= 0.01
        target_met = ratio <= 1.0 and equal_acc
        print()
        print(
            f"wall-time ratio fedcare / Flower (medians): {ratio:.2f} "
            f"({fc:.2f} s / {fl:.2f} s); accuracy {acc_fc:.4f} vs {acc_fl:.4f}"
            f" ({'equal' if equal_acc else 'NOT equal'} within 0.01). Target (fedcare no "
            f"slower than Flower at equal accuracy): {'met' if target_met else 'MISSED'}"
        )

    profile: dict[str, Any] = {}
    fc_runs = ok_runs("fedcare")
    if fc_runs:
        last = min(fc_runs, key=lambda r: r.timed.other_share)  # the quietest
        print()
        print(
            f"fedcare timeline (quietest run, {last.timed.other_share:.0%} other load; run "
            f"folder {last.workdir}; seconds after `fedcare run` started):"
        )
        print()
        print("| milestone | s |")
        print("|---|---:|")
        for name, at in sorted(fedcare_timeline(last), key=lambda m: m[1]):
            print(f"| {name} | {at:.2f} |")
        profile["timeline"] = {name: round(at, 3) for name, at in fedcare_timeline(last)}
    fl_runs = ok_runs("Flower")
    if fl_runs:
        last = min(fl_runs, key=lambda r: r.timed.other_share)
        print()
        print(
            f"Flower timeline (quietest run, {last.timed.other_share:.0%} other load; run "
            f"folder {last.workdir}; seconds after its process started):"
        )
        print()
        print("| milestone | s |")
        print("|---|---:|")
        marks = flower_timeline(last)
        for name, at in marks:
            print(f"| {name} | {at:.2f} |")
        profile["flower_timeline"] = {name: round(at, 3) for name, at in marks}
    if not args.no_profile and args.only != "flower":
        print()
        print(
            f"start-up cost of one process (best of 3, alone) and of {args.sites + 1} "
            f"started at once (best of 2), OMP_NUM_THREADS=1:"
        )
        print()
        print("| what each process does before any work | wall s alone | CPU s | "
              f"wall s, {args.sites + 1} at once | other load |")  # fmt: skip
        print("|---|---:|---:|---:|---:|")
        rows = startup_costs(args.quiet_wait, args.sites + 1)
        for name, alone, cpu, many, other in rows:
            print(f"| {name} | {alone:.2f} | {cpu:.2f} | {many:.2f} | {other:.0%} |")
        profile["startup"] = {
            name: {
                "alone_s": round(a, 3),
                "cpu_s": round(c, 3),
                "all_at_once_s": round(m, 3),
                "other_cpu_share": round(o, 3),
            }
            for name, a, c, m, o in rows
        }
    if args.experiments > 0 and args.only != "flower":
        fl_wall = statistics.median(summary["Flower"]["wall_s"]) if "Flower" in summary else None
        profile["variants"] = run_variants(job_path, folder, args, fl_wall)

    ok = target_met and all(r.ok for rs in results.values() for r in rs)
    out = {
        "bench": "compare_flower",
        "sites": args.sites,
        "rounds": args.rounds,
        "epochs": args.epochs,
        "optimizer": args.optimizer,
        "learning_rate": args.learning_rate,
        "batch_size": args.batch_size,
        "flower_versions": fl_versions,
        "flower_client_cpus": args.flower_client_cpus or "default",
        "fedcare": summary.get("fedcare"),
        "flower": summary.get("Flower"),
        "wall_ratio_fedcare_over_flower": None if ratio is None else round(ratio, 3),
        "target_met": target_met,
        "profile": profile,
        "run_folder": str(folder),
    }
    print(json.dumps(out))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
