"""Terminal output of ``fedcare run``: a line per round while it trains, a summary at the end."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fedcare.spec import FederatedJobStatus, Phase

#: Metrics shown in the terminal, in this order (``--json`` and /status carry all of them).
SHOWN_METRICS = ("auroc", "cindex", "accuracy", "rmse", "mae", "mse", "loss")


def _shown(metrics: dict[str, float], limit: int = 3) -> list[str]:
    return [k for k in SHOWN_METRICS if k in metrics][:limit]


def _fmt_metrics(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in _shown(metrics))


class ProgressPrinter:
    """Prints phase changes and each completed round once."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=False, highlight=False)
        self._phase: Phase | None = None
        self._rounds_seen = 0

    def update(self, status: FederatedJobStatus) -> None:
        """Called with every status event."""
        for r in status.rounds:
            if r.round > self._rounds_seen:
                self._rounds_seen = r.round
                self.console.print(
                    f"  round {r.round}/{status.total_rounds}  {_fmt_metrics(r.metrics)}  "
                    f"sites {r.participants}  {r.duration_seconds:.2f}s  {r.model_version}"
                )
        if status.phase != self._phase:
            self._phase = status.phase
            msg = f" - {status.message}" if status.message else ""
            self.console.print(f"[bold]{status.phase.value}[/bold]{msg}")


def summary_table(status: FederatedJobStatus, console: Console | None = None) -> None:
    """The final table: one row per round kept in the status."""
    console = console or Console(highlight=False)
    keys = _shown(status.rounds[-1].metrics) if status.rounds else []
    table = Table(title=f"{status.phase.value}: {status.message or ''}".rstrip(": "))
    table.add_column("round", justify="right")
    for k in keys:
        table.add_column(k, justify="right")
    table.add_column("sites", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("version")
    for r in status.rounds:
        table.add_row(
            str(r.round),
            *[f"{r.metrics[k]:.4f}" if k in r.metrics else "-" for k in keys],
            str(r.participants),
            f"{r.duration_seconds:.2f}",
            r.model_version,
        )
    console.print(table)
    if status.latest_model is not None:
        console.print(
            f"latest model: {status.latest_model.uri} (sha256 {status.latest_model.sha256[:16]}...)"
        )
