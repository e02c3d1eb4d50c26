"""``qrc compliance``: the compliance report of a data directory, and the control catalogue.

``qrc compliance report`` opens the key service of ``--data-dir`` (as ``qrc admin`` and
``qrc inventory`` do), evaluates every control of the selected frameworks from its live
state (:mod:`qrc.monitor.compliance`) and writes JSON, HTML or PDF. ``qrc compliance
controls`` lists the catalogue without opening anything. ``compliance_app`` is registered in
``qrc.cli.main`` as ``("compliance", "qrc.cli.compliance:compliance_app")``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from qrc.cli.admin.common import DEFAULT_DIR, DataDirOpt, JsonOpt, key_service
from qrc.cli.io import fail, say, write_output

__all__ = ["compliance_app"]

FORMATS = ("json", "html", "pdf")

compliance_app = typer.Typer(
    help="Compliance reports: controls of FIPS 203/204/205, SP 800-57, PCI DSS, DORA, GDPR...",
    no_args_is_help=True,
)

FrameworkOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--framework",
        metavar="ID",
        help="Only this framework (repeatable or comma-separated; `qrc compliance controls` "
        "lists them). Default: all.",
    ),
]


def _frameworks(names: list[str] | None) -> list[str]:
    from qrc.monitor.compliance import UnknownFramework, parse_frameworks  # noqa: PLC0415

    try:
        return parse_frameworks(names)
    except UnknownFramework as exc:
        fail(str(exc))


@compliance_app.command("report")
def report(
    data_dir: DataDirOpt = DEFAULT_DIR,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="json, html (self-contained) or pdf.")
    ] = "json",
    framework: FrameworkOpt = None,
    scan: Annotated[
        list[Path] | None,
        typer.Option(
            "--scan", metavar="PATH", help="Also inventory this PEM bundle, key file or directory."
        ),
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit with status 1 when a control fails.")
    ] = False,
) -> None:
    """Evaluate the controls from the live state of DATA_DIR's service and write the report."""
    if output_format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    if output_format == "pdf" and output is None and sys.stdout.isatty():
        fail("a PDF is not for a terminal: add -o FILE (or pipe the output)")
    selected = _frameworks(framework)
    missing = [str(path) for path in scan or [] if not path.exists()]
    if missing:  # before the store is opened: a typo costs no passphrase
        fail(f"{', '.join(missing)}: no such file or directory")
    from qrc.monitor.compliance import build_report  # noqa: PLC0415
    from qrc.monitor.compliance_render import render  # noqa: PLC0415

    with key_service(data_dir) as service:
        try:
            result = build_report(
                service, frameworks=selected, tls_dir=data_dir / "tls", scan=scan or []
            )
        except OSError as exc:
            fail(str(exc))
    write_output(output, render(result, output_format))
    counts = result.counts()
    if output is not None:
        say(
            f"{output}: {result.overall_status}; {counts['pass']} pass, {counts['fail']} fail, "
            f"{counts['manual']} manual, {counts['notApplicable']} not applicable"
        )
    if check and counts["fail"]:
        raise typer.Exit(1)


@compliance_app.command("controls")
def controls(framework: FrameworkOpt = None, as_json: JsonOpt = False) -> None:
    """List the control catalogue: each control, its reference and whether it is automatic."""
    from qrc.monitor.compliance_catalogue import CONTROLS, FRAMEWORKS  # noqa: PLC0415

    selected = _frameworks(framework)
    rows = [
        {
            "id": c.id,
            "framework": c.framework,
            "reference": c.reference,
            "title": c.title,
            "automatic": c.check is not None,
            "limits": c.limits,
        }
        for c in CONTROLS
        if c.framework in selected
    ]
    if as_json:
        sys.stdout.write(json.dumps({"frameworks": FRAMEWORKS, "controls": rows}, indent=2))
        sys.stdout.write("\n")
        return
    for name in selected:
        sys.stdout.write(f"{name}: {FRAMEWORKS[name]}\n")
        for row in rows:
            if row["framework"] == name:
                kind = "auto  " if row["automatic"] else "manual"
                sys.stdout.write(f"  {kind} {row['id']:<26} {row['reference']}: {row['title']}\n")
