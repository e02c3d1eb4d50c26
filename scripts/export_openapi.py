"""Write the API's OpenAPI document to a file, without starting a server.

    python scripts/export_openapi.py OUT.json

The web dashboard generates its TypeScript client from this document (``openapi-typescript``,
run by ``make web``). The app is built the way the tests build it: over a throw-away SQLite
store and a sealed KEK in a temporary directory (the document does not depend on them).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from qrc.api.app import create_app
from qrc.api.deps import AppState
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import Argon2Params, LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database

# The KEK of the throw-away store protects nothing: the cheapest Argon2id will do.
_CHEAP = Argon2Params(time_cost=1, memory_cost=8, parallelism=1)


def openapi_document() -> dict[str, object]:
    """The OpenAPI document of the app as ``qrc serve`` builds it."""
    with tempfile.TemporaryDirectory(prefix="qrc-openapi-") as tmp:
        directory = Path(tmp)
        db = Database(f"sqlite:///{directory / 'qrc.db'}")
        db.upgrade()
        custody = LocalCustody.create(directory / "kek.sealed", "export", params=_CHEAP)
        service = KeyService(db, Keyring(custody))
        try:
            return create_app(AppState(service)).openapi()
        finally:
            service.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print("usage: python scripts/export_openapi.py OUT.json", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
