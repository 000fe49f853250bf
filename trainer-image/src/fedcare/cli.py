"""The ``fedcare`` command line. Expected errors print one line and exit non-zero."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fedcare.errors import FedcareError, SpecError
from fedcare.local.launch import LAUNCHERS

Handler = Callable[[argparse.Namespace], int]


def _repo_uri(value: str) -> str:
    return value if "://" in value else f"file://{value}"


def _cmd_run(ns: argparse.Namespace) -> int:
    from fedcare.local import run
    from fedcare.ui import ProgressPrinter, summary_table

    if not 0 <= ns.dashboard_port <= 65535:
        raise SpecError(f"--dashboard-port: {ns.dashboard_port} is not a TCP port (0..65535)")
    on_http: Callable[[int], None] | None = None
    if ns.dashboard:
        from fedcare.monitoring.dashboard import announce, dashboard_url

        def show_dashboard(port: int) -> None:
            announce(dashboard_url(port), open_browser=not ns.no_browser)

        on_http = show_dashboard

    printer = None if ns.json else ProgressPrinter()
    status = run(
        ns.job,
        workdir=ns.workdir,
        keep_workdir=ns.keep,
        on_status=printer.update if printer else None,
        check=False,
        http_port=ns.dashboard_port,
        on_http=on_http,
        launcher=ns.launcher,
    )
    if ns.json:
        print(json.dumps(status.to_json_dict(), indent=None, sort_keys=True))
    else:
        summary_table(status)
    if status.phase.value != "Succeeded":
        print(f"fedcare: error: job failed: {status.message}", file=sys.stderr)
        return 1
    return 0


def _cmd_coordinator(ns: argparse.Namespace) -> int:
    from fedcare.coordinator import run_coordinator

    return run_coordinator(ns.config)


def _cmd_trainer(ns: argparse.Namespace) -> int:
    from fedcare.trainer import ParticipantNode

    return ParticipantNode(config_path=ns.config).join_network()


def _cmd_validate(ns: argparse.Namespace) -> int:
    from fedcare.spec import FederatedJob, Participant, load_model, read_yaml

    doc = read_yaml(ns.file)
    kind = doc.get("kind") if isinstance(doc, dict) else None
    model = Participant if kind == "Participant" else FederatedJob
    load_model(model, ns.file)
    print(f"{ns.file}: valid {model.__name__}")
    return 0


def _cmd_synth(ns: argparse.Namespace) -> int:
    from fedcare.data import synthesize

    paths = synthesize(ns.sites, ns.rows, Path(ns.out), fmt=ns.format, seed=ns.seed, task=ns.task)
    for p in paths:
        print(p)
    return 0


def _cmd_token_create(ns: argparse.Namespace) -> int:
    import datetime as dt

    from fedcare.enrollment import TokenStore

    if ns.ttl_hours <= 0:
        raise SpecError("--ttl-hours must be positive")
    token = TokenStore(ns.tokens).issue(
        ns.job, ns.participant, ttl=dt.timedelta(hours=ns.ttl_hours)
    )
    print(token)
    print(
        f"one-time token for participant {ns.participant!r} of job {ns.job!r}, valid "
        f"{ns.ttl_hours:g} h; stored hashed in {ns.tokens}",
        file=sys.stderr,
    )
    return 0


def _cmd_enroll(ns: argparse.Namespace) -> int:
    from fedcare.enrollment import enroll

    pair = enroll(
        ns.endpoint, ns.ca, ns.token, ns.participant, Path(ns.out), server_name=ns.server_name
    )
    print(pair.cert)
    print(pair.key)
    return 0


def _cmd_certs_init(ns: argparse.Namespace) -> int:
    from fedcare.pki import ROLE_OBSERVER, create_ca, issue_client_cert, issue_server_cert

    out = Path(ns.out)
    ca = create_ca(out, ns.job)
    issue_server_cert(ca, out, sans=tuple(ns.san))
    issue_client_cert(ca, out, "fedcare-observer", role=ROLE_OBSERVER)
    for name in ns.participants.split(","):
        issue_client_cert(ca, out, name.strip())
    for path in sorted(out.iterdir()):
        print(path)
    return 0


def _cmd_models_list(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fedcare.repository import open_repository

    repo = open_repository(_repo_uri(ns.repo))
    jobs = [ns.job] if ns.job else repo.jobs()
    table = Table(title=f"model versions in {ns.repo}")
    for col in ("job", "version", "round", "metrics", "participants", "sha256", "created"):
        table.add_column(col)
    for job in jobs:
        for m in repo.list_versions(job):
            metrics = " ".join(f"{k}={v:.4f}" for k, v in sorted(m.metrics.items()))
            table.add_row(
                job,
                m.version,
                str(m.round),
                metrics,
                str(len(m.participants)),
                m.sha256[:12],
                m.created_at,
            )
    Console().print(table)
    return 0


def _cmd_models_show(ns: argparse.Namespace) -> int:
    from fedcare.repository import open_repository

    meta = open_repository(_repo_uri(ns.repo)).get(ns.job, ns.version)
    print(meta.model_dump_json(by_alias=True, indent=2))
    return 0


def _cmd_models_export(ns: argparse.Namespace) -> int:
    from fedcare.repository import open_repository

    print(open_repository(_repo_uri(ns.repo)).export(ns.job, ns.version, Path(ns.out)))
    return 0


def _cmd_models_rollback(ns: argparse.Namespace) -> int:
    from fedcare.repository import NewVersion, check_version, open_repository

    repo = open_repository(_repo_uri(ns.repo))
    source = repo.get(ns.job, check_version(ns.version))
    latest = repo.latest(ns.job)
    if latest is None or latest.version == source.version:
        print(f"{ns.job}: {source.version} is already the latest version; nothing written")
        return 0
    written = repo.write_version(
        ns.job,
        repo.read_weights(ns.job, source.version),  # sha256-verified
        NewVersion(
            round=latest.round,
            parent_version=latest.version,
            metrics=source.metrics,
            train_metrics=source.train_metrics,
            participants=source.participants,
            strategy=source.strategy,
            rolled_back_from=source.version,
        ),
    )
    print(
        f"{ns.job}: {written.version} holds the weights of {source.version} "
        f"(parent {latest.version}); {repo.version_uri(ns.job, written.version)}"
    )
    return 0


def _cmd_audit(ns: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from fedcare.audit import AcceptedRecord, AuditLog, audit_path_for

    path = audit_path_for(_repo_uri(ns.repo), ns.job)
    records = AuditLog(path).read(ns.job)
    if ns.json:
        print(json.dumps([r.model_dump(mode="json") for r in records], sort_keys=True))
        return 0
    table = Table(title=f"audit trail of {ns.job} ({path})")
    for col in ("time", "round", "participant", "event", "samples", "epsilon", "sha256", "reason"):
        table.add_column(col)
    for r in records:
        if isinstance(r, AcceptedRecord):
            eps = "-" if r.epsilon is None else f"{r.epsilon:.4g}"
            row = [str(r.samples), eps, r.sha256[:12], ""]
        else:
            reason = f"{r.reason}: {r.detail}" if r.detail else r.reason
            row = ["", "", (r.sha256 or "")[:12], reason]
        table.add_row(r.time, str(r.round), r.participant, r.event, *row)
    Console().print(table)
    if not records:
        print(f"{ns.job}: no audit records in {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fedcare``."""
    parser = argparse.ArgumentParser(
        prog="fedcare",
        description="Federated learning for hospitals: patient records never leave their site.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a FederatedJob manifest on this machine")
    p.add_argument("job", help="FederatedJob YAML with inline participants")
    p.add_argument("--json", action="store_true", help="print the final status as JSON")
    p.add_argument("--workdir", help="keep certificates, configs and logs here")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="print the web dashboard's URL and open it in a browser",
    )
    p.add_argument(
        "--dashboard-port",
        type=int,
        default=0,
        metavar="PORT",
        help="serve the dashboard (the coordinator's HTTP side) on this port; default: a free one",
    )
    p.add_argument("--no-browser", action="store_true", help="with --dashboard: print the URL only")
    p.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default=None,
        help="how the coordinator and trainer processes start: forked from one process that "
        "imported torch once (forkserver, the default on Linux), or each a fresh "
        "interpreter (spawn); $FEDCARE_LAUNCHER sets the default",
    )
    p.set_defaults(handler=_cmd_run)

    p = sub.add_parser("validate", help="check a FederatedJob or Participant manifest")
    p.add_argument("file")
    p.set_defaults(handler=_cmd_validate)

    p = sub.add_parser("coordinator", help="run the coordinator role (used by pods)")
    p.add_argument("--config", required=True)
    p.set_defaults(handler=_cmd_coordinator)

    p = sub.add_parser("trainer", help="run one participant's trainer (used by pods)")
    p.add_argument("--config", required=True)
    p.set_defaults(handler=_cmd_trainer)

    certs = sub.add_parser("certs", help="certificates for running the roles by hand")
    certs_sub = certs.add_subparsers(dest="certs_cmd", required=True)
    p = certs_sub.add_parser("init", help="a job CA, the coordinator's and participants' certs")
    p.add_argument("--job", required=True)
    p.add_argument("--participants", required=True, help="comma-separated participant names")
    p.add_argument("--out", default="certs")
    p.add_argument(
        "--san",
        action="append",
        default=["fedcare-coordinator", "localhost", "127.0.0.1"],
        help="extra DNS name or IP of the coordinator (repeatable)",
    )
    p.set_defaults(handler=_cmd_certs_init)

    token = sub.add_parser("token", help="one-time enrollment tokens for sites")
    token_sub = token.add_subparsers(dest="token_cmd", required=True)
    p = token_sub.add_parser("create", help="issue a token bound to one participant name")
    p.add_argument("job")
    p.add_argument("--participant", required=True, help="the name the token enrolls")
    p.add_argument(
        "--tokens",
        default="fedcare-tokens.json",
        help="the token store the coordinator reads (enrollment.tokensFile)",
    )
    p.add_argument("--ttl-hours", type=float, default=24.0, help="validity (default 24 h)")
    p.set_defaults(handler=_cmd_token_create)

    p = sub.add_parser("enroll", help="trade a one-time token for this site's certificate")
    p.add_argument("--endpoint", required=True, help="host:port of the Enrollment service")
    p.add_argument("--ca", required=True, help="the job CA's certificate (PEM)")
    p.add_argument("--token", required=True)
    p.add_argument("--participant", required=True)
    p.add_argument("--out", default="certs", help="folder for the key and certificate")
    p.add_argument("--server-name", default="fedcare-coordinator")
    p.set_defaults(handler=_cmd_enroll)

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_cmd", required=True)
    p = data.add_parser("synth", help="write synthetic non-IID hospital datasets")
    p.add_argument("--sites", type=int, default=3)
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--out", default="data")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--task",
        choices=["binary-classification", "survival"],
        default="binary-classification",
        help="label 'readmitted' (0/1), or survival columns 'time' (days) and 'event' (0/1)",
    )
    p.set_defaults(handler=_cmd_synth)

    models = sub.add_parser("models", help="the model repository").add_subparsers(
        dest="models_cmd", required=True
    )
    p = models.add_parser("list", help="list stored versions")
    p.add_argument("--repo", default="./fedcare-models", help="folder or file:// / s3:// URI")
    p.add_argument("--job")
    p.set_defaults(handler=_cmd_models_list)
    p = models.add_parser("show", help="print a version's metadata")
    p.add_argument("job")
    p.add_argument("version")
    p.add_argument("--repo", default="./fedcare-models")
    p.set_defaults(handler=_cmd_models_show)
    p = models.add_parser("export", help="copy a version's weights out")
    p.add_argument("job")
    p.add_argument("version")
    p.add_argument("--out", required=True)
    p.add_argument("--repo", default="./fedcare-models")
    p.set_defaults(handler=_cmd_models_export)
    p = models.add_parser(
        "rollback",
        help="make a version's weights the latest again, as a new version (history is kept)",
    )
    p.add_argument("job")
    p.add_argument("version", help="the earlier version to roll back to, e.g. v0003")
    p.add_argument("--repo", default="./fedcare-models", help="folder or file:// / s3:// URI")
    p.set_defaults(handler=_cmd_models_rollback)

    p = sub.add_parser("audit", help="print a job's audit trail (accepted and rejected updates)")
    p.add_argument("job")
    p.add_argument("--repo", default="./fedcare-models", help="folder or file:// URI")
    p.add_argument("--json", action="store_true", help="print the records as a JSON array")
    p.set_defaults(handler=_cmd_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedcare`` command."""
    ns = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if ns.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    if ns.command == "run":
        logging.getLogger().setLevel(logging.WARNING)
    handler: Handler = ns.handler
    try:
        return handler(ns)
    except SpecError as err:
        print(f"fedcare: error: {err}", file=sys.stderr)
        return 2
    except FedcareError as err:
        print(f"fedcare: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fedcare: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
