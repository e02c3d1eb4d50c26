"""A separate OS process acting on a store, for the concurrency and crash tests.

``python -m tests.keys.worker ACTION DATABASE_URL KEK_FILE [ARG]``; prints one JSON line.
"""

from __future__ import annotations

import json
import os
import sys
import time

from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.errors import Conflict
from qrc.keys.faults import arm
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database


def main() -> None:
    action, url, kek_file = sys.argv[1:4]
    arm(os.environ.get("QRC_TEST_FAULT"))  # the crash tests stop us at a named point
    arg = sys.argv[4] if len(sys.argv) > 4 else ""
    service = KeyService(Database(url), Keyring(LocalCustody.open(kek_file, "test passphrase")))
    start_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    while time.time() < start_at:  # line both processes up on the same instant
        time.sleep(0.001)
    if action == "rotate-if-1":
        try:
            info = service.keys.rotate(arg, actor="worker", expected_version=1)
            print(json.dumps({"rotated": True, "version": info.version}))
        except Conflict:
            print(json.dumps({"rotated": False}))
    elif action == "rotate":
        print(json.dumps({"version": service.keys.rotate(arg, actor="worker").version}))
    elif action == "run-due":
        print(json.dumps(service.scheduler.run_due(actor="worker")))
    elif action == "destroy-now":
        service.scheduler.run_due(actor="worker")
        print(json.dumps({"done": True}))
    else:
        raise SystemExit(f"unknown action {action}")


if __name__ == "__main__":
    main()
