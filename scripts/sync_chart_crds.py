#!/usr/bin/env python3
"""Copy crds/*.yaml into the Helm chart (helm-chart/fedcare/crds/), byte for byte.

crds/ is generated from the spec models (scripts/gen_crds.py); the chart ships the same files.
``--check`` exits 1, naming the files, when the chart's copy differs from crds/ (a file
changed, missing, or left over); scripts/test.sh runs it with the other drift checks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "crds"
CHART_CRDS = ROOT / "helm-chart" / "fedcare" / "crds"


def drift(source: Path = SOURCE, target: Path = CHART_CRDS) -> list[str]:
    """What differs between ``source`` and ``target``: one line per file, empty when in sync."""
    want = {p.name: p.read_bytes() for p in sorted(source.glob("*.yaml"))}
    have = (
        {p.name: p.read_bytes() for p in sorted(target.glob("*.yaml"))} if target.is_dir() else {}
    )
    out = []
    for name, data in want.items():
        if name not in have:
            out.append(f"{name}: missing from the chart")
        elif have[name] != data:
            out.append(f"{name}: differs from crds/{name}")
    out.extend(f"{name}: not in crds/" for name in sorted(set(have) - set(want)))
    return out


def sync(source: Path = SOURCE, target: Path = CHART_CRDS) -> list[str]:
    """Make ``target`` a copy of ``source``'s YAML files; returns what changed."""
    changed = drift(source, target)
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.yaml")):
        dest = target / path.name
        if not dest.is_file() or dest.read_bytes() != path.read_bytes():
            dest.write_bytes(path.read_bytes())
    wanted = {p.name for p in source.glob("*.yaml")}
    for stale in target.glob("*.yaml"):
        if stale.name not in wanted:
            stale.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    """Sync, or with ``--check`` only report drift (exit 1)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when the chart's CRDs drifted")
    ns = parser.parse_args(argv)
    if ns.check:
        problems = drift()
        if problems:
            print(
                "helm-chart/fedcare/crds drifted from crds/: "
                + "; ".join(problems)
                + " (run scripts/sync_chart_crds.py)",
                file=sys.stderr,
            )
            return 1
        return 0
    for line in sync():
        print(f"synced {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
