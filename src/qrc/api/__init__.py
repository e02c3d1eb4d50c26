"""``qrc.api``: the HTTP API (FastAPI) over the key service, at ``/api/v1/security/qrc``."""

from __future__ import annotations

from qrc.api.app import create_app

__all__ = ["create_app"]
