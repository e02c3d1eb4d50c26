"""``qrc ca``: the private CA for services and agents (``qrc.transit.authority``).

Its keys are reserved keys of the key service in ``--data-dir`` (created by ``init``); the
CA certificates, the list of issued certificates and the CRLs are in ``DATA_DIR/ca``. A
running ``qrc serve`` publishes the CRLs (``GET /api/v1/security/qrc/ca/crl/{family}``) and,
with ``QRC_TLS_CLIENT_AUTH=optional``, accepts client certificates from this CA.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qrc.cli.admin.common import (
    DataDirOpt,
    JsonOpt,
    current_actor,
    key_service,
    print_json,
    write_new,
)
from qrc.cli.io import fail

if TYPE_CHECKING:
    from qrc.crypto.base import SigningKey
    from qrc.transit.authority import PrivateCA

__all__ = ["ca_app"]

ca_app = typer.Typer(
    name="ca",
    help="The private CA: roots and intermediates (ML-DSA and ECDSA), leaf certificates, CRLs.",
    no_args_is_help=True,
)

FamilyOpt = Annotated[str, typer.Option("--family", help="ml-dsa or ecdsa.")]
DaysOpt = Annotated[float, typer.Option("--days", min=0.00001, help="Lifetime in days.")]


@contextmanager
def _ca(data_dir: Path) -> Iterator[PrivateCA]:
    from qrc.transit.authority import PrivateCA, ServiceCAKeys  # noqa: PLC0415

    with key_service(data_dir) as service:
        try:
            yield PrivateCA(data_dir / "ca", ServiceCAKeys(service.keys, current_actor()))
        except (KeyError, ValueError, FileExistsError, FileNotFoundError) as exc:
            fail(str(exc).strip("'\""))


@ca_app.command("init")
def init(data_dir: DataDirOpt = Path(".qrc")) -> None:
    """Create the ML-DSA-87 and ECDSA P-384 roots and their intermediates."""
    with _ca(data_dir) as ca:
        ca.init()
        typer.echo(f"CA created in {ca.directory}; peers trust {ca.trust_file}")


def _write(ca_out: Path, chain: bytes, key: bytes) -> None:
    ca_out.mkdir(parents=True, exist_ok=True)
    write_new(ca_out / "cert.pem", chain)
    write_new(ca_out / "key.pem", key)


@ca_app.command("issue")
def issue(
    subject: Annotated[str, typer.Argument(help="Common name: the service or agent.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for cert.pem, key.pem.")],
    data_dir: DataDirOpt = Path(".qrc"),
    family: FamilyOpt = "ml-dsa",
    server: Annotated[bool, typer.Option("--server", help="A server certificate.")] = False,
    name: Annotated[
        list[str] | None, typer.Option("--name", help="DNS name or IP address (repeatable).")
    ] = None,
    token_id: Annotated[
        str | None,
        typer.Option("--token-id", help="API token the certificate stands for (mutual TLS)."),
    ] = None,
    days: DaysOpt = 7.0,
    json_out: JsonOpt = False,
) -> None:
    """Issue a leaf certificate (7 days by default) and its new key."""
    with _ca(data_dir) as ca:
        chain, key, record = ca.issue(
            subject,
            family=family,  # type: ignore[arg-type]
            kind="server" if server else "client",
            names=name or [],
            identity=token_id,
            validity=timedelta(days=days),
        )
        _write(out_dir, chain, key)
        if json_out:
            print_json(vars(record))
        else:
            typer.echo(f"issued {record.serial} to {subject} until {record.not_after} in {out_dir}")


@ca_app.command("renew")
def renew(
    serial: Annotated[str, typer.Argument(help="Serial (hex) of the certificate to renew.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for cert.pem, key.pem.")],
    data_dir: DataDirOpt = Path(".qrc"),
    days: DaysOpt = 7.0,
) -> None:
    """A new key and certificate for what SERIAL was issued for."""
    with _ca(data_dir) as ca:
        chain, key, record = ca.renew(serial, validity=timedelta(days=days))
        _write(out_dir, chain, key)
        typer.echo(
            f"issued {record.serial} to {record.subject} until {record.not_after} in {out_dir}"
        )


@ca_app.command("revoke")
def revoke(
    serial: Annotated[str, typer.Argument(help="Serial (hex) of the certificate.")],
    reason: Annotated[
        str, typer.Option("--reason", help="RFC 5280 reason, e.g. key_compromise.")
    ] = "unspecified",
    data_dir: DataDirOpt = Path(".qrc"),
) -> None:
    """Revoke a certificate and publish new CRLs."""
    with _ca(data_dir) as ca:
        record = ca.revoke(serial, reason)
        typer.echo(f"revoked {record.serial} ({record.subject}): {record.reason}")


@ca_app.command("list")
def list_issued(data_dir: DataDirOpt = Path(".qrc"), json_out: JsonOpt = False) -> None:
    """Every certificate issued, with its state."""
    from qrc.transit.authority import PrivateCA  # noqa: PLC0415

    records = PrivateCA(data_dir / "ca", _NoKeys()).records()
    if json_out:
        print_json([vars(r) for r in records])
        return
    for r in records:
        state = "revoked" if r.revoked_at else "expired" if r.expired else "valid"
        typer.echo(f"{r.serial}  {r.family:6}  {r.kind:6}  {state:7}  {r.not_after}  {r.subject}")


@ca_app.command("crl")
def crl(
    data_dir: DataDirOpt = Path(".qrc"),
    family: FamilyOpt = "ml-dsa",
    publish: Annotated[bool, typer.Option("--publish", help="Sign fresh CRLs first.")] = False,
) -> None:
    """Print the CRL of a family (PEM)."""
    if publish:
        with _ca(data_dir) as ca:
            ca.publish_crls()
    path = data_dir / "ca" / f"crl-{family}.pem"
    if not path.exists():
        fail(f"no CRL at {path}: run `qrc ca init` first")
    typer.echo(path.read_text().rstrip())


class _NoKeys:
    """Reading the CA's public files needs no key."""

    def signing_key(self, name: str, algorithm: str, purpose: str) -> SigningKey:
        raise RuntimeError("this command does not sign")
