"""``qrc inventory``: the cryptographic inventory of a data directory, as CBOM, JSON or a table.

It opens the key service of ``--data-dir`` (as ``qrc admin`` does), reads the certificates of
``DATA_DIR/tls`` and scans the PEM bundles and key files named with ``--scan``
(:mod:`qrc.monitor.inventory`) and probes the TLS endpoints named with ``--endpoint``.
``inventory_app`` is one command, registered in
``qrc.cli.main`` as ``("inventory", "qrc.cli.inventory:inventory_app")``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.admin.common import DEFAULT_DIR, DataDirOpt, key_service
from qrc.cli.io import fail, write_output

if TYPE_CHECKING:
    from qrc.monitor.inventory import Inventory

__all__ = ["inventory_app"]

FORMATS = ("cbom", "json", "table")


def _table(inventory: Inventory) -> str:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = Console(record=True, width=120, file=io.StringIO())
    algorithms = Table("algorithm", "family", "NIST", "status", "quantum-safe", "keys",
                       "certs", "objects", "found", title="Algorithms in use")  # fmt: skip
    for use in inventory.algorithms():
        row = use.as_dict()
        algorithms.add_row(
            use.id, row["family"], str(row["nist_level"] or "-"), row["status"],
            "yes" if use.quantum_safe else "NO", str(use.keys), str(use.certificates),
            str(use.objects), str(use.found),
        )  # fmt: skip
    keys = Table("key", "algorithm", "state", "status", "age (days)", "last activity",
                 title="Keys")  # fmt: skip
    for key in inventory.keys:
        last = key.last_activity_at.isoformat(timespec="seconds") if key.last_activity_at else "-"
        keys.add_row(key.name, key.algorithm, key.state, key.algorithm_status,
                     f"{key.age_days:.1f}", last)  # fmt: skip
    assets = Table("kind", "algorithm", "classical", "expires", "where", title="Certificates "
                   "and scanned assets")  # fmt: skip
    for asset in inventory.certificates + inventory.found:
        expires = asset.not_after.date().isoformat() if asset.not_after else "-"
        assets.add_row(asset.kind, asset.algorithm, "YES" if asset.classical else "no",
                       expires, asset.path)  # fmt: skip
    for table in (algorithms, keys, assets):
        console.print(table)
    summary = ", ".join(f"{k}={v}" for k, v in inventory.summary().items())
    console.print(f"summary: {summary}")
    return console.export_text()


def inventory_app(
    data_dir: DataDirOpt = DEFAULT_DIR,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="cbom (CycloneDX 1.6), json or table.")
    ] = "table",
    scan: Annotated[
        list[Path] | None,
        typer.Option(
            "--scan",
            metavar="PATH",
            help="A PEM bundle, key file or directory to scan (repeatable).",
        ),
    ] = None,
    endpoint: Annotated[
        list[str] | None,
        typer.Option(
            "--endpoint",
            metavar="HOST:PORT",
            help="A TLS endpoint to probe with one handshake (repeatable).",
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """The cryptographic inventory: keys, certificates, TLS, encrypted data, scanned files."""
    if output_format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    from qrc.monitor.cbom import to_cbom_json  # noqa: PLC0415
    from qrc.monitor.endpoints import parse_endpoint  # noqa: PLC0415
    from qrc.monitor.inventory import build_inventory  # noqa: PLC0415

    for named in endpoint or []:
        try:
            parse_endpoint(named)
        except ValueError as exc:
            fail(str(exc))
    missing = [str(path) for path in scan or [] if not path.exists()]
    if missing:  # before the store is opened: a typo costs no passphrase
        fail(f"{', '.join(missing)}: no such file or directory")
    with key_service(data_dir) as service:
        try:
            inv = build_inventory(
                service, tls_dir=data_dir / "tls", scan=scan or [], endpoints=endpoint or []
            )
        except OSError as exc:
            fail(str(exc))
    if output_format == "cbom":
        text = to_cbom_json(inv) + "\n"
    elif output_format == "json":
        text = json.dumps(inv.as_dict(), indent=2) + "\n"
    else:
        text = _table(inv)
    write_output(output, text.encode())
