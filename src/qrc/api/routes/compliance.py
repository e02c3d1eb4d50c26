"""The compliance report: JSON, self-contained HTML or PDF (auditors and admins)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from qrc.api.deps import require, state_of
from qrc.api.problems import Problem
from qrc.keys.access.tokens import Client, Role
from qrc.monitor.compliance import UnknownFramework, build_report
from qrc.monitor.compliance_render import MEDIA_TYPES, render

__all__ = ["STATUS_HEADER", "router"]

router = APIRouter()
STATUS_HEADER = "X-Qrc-Compliance-Status"
Auditor = Annotated[Client, require(Role.AUDITOR)]
# IDs, comma-separated (``gdpr,dora``); which ones exist is checked against the catalogue.
FrameworkList = Annotated[
    str, Field(min_length=1, max_length=300, pattern=r"^[A-Za-z0-9][A-Za-z0-9., -]*$")
]
# The HTML report is self-contained: nothing to load, nothing to run.
_HTML_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


@router.get(
    "/compliance/report",
    tags=["monitoring"],
    summary="The compliance report (JSON, HTML or PDF)",
    responses={
        200: {
            "description": "Every control of the selected frameworks, evaluated now",
            "content": {"application/json": {}, "text/html": {}, "application/pdf": {}},
            "headers": {
                "X-Qrc-Compliance-Status": {
                    "description": "The overall status: pass, fail, manual or not_applicable",
                    "schema": {"type": "string"},
                }
            },
        }
    },
)
def compliance_report(
    client: Auditor,
    request: Request,
    format: Annotated[Literal["json", "html", "pdf"], Query()] = "json",
    framework: Annotated[
        list[FrameworkList] | None,
        Query(description="Framework IDs (repeatable or comma-separated); all by default."),
    ] = None,
) -> Response:
    """Controls mapped to the standards and rules, each with its outcome and evidence."""
    state = state_of(request)
    try:
        report = build_report(
            state.service,
            frameworks=framework,
            # DATA_DIR/tls, beside DATA_DIR/ca (what the app state names), as /inventory reads
            tls_dir=None if state.ca_dir is None else state.ca_dir.parent / "tls",
            counters=state.tls_counters,
            tls_mode=state.settings.tls_mode if state.tls_counters is not None else None,
        )
    except UnknownFramework as exc:
        raise Problem("invalid-request", str(exc)) from None
    # The overall status for a client that does not parse the body (qrc compliance --check).
    headers = {"Cache-Control": "no-store", STATUS_HEADER: report.overall_status}
    if format == "html":
        headers["Content-Security-Policy"] = _HTML_CSP
    if format == "pdf":
        stamp = report.generated_at.strftime("%Y%m%dT%H%M%SZ")
        headers["Content-Disposition"] = f'attachment; filename="qrc-compliance-{stamp}.pdf"'
    return Response(render(report, format), media_type=MEDIA_TYPES[format], headers=headers)
