"""Stand-ins for docker, kind, kubectl, helm and sleep, for running kind-cluster/ scripts here.

tests/deploy/test_kind_scripts.py copies this file (with a shebang) into a folder it puts first
on PATH under each tool's name. Every call is appended to ``$FAKE_TOOLS_LOG`` as one JSON line:
the tool, its arguments, what it read on stdin (``-f -``) and the files ``--from-file`` named.
The answers are what the real tools would print where the scripts read them: the node's
address, a one-time token, the job CA's certificate, phase Succeeded.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

PEM = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"


def _record(tool: str, argv: list[str]) -> None:
    entry: dict[str, object] = {"tool": tool, "argv": argv}
    if "-" in argv and ("-f" in argv or "--filename" in argv):
        entry["stdin"] = sys.stdin.read()
    files = {}
    for arg in argv:
        if arg.startswith("--from-file="):
            key, _, path = arg.removeprefix("--from-file=").partition("=")
            files[key] = Path(path).read_text()
    if files:
        entry["files"] = files
    with open(os.environ["FAKE_TOOLS_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


def _dry_run_object(argv: list[str]) -> str:
    kind, name = argv[argv.index("create") + 1], ""
    if kind == "namespace":
        name = argv[argv.index("namespace") + 1]
        return f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
    name = argv[argv.index("generic") + 1]
    return f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n"


def docker(argv: list[str]) -> str:
    if argv[:1] == ["inspect"]:
        return os.environ["FAKE_TOOLS_NODE_IP"] + "\n"
    if argv[:2] == ["image", "inspect"]:
        return "[]\n"
    if argv[:1] == ["run"] and "synth" in argv:
        volume = argv[argv.index("-v") + 1]
        out = Path(volume.rsplit(":", 1)[0])
        for site in (1, 2, 3):
            (out / f"site-{site}.csv").write_text("age,readmitted\n70,1\n")
    return ""


def kind(argv: list[str]) -> str:
    if argv[:2] == ["get", "clusters"]:
        return os.environ.get("FAKE_TOOLS_CLUSTERS", "")
    return ""


def kubectl(argv: list[str]) -> str:
    if "exec" in argv and "token" in argv:
        return os.environ["FAKE_TOOLS_TOKEN"] + "\n"
    if "--dry-run=client" in argv:
        return _dry_run_object(argv)
    if "get" in argv and "secret" in argv:
        return base64.b64encode(PEM.encode()).decode()
    if "get" in argv and "-w" in argv:
        return "NAME          PHASE       ROUND   TOTAL\nreadmission   Succeeded   5       5\n"
    if "get" in argv and any("status.phase" in a for a in argv):
        return "Succeeded"
    return ""


def main() -> int:
    tool = Path(sys.argv[0]).name
    argv = sys.argv[1:]
    _record(tool, argv)
    answer = {"docker": docker, "kind": kind, "kubectl": kubectl}.get(tool)
    sys.stdout.write(answer(argv) if answer else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
