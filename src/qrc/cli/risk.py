"""``qrc risk`` (harvest-now-decrypt-later risk of a data directory) and ``qrc advise``.

``qrc risk`` opens the key service of ``--data-dir`` (as ``qrc admin`` does) and assesses
every key, indexed data type and the TLS channel (:mod:`qrc.monitor.risk`) under the risk
model of ``--model`` or ``QRC_RISK_FILE``. ``qrc advise`` needs no data directory: it asks
the parameter advisor (:mod:`qrc.monitor.advisor`), measuring the candidates on this machine.
Registered in ``qrc.cli.main`` as ``("risk", "qrc.cli.risk:risk_app")`` and
``("advise", "qrc.cli.risk:advise_app")``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrc.cli.admin.common import DEFAULT_DIR, DataDirOpt, JsonOpt, key_service
from qrc.cli.io import fail, write_output

if TYPE_CHECKING:
    from qrc.monitor.advisor import Advice

__all__ = ["advise_app", "risk_app"]

_PURPOSES = ("key-exchange", "encryption", "data-at-rest", "signature", "long-lived-signature")


def _margin(verdicts: list[dict[str, Any]], horizon: str) -> str:
    for verdict in verdicts:
        if verdict["horizon"] == horizon and verdict["margin_years"] is not None:
            return f"{verdict['margin_years']:+.1f}"
    return "-"


def _risk_table(doc: dict[str, Any]) -> str:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(record=True, width=140, file=io.StringIO())
    indicator = doc["quantum_threat_indicator"]
    console.print(f"quantum threat level: {indicator['level']} (score {indicator['score']}/100)")
    for reason in indicator["reasons"]:
        console.print(f"  {reason}")
    migration = doc["migration"]
    console.print(
        f"y (migration): {migration['years']:.2f} years, {migration['source']} "
        f"(lead time {migration['lead_time_years']:g} years + measured work "
        f"{migration['machine_seconds']:.1f} s: {migration['keys_to_rotate']} key(s) to "
        f"rotate, {migration['objects_to_rewrap']} object(s) to rewrap)"
    )
    horizons = Table("horizon", "year", "years away", "source", title="z: quantum-threat horizons")
    for h in indicator["horizons"]:
        horizons.add_row(h["name"], f"{h['year']:g}", f"{h['yearsAway']:.1f}", h["source"])
    keys = Table(
        "key",
        "purpose",
        "algorithm",
        "protection",
        "x",
        "exposed under",
        "margin (median)",
        "reason",
        title="Keys",
    )
    for key in doc["keys"]:
        keys.add_row(
            key["name"],
            key["purpose"],
            key["algorithm"],
            key["protection"],
            f"{key['x_years']:g}",
            ", ".join(key["exposed_under"]) or "none",
            _margin(key["verdicts"], "median"),
            key["reason"],
        )
    types = Table(
        "data type",
        "objects",
        "classical",
        "x",
        "exposed under",
        "margin (median)",
        title="Data types (encrypted-data index)",
    )
    for item in doc["data_types"]:
        types.add_row(
            item["data_type"],
            str(item["objects"]),
            str(item["classical_objects"]),
            f"{item['x_years']:g}",
            ", ".join(item["exposed_under"]) or "none",
            _margin(item["verdicts"], "median"),
        )
    for table in (horizons, keys, types):
        console.print(table)
    channel = doc["channel"]
    exposed = ", ".join(channel["exposed_under"]) or "none"
    console.print(
        f"TLS channel ({channel['tls_mode']}): exposed under {exposed}: {channel['reason']}"
    )
    console.print(
        f"model: {doc['model']['source']} (docs/risk.md: these are estimates; "
        "set your own with QRC_RISK_FILE)"
    )
    return console.export_text()


def risk_app(
    data_dir: DataDirOpt = DEFAULT_DIR,
    as_json: JsonOpt = False,
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", metavar="FILE", help="Risk model (TOML or .json); default QRC_RISK_FILE."
        ),
    ] = None,
    migration_years: Annotated[
        float | None,
        typer.Option(
            help="Migration time y in years (default: QRC_RISK_MIGRATION_YEARS, else estimated)."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Harvest-now-decrypt-later risk (Mosca: x + y > z) per key, data type and TLS channel."""
    from qrc.monitor.risk_config import RiskConfigError, load_risk_config  # noqa: PLC0415
    from qrc.monitor.risk_indicator import risk_document  # noqa: PLC0415
    from qrc.server.config import ConfigurationError, load_settings  # noqa: PLC0415

    # The model first, before the store opens: a typo costs no passphrase.
    try:
        settings = load_settings(data_dir=data_dir)
        years = migration_years if migration_years is not None else settings.risk_migration_years
        config = load_risk_config(model or settings.risk_file, migration_years=years)
    except (RiskConfigError, ConfigurationError) as exc:
        fail(f"{exc} (see docs/risk.md for the file's format)")
    with key_service(data_dir) as service:
        doc = risk_document(service, config, tls_dir=data_dir / "tls")
    text = json.dumps(doc, indent=2) + "\n" if as_json else _risk_table(doc)
    write_output(output, text.encode())


def _advice_text(advice: Advice) -> str:
    lines = [
        f"purpose {advice.purpose.value}, {advice.lifetime_years:g} years: NIST category "
        f"{advice.min_category} or more"
    ]
    best = advice.recommended
    if best is None:
        lines.append("no algorithm fits: see why below")
    else:
        lines.append(f"recommended: {best.algorithm}")
        lines += [f"  - {why}" for why in best.why]
    for other in advice.alternatives:
        lines.append(f"alternative: {other.algorithm}")
        lines += [f"  - {why}" for why in other.why]
    lines.append("not chosen:")
    lines += [f"  {c.algorithm}: {'; '.join(c.why)}" for c in advice.rejected]
    lines += [f"note: {note}" for note in advice.notes]
    return "\n".join(lines) + "\n"


def advise_app(
    purpose: Annotated[
        str, typer.Option(help=f"What the algorithm is for: {', '.join(_PURPOSES)}.")
    ],
    lifetime_years: Annotated[
        float, typer.Option(help="Years the data (or signature) must stay secure.")
    ],
    max_latency_ms: Annotated[
        float | None,
        typer.Option(help="Latency budget per handshake, decryption, signature or verification."),
    ] = None,
    max_bytes: Annotated[
        int | None,
        typer.Option(
            help="Ciphertext or signature bytes (key exchange: public key plus ciphertext)."
        ),
    ] = None,
    max_public_key_bytes: Annotated[int | None, typer.Option(help="Public key bytes.")] = None,
    measure: Annotated[
        bool, typer.Option(help="Measure the candidates' latency on this machine now.")
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Recommend an algorithm and parameter set, and say why (and why not the others)."""
    from qrc.monitor.advisor import advise  # noqa: PLC0415
    from qrc.monitor.advisor import measure as measure_now  # noqa: PLC0415

    if purpose not in _PURPOSES:
        fail(f"--purpose must be one of {', '.join(_PURPOSES)}, not {purpose!r}")
    try:
        # Size, status and category rules first: only the survivors are worth timing.
        first = advise(
            purpose,
            lifetime_years,
            alternatives=1000,
            max_bytes=max_bytes,
            max_public_key_bytes=max_public_key_bytes,
        )
        benchmarks: dict[str, Any] = {}
        if measure and first.recommended is not None:
            fit = [first.recommended, *first.alternatives]
            benchmarks = measure_now([c.algorithm for c in fit], purpose=purpose)
        advice = advise(
            purpose,
            lifetime_years,
            max_latency_ms=max_latency_ms,
            benchmarks=benchmarks,
            max_bytes=max_bytes,
            max_public_key_bytes=max_public_key_bytes,
        )
    except ValueError as exc:
        fail(str(exc))
    text = json.dumps(advice.as_dict(), indent=2) + "\n" if as_json else _advice_text(advice)
    write_output(None, text.encode())
    if advice.recommended is None:  # scripts can tell "nothing fits" from a recommendation
        raise typer.Exit(1)
