"""``qrc compliance``: the compliance report of a data directory, and the control catalogue.

``qrc compliance report`` opens the key service of ``--data-dir`` (as ``qrc admin`` and
``qrc inventory`` do), evaluates every control of the selected frameworks from its live
state (:mod:`qrc.monitor.compliance`) and writes JSON, HTML or PDF. With ``--url`` it asks a
running service instead (``GET /compliance/report`` with an auditor's ``--token``): an
auditor needs no access to the data directory or its KEK. ``qrc compliance controls`` lists
the catalogue without opening anything. ``compliance_app`` is registered in
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
_API = "/api/v1/security/qrc"
_STATUS_HEADER = "X-Qrc-Compliance-Status"  # qrc.api.routes.compliance.STATUS_HEADER

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


def _remote(
    url: str, token: str | None, ca: Path | None, output_format: str, frameworks: list[str]
) -> tuple[bytes, str]:
    """The report from the service at ``url``: its bytes and overall status."""
    from qrc.transit.client import PQClient, TransportError  # noqa: PLC0415

    if token is None:
        fail("a remote report needs --token (or QRC_TOKEN): an auditor's or admin's")
    if url.startswith("https://") and (ca is None or not ca.exists()):
        fail(f"no CA certificate at {ca}: set --ca (or QRC_CA_FILE) to the service's CA")
    params = {"format": output_format, "framework": ",".join(frameworks)}
    try:
        with PQClient(url, ca_file=str(ca) if ca else None, token=token) as client:
            answer = client.get(_API + "/compliance/report", params=params)
    except (TransportError, OSError, ValueError) as exc:
        fail(f"cannot reach the service at {url}: {exc}")
    if answer.status != 200:
        try:
            problem = answer.json()
            message = f"{problem.get('title', 'error')}: {problem.get('detail', '')}".rstrip(": ")
        except (ValueError, AttributeError):
            message = f"HTTP {answer.status}"
        fail(f"the service refused: {message}")
    return answer.body, answer.headers.get(_STATUS_HEADER.lower(), "")


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
    url: Annotated[
        str | None,
        typer.Option("--url", help="Ask the running service at URL instead of opening DATA_DIR."),
    ] = None,
    token: Annotated[
        str | None, typer.Option("--token", envvar="QRC_TOKEN", help="Bearer token (--url).")
    ] = None,
    ca: Annotated[
        Path | None,
        typer.Option("--ca", envvar="QRC_CA_FILE", help="CA certificate to trust (--url)."),
    ] = None,
) -> None:
    """Evaluate the controls from the live state of DATA_DIR's service and write the report."""
    if output_format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    if output_format == "pdf" and output is None and sys.stdout.isatty():
        fail("a PDF is not for a terminal: add -o FILE (or pipe the output)")
    selected = _frameworks(framework)
    if url is not None:
        if scan:
            fail("--scan reads local files: not with --url (the service never reads paths)")
        body, status = _remote(url, token, ca, output_format, selected)
        _finish(output, body, status, check)
        return
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
    counts = result.counts()
    line = (
        f"{result.overall_status}; {counts['pass']} pass, {counts['fail']} fail, "
        f"{counts['manual']} manual, {counts['notApplicable']} not applicable"
    )
    _finish(output, render(result, output_format), line, check)


def _finish(output: Path | None, body: bytes, status: str, check: bool) -> None:
    """Write the report; one status line when it goes to a file; --check's exit status."""
    write_output(output, body)
    if output is not None:
        say(f"{output}: {status}")
    if check and status.partition(";")[0] == "fail":
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
