"""``fedcare-operator``: run the operator (the same as ``kopf run -m fedcare_operator``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fedcare-operator``."""
    parser = argparse.ArgumentParser(
        prog="fedcare-operator",
        description="Reconcile fedcare FederatedJob and Participant resources.",
    )
    parser.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; glob patterns allowed); default: all",
    )
    parser.add_argument(
        "--standalone", action="store_true", help="no peering with other operator replicas"
    )
    parser.add_argument(
        "--liveness",
        default=None,
        metavar="URL",
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fedcare-operator``."""
    ns = build_parser().parse_args(argv)
    import kopf

    import fedcare_operator  # noqa: F401 - registers the handlers

    kopf.configure(verbose=ns.verbose)
    try:
        kopf.run(
            standalone=ns.standalone,
            clusterwide=not ns.namespace,
            namespaces=ns.namespace,
            liveness_endpoint=ns.liveness,
        )
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
