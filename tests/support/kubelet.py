"""A stand-in kubelet for tests: runs a pod template's container as a local process.

No kubelet or container runtime can run on the machines these tests run on. :class:`FakeKubelet`
does what a kubelet would for the pods the operator builds, on this machine:

- each volume is materialized under the pod's own temporary folder: a ConfigMap's or Secret's
  keys become files (Secret keys decoded, mode 0600), an ``emptyDir`` an empty folder; a
  ``hostPath`` is the host folder itself (PVCs are not supported); :meth:`FakeKubelet.resync`
  refreshes a running pod's ConfigMap files, as kubelet's periodic sync does;
- every in-pod path (each ``volumeMounts[].mountPath``: ``/etc/fedcare/...``,
  ``/var/lib/fedcare``, ``/tmp``, the dataset folder) is rewritten to where it was materialized,
  in the command, the environment, the working folder and the text of mounted ConfigMaps;
- ``replace`` rewrites other strings first, e.g. the coordinator Service's DNS name and the
  ``0.0.0.0`` listen addresses to ``127.0.0.1`` with ports the test chose;
- the image's ``fedcare`` command is this interpreter's ``python -m fedcare``.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from tests.support.apiserver import ApiServer
from tests.support.operator import free_port


class FakeKubelet:
    """Starts pod-template containers as local processes (see the module docstring)."""

    def __init__(
        self, api: ApiServer, root: Path, replace: Mapping[str, str], namespace: str = "default"
    ) -> None:
        self.api = api
        self.root = root
        self.replace = dict(replace)
        self.namespace = namespace
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        #: Per started pod: its volumes, their folders and its path rewriter (for resync).
        self._pods: dict[str, tuple[dict[str, Any], dict[str, Path], Callable[[str], str]]] = {}

    def _get(self, kind: str, name: str) -> dict[str, Any]:
        result = self.api.request("GET", f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        assert result.status == 200, f"{kind}/{name}: {result.body}"
        found: dict[str, Any] = result.body
        return found

    def _materialize(self, volume: dict[str, Any], folder: Path) -> Path:
        if "hostPath" in volume:
            return Path(volume["hostPath"]["path"])
        folder.mkdir(parents=True, exist_ok=True)
        if "configMap" in volume:
            cm = self._get("configmaps", volume["configMap"]["name"])
            for key, value in (cm.get("data") or {}).items():
                (folder / key).write_text(value)
        elif "secret" in volume:
            secret = self._get("secrets", volume["secret"]["secretName"])
            for key, value in (secret.get("data") or {}).items():
                path = folder / key
                path.touch(mode=0o600)
                path.write_bytes(base64.b64decode(value))
        elif "emptyDir" not in volume:
            raise NotImplementedError(f"volume kind not supported here: {sorted(volume)}")
        return folder

    def start(self, name: str, pod_spec: Mapping[str, Any]) -> subprocess.Popen[bytes]:
        """Run the first container of ``pod_spec`` as process ``name`` (log in its folder)."""
        pod_dir = self.root / name
        pod_dir.mkdir(parents=True, exist_ok=True)
        container = pod_spec["containers"][0]
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mounts: dict[str, str] = {}
        materialized: dict[str, Path] = {}
        for mount in container.get("volumeMounts", []):
            vname = mount["name"]
            if vname not in materialized:
                materialized[vname] = self._materialize(volumes[vname], pod_dir / "volumes" / vname)
            local = materialized[vname]
            if mount.get("subPath"):
                local = local / mount["subPath"]
            mounts[mount["mountPath"]] = str(local)
        alternation = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./-])({alternation})(?=[/\s\"',:]|$)")

        def rewrite(text: str) -> str:
            for old, new in self.replace.items():
                text = text.replace(old, new)
            return pattern.sub(lambda m: mounts[m.group(1)], text)

        self._pods[name] = (volumes, materialized, rewrite)
        self._write_config_maps(name)
        command = [
            rewrite(arg) for arg in [*container.get("command", []), *container.get("args", [])]
        ]
        if command and command[0] == "fedcare":
            command = [sys.executable, "-m", "fedcare", *command[1:]]
        env = dict(os.environ)
        env.pop("KUBECONFIG", None)
        for var in container.get("env", []):
            env[var["name"]] = rewrite(str(var.get("value", "")))
        cwd = rewrite(container["workingDir"]) if container.get("workingDir") else str(pod_dir)
        log = open(pod_dir / "log.txt", "ab")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.processes[name] = proc
        return proc

    def _write_config_maps(self, name: str) -> None:
        volumes, materialized, rewrite = self._pods[name]
        for vname, folder in materialized.items():
            if "configMap" in volumes[vname]:
                cm = self._get("configmaps", volumes[vname]["configMap"]["name"])
                for key, value in (cm.get("data") or {}).items():
                    # Replace, as kubelet swaps a symlink: a reader sees old or new, never half.
                    tmp = folder / f".{key}.tmp"
                    tmp.write_text(rewrite(value))
                    tmp.replace(folder / key)

    def resync(self, name: str) -> None:
        """Refresh a started pod's ConfigMap volumes from the API server, as kubelet does
        periodically (about once a minute) for folder mounts."""
        self._write_config_maps(name)

    def log(self, name: str) -> str:
        """What process ``name`` printed so far."""
        path = self.root / name / "log.txt"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, name: str) -> None:
        """Kill one process (as a crashed container) and reap it."""
        proc = self.processes.pop(name)
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        """Kill every process still running."""
        for name in list(self.processes):
            self.stop(name)


def local_kubelet(api: ApiServer, root: Path, job: str) -> tuple[FakeKubelet, int]:
    """A FakeKubelet for one job's pods on loopback: the coordinator Service's name and the
    pods' listen addresses become ``127.0.0.1`` with free ports; returns it and the gRPC port
    (where the operator's status daemon must dial)."""
    grpc_port, http_port, enroll_port = free_port(), free_port(), free_port()
    kubelet = FakeKubelet(
        api,
        root,
        replace={
            f"{job}-coordinator.default.svc:50051": f"127.0.0.1:{grpc_port}",
            "0.0.0.0:50051": f"127.0.0.1:{grpc_port}",
            "0.0.0.0:8080": f"127.0.0.1:{http_port}",
            "0.0.0.0:50052": f"127.0.0.1:{enroll_port}",
        },
    )
    return kubelet, grpc_port


__all__ = ["FakeKubelet", "local_kubelet"]
