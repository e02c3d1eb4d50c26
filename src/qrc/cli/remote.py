"""The command line as a client of the service, like ``vault``: keys, crypto, audit, tokens.

The service is at ``--url`` (``QRC_URL``, default ``https://127.0.0.1:8443``), reached over
PQ TLS (``X25519MLKEM768``) trusting ``--ca`` (``QRC_CA_FILE``, default the data directory's
``tls/ca.pem``), with ``--token`` (``QRC_TOKEN``, default the data directory's
``admin.token``). These options belong to each group (``qrc keys --url URL list``); the
environment variables are the usual way. Output is a table, or JSON with ``--json``.
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qrc.cli.io import fail as _fail
from qrc.cli.io import read_input, write_output

if TYPE_CHECKING:
    from qrc.transit.client import PQClient, Response

__all__ = ["audit_app", "keys_app", "remote_app", "token_app"]

API = "/api/v1/security/qrc"
_out = Console(width=None if sys.stdout.isatty() else 160)

Url = Annotated[str | None, typer.Option("--url", envvar="QRC_URL", help="Service URL.")]
Token = Annotated[str | None, typer.Option("--token", envvar="QRC_TOKEN", help="Bearer token.")]
Ca = Annotated[
    Path | None, typer.Option("--ca", envvar="QRC_CA_FILE", help="CA certificate to trust.")
]
DataDir = Annotated[Path, typer.Option("--data-dir", envvar="QRC_DATA_DIR", help="Data directory.")]
Json = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]
Context = Annotated[str, typer.Option("-c", "--context", help="Context bound to the operation.")]
Input = Annotated[Path | None, typer.Option("-i", "--input", help="Read from FILE, not stdin.")]
Output = Annotated[Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")]

keys_app = typer.Typer(help="Manage keys in the service.", no_args_is_help=True)
remote_app = typer.Typer(
    help="Encrypt, decrypt, sign, verify with service keys.", no_args_is_help=True
)
audit_app = typer.Typer(help="Read and verify the service's audit chain.", no_args_is_help=True)
token_app = typer.Typer(help="Create and revoke API tokens (admin).", no_args_is_help=True)


@dataclass(frozen=True)
class Connection:
    """Where the service is and how to reach it (the options every sub-command shares)."""

    url: str | None
    token: str | None
    ca: Path | None
    data_dir: Path


def _connection(
    ctx: typer.Context,
    url: Url = None,
    token: Token = None,
    ca: Ca = None,
    data_dir: DataDir = Path(".qrc"),
) -> None:
    """Options of the connection to the service (usually set by QRC_URL, QRC_TOKEN...)."""
    ctx.obj = Connection(url, token, ca, data_dir)


for _group in (keys_app, remote_app, audit_app, token_app):
    _group.callback()(_connection)


def _client(connection: Connection | None) -> PQClient:
    from qrc.transit.client import PQClient  # noqa: PLC0415  (PQ TLS loads when a command runs)

    if connection is None:  # a command run without its group (tests): the defaults
        connection = Connection(None, None, None, Path(".qrc"))
    url, token, ca, data_dir = connection.url, connection.token, connection.ca, connection.data_dir
    base = url or "https://127.0.0.1:8443"
    if token is None:
        token_file = data_dir / "admin.token"
        if not token_file.exists():
            _fail(f"no token: set QRC_TOKEN or --token (or run where {token_file} exists)")
        token = token_file.read_text("utf-8").strip()
    ca_file = ca or data_dir / "tls" / "ca.pem"
    if base.startswith("https://") and not Path(ca_file).exists():
        _fail(f"no CA certificate at {ca_file}: set QRC_CA_FILE or --ca")
    return PQClient(base, ca_file=str(ca_file), token=token)


def _call(client: PQClient, method: str, path: str, body: Any = None, **params: Any) -> Any:
    from qrc.transit.client import TransportError  # noqa: PLC0415

    try:
        response = client.request(method, API + path, body, params=params or None)
    except TransportError as exc:
        _fail(f"cannot reach the service at {client.base_url}: {exc}")
    return _checked(response)


def _checked(response: Response) -> Any:
    if response.status >= 400:
        try:
            problem = response.json()
            message = problem.get("title", "error")
            if problem.get("detail"):
                message += f": {problem['detail']}"
        except (ValueError, AttributeError):
            message = f"HTTP {response.status}"
        _fail(message)
    if response.headers.get("content-type", "").startswith("application/json"):
        return response.json()
    return response.text


def _emit(
    data: Any, as_json: bool, columns: list[str] | None = None, rows: list[Any] | None = None
) -> None:
    if as_json or columns is None:
        print(json.dumps(data, indent=2))
        return
    table = Table(*columns)
    for row in rows if rows is not None else [data]:
        table.add_row(*(str(row.get(c, "")) if row.get(c) is not None else "-" for c in columns))
    _out.print(table)


KEY_COLUMNS = ["id", "name", "algorithm", "purpose", "status", "version"]


# ---------------------------------------------------------------------------------- keys
@keys_app.command("create")
def keys_create(
    ctx: typer.Context,
    name: str,
    purpose: Annotated[
        str, typer.Option("--purpose", "-p", help="encryption, signing or key_wrapping")
    ],
    algorithm: Annotated[
        str | None, typer.Option("--algorithm", "-a", help="Default: the policy's")
    ] = None,
    rotation_days: Annotated[
        int | None, typer.Option(help="Rotate automatically every N days.")
    ] = None,
    as_json: Json = False,
) -> None:
    """Create a key."""
    body: dict[str, Any] = {"name": name, "purpose": purpose}
    if algorithm:
        body["algorithm"] = algorithm
    if rotation_days:
        body["rotation_period_days"] = rotation_days
    with _client(ctx.obj) as client:
        _emit(_call(client, "POST", "/keys/generate", body), as_json, KEY_COLUMNS)


@keys_app.command("list")
def keys_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only keys in this status.")] = None,
    purpose: Annotated[str | None, typer.Option(help="Only keys for this purpose.")] = None,
    as_json: Json = False,
) -> None:
    """List keys (all pages)."""
    keys: list[dict[str, Any]] = []
    cursor = None
    with _client(ctx.obj) as client:
        while True:
            page = _call(
                client, "GET", "/keys", status=status, purpose=purpose, cursor=cursor, limit=1000
            )
            keys += page["keys"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
    _emit({"keys": keys}, as_json, KEY_COLUMNS, keys)


@keys_app.command("show")
def keys_show(
    ctx: typer.Context,
    key: str,
    as_json: Json = False,
) -> None:
    """Show one key (by ID or name)."""
    with _client(ctx.obj) as client:
        data = _call(client, "GET", f"/keys/{key}")
    if as_json:
        _emit(data, True)
        return
    for field, value in data.items():
        if field != "public_key":
            _out.print(f"{field:24} {value}")
    if data.get("public_key"):
        _out.print(data["public_key"])


def _key_action(
    ctx: typer.Context, method: str, suffix: str, key: str, body: Any, as_json: bool, **params: Any
) -> None:
    with _client(ctx.obj) as client:
        _emit(_call(client, method, f"/keys/{key}{suffix}", body, **params), as_json, KEY_COLUMNS)


@keys_app.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    key: str,
    if_version: Annotated[
        int | None,
        typer.Option(
            "--if-version",
            min=1,
            help="Rotate only if the primary version is still N (else fail: someone rotated).",
        ),
    ] = None,
    algorithm: Annotated[
        str | None,
        typer.Option(
            "--algorithm",
            help="Move the key to this algorithm (older versions keep theirs).",
        ),
    ] = None,
    as_json: Json = False,
) -> None:
    """Add a version and make it primary (optionally under another algorithm)."""
    body: dict[str, object] = {}
    if if_version is not None:
        body["expected_version"] = if_version
    if algorithm is not None:
        body["algorithm"] = algorithm
    _key_action(ctx, "POST", "/rotate", key, body or None, as_json)


@keys_app.command("min-version")
def keys_min_version(
    ctx: typer.Context,
    key: str,
    version: Annotated[
        int, typer.Argument(min=1, help="Versions below this no longer decrypt or verify.")
    ],
    as_json: Json = False,
) -> None:
    """Retire old versions: set the key's minimum decryption version."""
    body = {"version": version}
    _key_action(ctx, "POST", "/min-decryption-version", key, body, as_json)


@keys_app.command("revoke")
def keys_revoke(
    ctx: typer.Context,
    key: str,
    reason: Annotated[
        str, typer.Option("--reason", help="key_compromise, superseded or cessation_of_operation")
    ],
    as_json: Json = False,
) -> None:
    """Revoke a key."""
    _key_action(ctx, "POST", "/revoke", key, {"reason": reason}, as_json)


@keys_app.command("destroy")
def keys_destroy(
    ctx: typer.Context,
    key: str,
    days: Annotated[
        float | None, typer.Option("--days", help="Waiting period (default 7).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Schedule a key's destruction (cancel with cancel-destruction)."""
    _key_action(ctx, "DELETE", "", key, None, as_json, days=days)


@keys_app.command("cancel-destruction")
def keys_cancel(
    ctx: typer.Context,
    key: str,
    as_json: Json = False,
) -> None:
    """Cancel a scheduled destruction."""
    _key_action(ctx, "POST", "/cancel-destruction", key, None, as_json)


# ---------------------------------------------------------------------------------- crypto
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _bytes_through(
    ctx: typer.Context,
    route: str,
    key: str,
    context: str,
    field: str,
    answer: str,
    input: Path | None,
    output: Path | None,
) -> None:
    """Send the input as ``field`` to ``route``; write the answer's ``answer`` bytes."""
    body = {"key": key, field: _b64(read_input(input)), "context": context}
    with _client(ctx.obj) as client:
        data = _call(client, "POST", route, body)
    write_output(output, base64.b64decode(data[answer]))


@remote_app.command("encrypt")
def remote_encrypt(
    ctx: typer.Context,
    key: Annotated[str, typer.Option("-k", "--key", help="Key ID or name.")],
    context: Context = "",
    input: Input = None,
    output: Output = None,
) -> None:
    """Encrypt stdin (or -i FILE) with a service key; writes the envelope bytes."""
    _bytes_through(ctx, "/encrypt", key, context, "plaintext", "ciphertext", input, output)


@remote_app.command("decrypt")
def remote_decrypt(
    ctx: typer.Context,
    key: Annotated[str, typer.Option("-k", "--key", help="Key ID or name.")],
    context: Context = "",
    input: Input = None,
    output: Output = None,
) -> None:
    """Decrypt an envelope from stdin (or -i FILE)."""
    _bytes_through(ctx, "/decrypt", key, context, "ciphertext", "plaintext", input, output)


@remote_app.command("sign")
def remote_sign(
    ctx: typer.Context,
    key: Annotated[str, typer.Option("-k", "--key", help="Key ID or name.")],
    context: Context = "",
    input: Input = None,
    output: Output = None,
) -> None:
    """Sign stdin (or -i FILE); writes the raw standard signature."""
    _bytes_through(ctx, "/sign", key, context, "message", "signature", input, output)


@remote_app.command("verify")
def remote_verify(
    ctx: typer.Context,
    key: Annotated[str, typer.Option("-k", "--key", help="Key ID or name.")],
    signature: Annotated[Path, typer.Option("-s", "--signature", help="Raw signature file.")],
    context: Context = "",
    input: Input = None,
) -> None:
    """Verify a signature over stdin (or -i FILE): exit 0 if valid, 1 if not."""
    body = {
        "key": key,
        "message": _b64(read_input(input)),
        "signature": _b64(signature.read_bytes()),
        "context": context,
    }
    with _client(ctx.obj) as client:
        data = _call(client, "POST", "/verify", body)
    if not data["valid"]:
        sys.stderr.write("qrc: signature NOT valid\n")
        raise typer.Exit(1)
    sys.stderr.write(f"signature valid (version {data.get('key_version')})\n")


# ---------------------------------------------------------------------------------- audit
@audit_app.command("logs")
def audit_logs(
    ctx: typer.Context,
    event_type: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this key (ID or name).")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help="Only this actor.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many events.")] = 100,
    as_json: Json = False,
) -> None:
    """Audit events, oldest first."""
    with _client(ctx.obj) as client:
        page = _call(
            client, "GET", "/audit/logs", event_type=event_type, key=key, actor=actor, limit=limit
        )
    columns = ["seq", "at", "event_type", "actor", "result", "key_id", "key_version"]
    _emit(page, as_json, columns, page["events"])


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    as_json: Json = False,
) -> None:
    """Verify the audit chain and its signed checkpoints: exit 0 if intact, 1 if not."""
    with _client(ctx.obj) as client:
        report = _call(client, "GET", "/audit/verify")
    if as_json:
        _emit(report, True)
    else:
        _out.print(("intact" if report["valid"] else "BROKEN") + f": {report['reason']}")
    if not report["valid"]:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------- tokens
@token_app.command("create")
def token_create(
    ctx: typer.Context,
    name: str,
    role: Annotated[
        str, typer.Option("--role", help="admin, key_manager, crypto_user, auditor, viewer")
    ],
    key: Annotated[
        list[str] | None, typer.Option("--key", help="crypto_user: a key it may use.")
    ] = None,
    expires_in: Annotated[int | None, typer.Option(help="Seconds until it expires.")] = None,
    as_json: Json = False,
) -> None:
    """Create a token; the secret is printed once."""
    body: dict[str, Any] = {"name": name, "role": role}
    if key:
        body["keys"] = key
    if expires_in:
        body["expires_in"] = expires_in
    with _client(ctx.obj) as client:
        created = _call(client, "POST", "/tokens", body)
    if as_json:
        _emit(created, True)
    else:
        sys.stderr.write(
            f"token {created['id']} ({created['role']}); store it now, it is not shown again:\n"
        )
        print(created["token"])


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: str,
    as_json: Json = False,
) -> None:
    """Revoke a token by its ID."""
    with _client(ctx.obj) as client:
        _emit(
            _call(client, "DELETE", f"/tokens/{token_id}"),
            as_json,
            ["id", "name", "role", "revoked_at"],
        )


@token_app.command("list")
def token_list(
    ctx: typer.Context,
    as_json: Json = False,
) -> None:
    """List tokens (never their secrets)."""
    with _client(ctx.obj) as client:
        data = _call(client, "GET", "/tokens")
    _emit(data, as_json, ["id", "name", "role", "expires_at", "revoked_at"], data["tokens"])
