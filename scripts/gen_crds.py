#!/usr/bin/env python3
"""Generate crds/*.yaml (the CustomResourceDefinitions) from fedcare's pydantic spec models.

``--check`` exits 1 when the checked-in files differ from what the models generate (or when a
stale file is left in crds/), naming the files; CI runs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crds"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when crds/ drifted")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the CRD files")
    ns = parser.parse_args(argv)

    from fedcare_operator.crdgen import generate

    files = generate()
    if ns.check:
        drift = sorted(
            name
            for name, text in files.items()
            if not (ns.out / name).is_file() or (ns.out / name).read_text() != text
        )
        stale = (
            sorted(p.name for p in ns.out.glob("*.yaml") if p.name not in files)
            if ns.out.is_dir()
            else []
        )
        if drift or stale:
            what = ", ".join([*drift, *(f"{s} (not generated)" for s in stale)])
            print(
                f"CRDs drifted from the spec models: {what}; run scripts/gen_crds.py",
                file=sys.stderr,
            )
            return 1
        return 0
    ns.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = ns.out / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
