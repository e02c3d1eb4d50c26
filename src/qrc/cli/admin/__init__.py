"""``qrc admin``: operator commands on the key store of a data directory.

Status and health, root KEK rotation, the scheduler, the audit chain, security events,
backup and restore, and key lifecycle for operators without the API. Every command works on
``--data-dir`` (default ``./.qrc``, or ``QRC_DATA_DIR``) and the environment the service uses
(``QRC_DATABASE_URL``, ``QRC_CUSTODY``, ``QRC_MASTER_PASSPHRASE``, ``QRC_PKCS11_*``), acts as
``admin:<os user>`` in the audit chain, prints one line and exits 2 on any error, and takes
``--json`` where its output is data.

The key service (SQLAlchemy, Alembic) is imported inside the commands, so that the offline
toolkit (``qrc encrypt`` ...) does not pay for it at start.
"""

from __future__ import annotations

import typer

from qrc.cli.admin.audit import audit_app, events
from qrc.cli.admin.backup import backup, restore
from qrc.cli.admin.kek import rotate_kek_command
from qrc.cli.admin.keys import keys_app
from qrc.cli.admin.scheduler import scheduler
from qrc.cli.admin.status import status

__all__ = ["admin_app"]

admin_app = typer.Typer(
    name="admin",
    help="Operate the key store of a data directory: status, KEK rotation, scheduler, audit, "
    "backup and restore, keys.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Registered here, in one place, so that `qrc admin --help` lists them in this order.
admin_app.command()(status)
admin_app.command("rotate-kek")(rotate_kek_command)
admin_app.command()(scheduler)
admin_app.command()(events)
admin_app.command()(backup)
admin_app.command()(restore)
admin_app.add_typer(audit_app, name="audit")
admin_app.add_typer(keys_app, name="keys")
