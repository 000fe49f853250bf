"""The operator under load: N FederatedJobs (default 50, 3 inline sites each) applied at once.

Runs the emulated API server of ``tests/support/apiserver.py`` in this process (no
kube-apiserver can run on this machine) and the real operator as a separate process
(``python -m fedcare_operator --standalone``), then creates all jobs at once from 16 threads and
measures the seconds until every child exists (per job: 3 Secrets, a ConfigMap, a Deployment, a
Service, 3 Participants; per Participant: a Secret, a ConfigMap, a trainer Job) and every job's
and Participant's ``.status.phase`` is at least ``Pending``; and the operator's peak RSS
(``VmHWM``). No coordinator runs: ``FEDCARE_COORDINATOR_ENDPOINT`` points the status daemons at a
closed loopback port, so each of the N daemons retries with backoff meanwhile (as before its
coordinator pod starts in a cluster). Target: under 30 s for 50 jobs.

Run: ``.venv/bin/python bench/operator_load.py`` (about 30 s); ``--record`` replaces this script's
section of bench/RESULTS.md with the run's figures. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.apiserver import start_apiserver  # noqa: E402

from benchutil import CpuWatch, machine_line, tree_line, wait_for_quiet  # noqa: E402

SECTION = "## operator_load.py: FederatedJobs applied at once against the emulated API server"
NS = "default"
FJ = f"/apis/fedcare.io/v1alpha1/namespaces/{NS}/federatedjobs"
#: Children per job: kind -> count (3 inline sites).
PER_JOB = {
    "secrets": 3 + 3,
    "configmaps": 1 + 3,
    "deployments": 1,
    "services": 1,
    "participants": 3,
    "jobs": 3,
}
_GROUPS = {
    "secrets": "",
    "configmaps": "",
    "services": "",
    "deployments": "apps",
    "jobs": "batch",
    "participants": "fedcare.io",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _job(i: int) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "federatedjob.yaml").read_text())
    doc["metadata"]["name"] = f"job-{i:03d}"
    return doc


def _vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a running process (``VmHWM``), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(jobs: int, timeout: float) -> dict[str, Any]:
    """One measurement; returns its figures."""
    with (
        tempfile.TemporaryDirectory(prefix="fedcare-bench-operator-") as tmp,
        start_apiserver(Path(tmp) / "api") as api,
    ):
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            result = api.request(
                "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd
            )
            assert result.status == 201, result.body
        live = _free_port()
        env = {
            **os.environ,
            "KUBECONFIG": str(api.kubeconfig),
            "FEDCARE_COORDINATOR_ENDPOINT": f"127.0.0.1:{_free_port()}",
        }
        log_path = Path(tmp) / "operator.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fedcare_operator",
                    "--standalone",
                    "--liveness",
                    f"http://127.0.0.1:{live}/healthz",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{live}/healthz", timeout=1):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(log_path.read_text()[-2000:]) from None
                    time.sleep(0.1)
            rss_idle = _vm_hwm_mib(proc.pid)
            cpu0 = _cpu_seconds(proc.pid)
            watch = CpuWatch()
            start = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                codes = list(
                    pool.map(lambda i: api.request("POST", FJ, _job(i)).status, range(jobs))
                )
            applied = time.monotonic() - start
            assert codes == [201] * jobs, codes
            want = {kind: n * jobs for kind, n in PER_JOB.items()}

            def progress() -> tuple[dict[str, int], int, int]:
                have = {k: len(api.objects(_GROUPS[k], k)) for k in PER_JOB}
                fjs = api.objects("fedcare.io", "federatedjobs")
                parts = api.objects("fedcare.io", "participants")
                fj_ok = sum(1 for o in fjs if (o.get("status") or {}).get("phase"))
                p_ok = sum(1 for o in parts if (o.get("status") or {}).get("phase"))
                return have, fj_ok, p_ok

            children_at = None
            while True:
                have, fj_ok, p_ok = progress()
                now = time.monotonic() - start
                if children_at is None and all(have[k] >= want[k] for k in want):
                    children_at = now
                if children_at is not None and fj_ok == jobs and p_ok == 3 * jobs:
                    break
                if now > timeout:
                    raise RuntimeError(f"not done after {timeout:g}s: {have} {fj_ok} {p_ok}")
                time.sleep(0.05)
            done = time.monotonic() - start
            other, share = watch.others(extra_own=_cpu_seconds(proc.pid) - cpu0)
            return {
                "jobs": jobs,
                "objects": sum(want.values()),
                "apply_seconds": round(applied, 2),
                "children_seconds": round(children_at, 2),
                "all_pending_seconds": round(done, 2),
                "operator_cpu_seconds": round(_cpu_seconds(proc.pid) - cpu0, 2),
                "operator_rss_idle_mib": round(rss_idle, 1),
                "operator_peak_rss_mib": round(_vm_hwm_mib(proc.pid), 1),
                "other_cpu_share": round(share, 3),
                "other_cpu_seconds": round(other, 1),
            }
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _record(result: dict[str, Any], machine: str, tree: str) -> None:
    path = Path(__file__).resolve().parent / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    section = "\n".join(
        [
            SECTION,
            "",
            f"`bench/operator_load.py --jobs {result['jobs']}`, measured "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {machine}; {tree}.",
            "The API server is the in-process emulator of tests/support (no kube-apiserver runs",
            "here), the operator a separate process (kopf, 16 handler threads); no coordinator",
            "runs, so every job's status daemon retries a closed port meanwhile.",
            "",
            "| | |",
            "|---|---|",
            f"| FederatedJobs created at once (16 client threads) | {result['jobs']} "
            f"(in {result['apply_seconds']} s) |",
            f"| child objects | {result['objects']} (per job: 3 Secrets, 1 ConfigMap, "
            "1 Deployment, 1 Service, 3 Participants; per Participant: 1 Secret, 1 ConfigMap, "
            "1 Job) |",
            f"| seconds until every child exists | **{result['children_seconds']}** |",
            f"| seconds until every job and Participant status is at least Pending | "
            f"**{result['all_pending_seconds']}** (target < 30) |",
            f"| operator CPU-seconds | {result['operator_cpu_seconds']} |",
            f"| operator peak RSS (VmHWM) | **{result['operator_peak_rss_mib']} MiB** "
            f"(idle after start-up: {result['operator_rss_idle_mib']} MiB) |",
            f"| other processes' share of the CPUs meanwhile | {result['other_cpu_share']:.0%} |",
            "",
        ]
    )
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[nxt + 1 :] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    """Run the benchmark; ``--record`` writes this script's section of RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="wait for an idle machine")
    parser.add_argument("--record", action="store_true", help="update bench/RESULTS.md")
    ns = parser.parse_args()
    machine, tree = machine_line(), tree_line()
    print(machine)
    print(tree)
    waited, share = wait_for_quiet(ns.quiet_wait)
    print(f"waited {waited:.0f}s for a quiet machine (busy share {share:.0%})")
    result = run(ns.jobs, ns.timeout)
    for key, value in result.items():
        print(f"{key:>28}: {value}")
    if ns.record:
        _record(result, machine.removeprefix("machine: "), tree.removeprefix("code: "))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
