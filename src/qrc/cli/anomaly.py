"""``qrc anomalies``: what the anomaly detector learns, what it finds, how well it does.

- ``train``: learn from the audit history of ``--data-dir`` and show what is usual for each
  token and key (the server learns the same by itself at start; nothing is saved);
- ``scan``: learn from the history before the last ``--recent-hours`` (or ``--since``),
  score what came after and list the anomalies (read only: nothing is recorded);
- ``evaluate``: the injected scenarios on synthetic traffic; prints precision and recall.

Registered in ``qrc.cli.main`` as ``("anomalies", "qrc.cli.anomaly:anomalies_app")``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    key_service,
    out,
    parse_time,
    print_json,
)
from qrc.cli.io import fail

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.monitor.anomaly import AnomalyModel, DetectorSettings

__all__ = ["anomalies_app"]

anomalies_app = typer.Typer(
    help="Anomaly detection over audit and usage events: train, scan, evaluate.",
    no_args_is_help=True,
)

WindowOpt = Annotated[
    float,
    typer.Option("--window", min=10, max=3600, help="Window length in seconds."),
]
DaysOpt = Annotated[
    float, typer.Option("--days", min=0.01, max=90, help="Days of history to learn from.")
]
ContaminationOpt = Annotated[
    float,
    typer.Option(
        "--contamination", min=0.0001, max=0.5, help="Share of history windows called outliers."
    ),
]
MinWindowsOpt = Annotated[
    int, typer.Option("--min-windows", min=2, help="Active windows of history needed.")
]


def _settings(window: float, contamination: float, min_windows: int) -> DetectorSettings:
    from qrc.monitor.anomaly import DetectorSettings  # noqa: PLC0415

    return DetectorSettings(
        window_seconds=window, contamination=contamination, min_windows=min_windows
    )


def _train(
    service: KeyService, settings: DetectorSettings, days: float, split: datetime
) -> AnomalyModel:
    from qrc.monitor.anomaly import AnomalyModel, NotTrained  # noqa: PLC0415
    from qrc.monitor.anomaly_observer import read_history  # noqa: PLC0415

    history = read_history(service, split - timedelta(days=days), split)
    try:
        return AnomalyModel.train(history, settings)
    except NotTrained as exc:
        fail(f"not enough history to learn from: {exc} (try --days or --min-windows)")


@anomalies_app.command()
def train(
    data_dir: DataDirOpt = DEFAULT_DIR,
    days: DaysOpt = 14.0,
    window: WindowOpt = 60.0,
    contamination: ContaminationOpt = 0.01,
    min_windows: MinWindowsOpt = 200,
    as_json: JsonOpt = False,
) -> None:
    """Learn from the audit history and show what is usual for each token and key."""
    with key_service(data_dir) as service:
        model = _train(
            service, _settings(window, contamination, min_windows), days, datetime.now(UTC)
        )
    summary = model.summary()
    if as_json:
        print_json(summary)
        return
    from rich.table import Table  # noqa: PLC0415

    table = Table("entity", "windows", "events", f"usual per {window:g} s", "failed",
                  "sources", "busiest hours (UTC)", title="What is usual")  # fmt: skip
    for entity in summary["entities"]:
        table.add_row(
            f"{entity['kind']} {entity['name']}", str(entity["windows"]), str(entity["events"]),
            f"{entity['usual_per_window']:g}", f"{100 * entity['failure_share']:.1f}%",
            str(entity["sources"]), ", ".join(f"{h:02d}" for h in entity["busiest_hours_utc"]),
        )  # fmt: skip
    out.print(table)
    out.print(
        f"learnt from {summary['trained_events']} events in {summary['trained_windows']} "
        f"active windows, {summary['since']} to {summary['until']}"
    )


@anomalies_app.command()
def scan(
    data_dir: DataDirOpt = DEFAULT_DIR,
    recent_hours: Annotated[
        float, typer.Option("--recent-hours", min=0.01, max=24 * 30, help="Hours to score.")
    ] = 24.0,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Score from this time on (ISO 8601), not --recent-hours."),
    ] = None,
    days: DaysOpt = 14.0,
    window: WindowOpt = 60.0,
    contamination: ContaminationOpt = 0.01,
    min_windows: MinWindowsOpt = 200,
    as_json: JsonOpt = False,
) -> None:
    """Score the last hours of the audit history against the days before them."""
    from qrc.monitor.anomaly_observer import read_history  # noqa: PLC0415

    split = datetime.now(UTC) - timedelta(hours=recent_hours)
    if since is not None:
        split = parse_time(since, "--since")
    with key_service(data_dir) as service:
        model = _train(service, _settings(window, contamination, min_windows), days, split)
        events = read_history(service, split, datetime.now(UTC))
    anomalies = model.score(events)
    if as_json:
        print_json(
            {
                "scored_since": split.isoformat(),
                "scored_events": len(events),
                "anomalies": [a.as_dict() for a in anomalies],
            }
        )
        return
    for anomaly in anomalies:
        when = anomaly.start.strftime("%Y-%m-%d %H:%M:%SZ")
        out.print(f"{when}  {anomaly.severity:<6}  {anomaly.explanation}", highlight=False)
    out.print(f"{len(anomalies)} anomalies in {len(events)} events since {split:%Y-%m-%d %H:%M}Z")


@anomalies_app.command()
def evaluate(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic traffic.")] = 7,
    train_days: Annotated[
        int, typer.Option("--train-days", min=1, max=60, help="Days of normal traffic to learn.")
    ] = 7,
    test_days: Annotated[
        int, typer.Option("--test-days", min=1, max=60, help="Days scored, one attack each.")
    ] = 10,
    window: WindowOpt = 60.0,
    contamination: ContaminationOpt = 0.01,
    as_json: JsonOpt = False,
) -> None:
    """Inject the attack scenarios into synthetic traffic; print precision and recall."""
    from qrc.monitor.anomaly_scenarios import evaluate as run  # noqa: PLC0415

    report = run(
        seed=seed,
        train_days=train_days,
        test_days=test_days,
        settings=_settings(window, contamination, 2),
    )
    if as_json:
        print_json(report)
        return
    for name, scenario in report["scenarios"].items():
        out.print(f"{name:<12} found {scenario['found']}/{scenario['instances']}")
    out.print(
        f"precision {report['precision']:.3f}  recall {report['recall']:.3f}  "
        f"false alarms {report['false_alarms_per_day']:.1f}/day "
        f"({report['flagged_windows']} windows flagged)"
    )
