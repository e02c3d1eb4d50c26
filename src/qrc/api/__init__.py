"""``qrc.api``: the HTTP API (FastAPI) over the key service, at ``/api/v1/security/qrc``.

:func:`create_app` loads on first use: importing a submodule (``qrc.api.deps`` for the
settings of an offline command, say) does not import every route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qrc.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from qrc.api.app import create_app  # noqa: PLC0415

        return create_app
    raise AttributeError(f"module 'qrc.api' has no attribute {name!r}")
