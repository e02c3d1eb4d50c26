"""``qrc tunnel``: wrap any TCP service in post-quantum mutual TLS (stunnel-like).

``qrc tunnel server`` accepts TLS on ``--listen`` and forwards to ``--forward``;
``qrc tunnel client`` accepts plain TCP on ``--listen`` (keep it on loopback) and connects
to the server end at ``--connect``. Both present ``--cert``/``--key`` and trust ``--ca``
only; the key exchange is ``X25519MLKEM768`` only. ``qrc tunnel issue`` makes a peer
certificate from a CA directory. The tunnel prints ``READY HOST PORT`` once it listens,
logs every refused peer, re-reads its certificate, key, CA and CRL files on SIGHUP and
when they change (renewal and revocation without restart; open connections go on), and
stops cleanly on SIGTERM, printing its counters as JSON. With ``--crl`` it refuses revoked
peers, and fails closed when the CRL is missing, expired or not the CA's.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.io import fail

if TYPE_CHECKING:
    from OpenSSL import SSL

    from qrc.transit.tunnel import RefusedHook

__all__ = ["tunnel_app"]

tunnel_app = typer.Typer(
    help="Wrap any TCP service in post-quantum mutual TLS (X25519MLKEM768, ML-DSA).",
    no_args_is_help=True,
)

Listen = Annotated[str, typer.Option("--listen", help="HOST:PORT to listen on (port 0: any).")]
Cert = Annotated[Path, typer.Option("--cert", help="This end's certificate (PEM chain).")]
KeyFile = Annotated[Path, typer.Option("--key", help="This end's private key (PKCS#8 PEM).")]
Ca = Annotated[Path, typer.Option("--ca", help="The only CA whose peers are accepted.")]
MaxConn = Annotated[int, typer.Option("--max-connections", min=1, help="Open connections.")]
Idle = Annotated[float, typer.Option("--idle-timeout", min=0.1, help="Seconds without data.")]
Drain = Annotated[
    float, typer.Option("--drain-timeout", min=0.0, help="Seconds to let connections finish.")
]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Log every connection.")]
Crls = Annotated[
    list[Path] | None,
    typer.Option(
        "--crl",
        help="CRL file of the CA (qrc ca crl; repeatable): revoked peers are refused, and so "
        "is every peer when the CRL is missing or expired (fail closed).",
    ),
]
Watch = Annotated[
    float,
    typer.Option(
        "--reload-check-seconds",
        min=0.05,
        help="How often to look for changed certificate, key, CA or CRL files (reloaded).",
    ),
]
EventsDir = Annotated[
    Path | None,
    typer.Option(
        "--events-data-dir",
        help="Also record refused peers as security events of the key service of this data "
        "directory (opened as `qrc admin` opens it: QRC_MASTER_PASSPHRASE...).",
    ),
]


def _run(
    role: str,
    listen: str,
    target: str,
    cert: Path,
    key: Path,
    ca: Path,
    *,
    server_name: str | None,
    max_connections: int,
    idle_timeout: float,
    drain_timeout: float,
    verbose: bool,
    crls: list[Path] | None = None,
    reload_check: float = 30.0,
    events_data_dir: Path | None = None,
) -> None:
    files = _Files(cert, key, ca, tuple(crls or ()), reload_check)
    serve = functools.partial(
        _serve, role, listen, target, files, server_name, max_connections,
        idle_timeout, drain_timeout, verbose,
    )  # fmt: skip
    if events_data_dir is None:
        serve(None)
        return
    from qrc.cli.admin.common import key_service  # noqa: PLC0415
    from qrc.transit.tunnel_events import security_event_recorder  # noqa: PLC0415

    with key_service(events_data_dir) as service:
        serve(security_event_recorder(service, f"tunnel:{role}"))


@dataclass(frozen=True)
class _Files:
    """What an end reads from disk (and re-reads when it changes)."""

    cert: Path
    key: Path
    ca: Path
    crls: tuple[Path, ...]
    check_seconds: float


def _serve(
    role: str,
    listen: str,
    target: str,
    files: _Files,
    server_name: str | None,
    max_connections: int,
    idle_timeout: float,
    drain_timeout: float,
    verbose: bool,
    on_refused: RefusedHook | None,
) -> None:
    from qrc.transit import tunnel  # noqa: PLC0415

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        listen_at, target_at = tunnel.parse_address(listen), tunnel.parse_address(target)
        make = tunnel.server_context if role == "server" else tunnel.client_context
        context = make(files.cert, files.key, files.ca, files.crls)

        def reload() -> SSL.Context:
            return make(files.cert, files.key, files.ca, files.crls)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    if role == "client" and not _loopback(listen_at[0]):
        print(
            f"warning: the client end listens in plain TCP on {listen_at[0]}; "
            "anyone who reaches it uses your certificate",
            file=sys.stderr,
        )
    config = tunnel.TunnelConfig(
        role="server" if role == "server" else "client",
        listen=listen_at,
        target=target_at,
        context=context,
        server_name=server_name,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        drain_timeout=drain_timeout,
    )
    end = tunnel.Tunnel(config, on_refused=on_refused)

    def ready(address: tuple[str, int]) -> None:
        print(f"READY {address[0]} {address[1]}", flush=True)

    try:
        watched = (files.cert, files.key, files.ca, *files.crls)
        asyncio.run(
            end.run(ready, reload=reload, watch=watched, watch_interval=files.check_seconds)
        )
    except OSError as exc:
        fail(f"cannot listen on {listen}: {exc}")
    print(json.dumps(end.stats.as_dict()), file=sys.stderr, flush=True)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@tunnel_app.command("server")
def server(
    listen: Listen,
    forward: Annotated[str, typer.Option("--forward", help="HOST:PORT of the service.")],
    cert: Cert,
    key: KeyFile,
    ca: Ca,
    max_connections: MaxConn = 1000,
    idle_timeout: Idle = 300.0,
    drain_timeout: Drain = 10.0,
    verbose: Verbose = False,
    crl: Crls = None,
    reload_check_seconds: Watch = 30.0,
    events_data_dir: EventsDir = None,
) -> None:
    """Accept PQ mutual TLS on --listen; forward each connection to --forward."""
    _run(
        "server",
        listen,
        forward,
        cert,
        key,
        ca,
        server_name=None,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        drain_timeout=drain_timeout,
        verbose=verbose,
        crls=crl,
        reload_check=reload_check_seconds,
        events_data_dir=events_data_dir,
    )


@tunnel_app.command("client")
def client(
    listen: Listen,
    connect: Annotated[str, typer.Option("--connect", help="HOST:PORT of the server end.")],
    cert: Cert,
    key: KeyFile,
    ca: Ca,
    server_name: Annotated[
        str | None,
        typer.Option("--server-name", help="Name the server certificate must carry."),
    ] = None,
    max_connections: MaxConn = 1000,
    idle_timeout: Idle = 300.0,
    drain_timeout: Drain = 10.0,
    verbose: Verbose = False,
    crl: Crls = None,
    reload_check_seconds: Watch = 30.0,
    events_data_dir: EventsDir = None,
) -> None:
    """Accept plain TCP on --listen; carry each connection to --connect over PQ mutual TLS."""
    _run(
        "client",
        listen,
        connect,
        cert,
        key,
        ca,
        server_name=server_name,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        drain_timeout=drain_timeout,
        verbose=verbose,
        crls=crl,
        reload_check=reload_check_seconds,
        events_data_dir=events_data_dir,
    )


@tunnel_app.command("issue")
def issue(
    ca_dir: Annotated[Path, typer.Option("--ca-dir", help="CA directory (ca.pem, ca.key).")],
    name: Annotated[str, typer.Option("--name", help="Common name of the tunnel end.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for NAME.pem / NAME.key.")],
    host: Annotated[
        list[str] | None, typer.Option("--host", help="DNS name or IP it serves (repeat).")
    ] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=397, help="Validity.")] = 30,
) -> None:
    """Issue a tunnel-end certificate (TLS client and server) from a CA directory."""
    import datetime  # noqa: PLC0415

    from qrc.crypto.errors import CryptoError  # noqa: PLC0415
    from qrc.transit.tunnel_certs import issue_peer_certificate, write_peer_files  # noqa: PLC0415

    try:
        issued = issue_peer_certificate(
            ca_dir, name, host or (), validity=datetime.timedelta(days=days)
        )
    except (ValueError, OSError, CryptoError) as exc:
        fail(str(exc))
    cert, key = write_peer_files(issued, out, name)
    print(f"{cert}\n{key}")


if __name__ == "__main__":
    tunnel_app()
