"""The cryptographic inventory: JSON, or a CycloneDX 1.6 CBOM (auditors and admins)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from qrc.api.deps import require, state_of
from qrc.keys.access.tokens import Client, Role
from qrc.monitor.cbom import to_cbom_json
from qrc.monitor.inventory import build_inventory

__all__ = ["CBOM_MEDIA_TYPE", "router"]

router = APIRouter()
Auditor = Annotated[Client, require(Role.AUDITOR)]
CBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json; version=1.6"


def _tls_dir(ca_dir: Path | None) -> Path | None:
    """``DATA_DIR/tls``: beside ``DATA_DIR/ca``, which is all the app state names."""
    return None if ca_dir is None else ca_dir.parent / "tls"


@router.get(
    "/inventory",
    tags=["monitoring"],
    summary="The cryptographic inventory (JSON or a CycloneDX 1.6 CBOM)",
    responses={
        200: {
            "description": "The inventory",
            "content": {"application/json": {}, CBOM_MEDIA_TYPE: {}},
        }
    },
)
def inventory(
    client: Auditor,
    request: Request,
    format: Annotated[Literal["cbom", "json"], Query()] = "json",
) -> Response:
    """Keys, certificates, TLS, encrypted objects: what the service holds and uses, now."""
    state = state_of(request)
    inv = build_inventory(
        state.service,
        tls_dir=_tls_dir(state.ca_dir),
        counters=state.tls_counters,
        tls_mode=state.settings.tls_mode if state.tls_counters is not None else None,
    )
    if format == "cbom":
        return Response(to_cbom_json(inv), media_type=CBOM_MEDIA_TYPE)
    body: dict[str, Any] = inv.as_dict()
    return JSONResponse(body)
