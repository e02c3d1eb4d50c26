"""``qrc feed``: publish a signed threat feed, and load one into the service of a data directory.

Publisher side: ``keygen`` (the publisher key pair), ``sign`` (a feed JSON into the signed
document), ``verify``. Operator side: ``load FILE|URL`` (verify under the configured publisher
key, accept and apply it, as ``POST /protocols/feed`` does) and ``status``. Registered in
``qrc.cli.main`` as ``("feed", "qrc.cli.feed:feed_app")``; see ``docs/threat-feed.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from qrc.cli.admin.common import (
    DEFAULT_DIR,
    DataDirOpt,
    JsonOpt,
    PassOpt,
    current_actor,
    first_line,
    handled,
    key_service,
    out,
    print_json,
    write_new,
)
from qrc.cli.io import fail, read_input, say, write_output

if TYPE_CHECKING:
    from qrc.monitor.feed_format import Publisher
    from qrc.monitor.landscape import Landscape

__all__ = ["feed_app"]

feed_app = typer.Typer(
    name="feed",
    help="The signed threat feed: publish one (keygen, sign, verify), load one, show it.",
    no_args_is_help=True,
)

PublisherOpt = Annotated[
    Path | None,
    typer.Option(
        "--publisher-key",
        envvar="QRC_FEED_PUBLISHER_KEY",
        help="The publisher's public key file (SPKI PEM or DER).",
    ),
]


def _publisher(path: Path | None) -> Publisher:
    from qrc.monitor.feed_format import load_publisher  # noqa: PLC0415

    if path is None:
        fail("give --publisher-key FILE (or set QRC_FEED_PUBLISHER_KEY): the publisher's key")
    with handled():
        return load_publisher(path)
    raise AssertionError("unreachable")  # pragma: no cover - handled() exits


@feed_app.command("keygen")
def keygen(
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Writes OUTPUT.key (private) and OUTPUT.pub.")
    ],
    algorithm: Annotated[
        str, typer.Option("-a", "--algorithm", help="ML-DSA-44/65/87 or an SLH-DSA set.")
    ] = "ML-DSA-65",
    passphrase_file: PassOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Make a publisher key pair; give OUTPUT.pub to the services (QRC_FEED_PUBLISHER_KEY)."""
    from qrc.crypto import generate_private_key  # noqa: PLC0415
    from qrc.crypto.base import SigningKey  # noqa: PLC0415
    from qrc.crypto.keyfile import private_key_to_pem, public_key_to_pem  # noqa: PLC0415
    from qrc.crypto.registry import Kind, get_info  # noqa: PLC0415
    from qrc.monitor.feed_format import Publisher  # noqa: PLC0415

    private_path, public_path = output.with_suffix(".key"), output.with_suffix(".pub")
    for path in (private_path, public_path):
        if path.exists():
            fail(f"{path} exists; refusing to overwrite it (remove it first)")
    with handled():
        info = get_info(algorithm, Kind.SIGNATURE)
        if not info.id.startswith(("ML-DSA-", "SLH-DSA-")):
            fail(f"a feed publisher key must be ML-DSA or SLH-DSA, not {info.id}")
        key = generate_private_key(info.id)
        if not isinstance(key, SigningKey):  # the registry said signature: a bug otherwise
            raise TypeError(f"{info.id} made a {type(key).__name__}")
        passphrase = first_line(passphrase_file) if passphrase_file else None
        publisher = Publisher.of(key.public_key())
        write_new(private_path, private_key_to_pem(key, passphrase))
        write_new(public_path, public_key_to_pem(key.public_key()))
    public_path.chmod(0o644)
    result = {
        "algorithm": publisher.algorithm,
        "key_id": publisher.key_id,
        "private_key": str(private_path),
        "public_key": str(public_path),
    }
    if as_json:
        print_json(result)
        return
    say(f"publisher key {publisher.algorithm}, key ID {publisher.key_id}")
    say(f"private key: {private_path} (keep it offline); public key: {public_path}")


@feed_app.command("sign")
def sign(
    feed: Annotated[Path, typer.Argument(help="The feed JSON (the 'feed' object), or - .")],
    key: Annotated[Path, typer.Option("--key", help="The publisher's private key file.")],
    passphrase_file: PassOpt = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write to FILE, not stdout.")
    ] = None,
) -> None:
    """Sign a feed: checks it against the format first, fills format, version and key ID."""
    from qrc.crypto.base import SigningKey  # noqa: PLC0415
    from qrc.crypto.keyfile import load_private_pem  # noqa: PLC0415
    from qrc.monitor.feed_format import sign_feed  # noqa: PLC0415

    with handled():
        raw = read_input(None if str(feed) == "-" else feed)
        try:
            body: Any = json.loads(raw)
        except (UnicodeError, ValueError) as exc:
            fail(f"{feed}: not JSON ({exc})")
        if not isinstance(body, dict):
            fail(f"{feed}: the feed must be a JSON object")
        passphrase = first_line(passphrase_file) if passphrase_file else None
        private = load_private_pem(key.read_bytes(), passphrase)
        if not isinstance(private, SigningKey):
            fail(f"{key} is not a signature key")
        document = sign_feed(body, private)
    write_output(output, document)
    if output is not None:
        say(f"signed feed {body.get('sequence')} written to {output}")


def _summary(feed: Any) -> dict[str, Any]:
    return {
        "sequence": feed.sequence,
        "publisher": feed.publisher,
        "publisher_key_id": feed.publisher_key_id,
        "issued_at": feed.issued_at,
        "expires_at": feed.expires_at,
        "algorithms": len(feed.algorithms),
        "transitions": len(feed.transitions),
        "milestones": len(feed.milestones),
        "advisories": len(feed.advisories),
    }


@feed_app.command("verify")
def verify(
    document: Annotated[Path, typer.Argument(help="The signed feed document, or - .")],
    publisher_key: PublisherOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a signed feed's signature, format and validity (exit 1 if it is refused)."""
    from qrc.keys.store.db import utcnow  # noqa: PLC0415
    from qrc.monitor.feed_format import FeedRefused, verify_document  # noqa: PLC0415

    publisher = _publisher(publisher_key)
    with handled():
        raw = read_input(None if str(document) == "-" else document)
    try:
        verified = verify_document(raw, publisher, utcnow())
    except FeedRefused as exc:
        if as_json:
            print_json({"valid": False, "reason": exc.reason, "detail": exc.detail})
        fail(str(exc), code=1)
    summary = {"valid": True, "digest": verified.digest, **_summary(verified.feed)}
    if as_json:
        print_json(summary)
        return
    out.print(
        f"valid: feed {summary['sequence']} from {verified.feed.publisher!r}, "
        f"expires {summary['expires_at']}",
        markup=False,
    )


@feed_app.command("load")
def load(
    source: Annotated[str, typer.Argument(help="A signed feed file, or an https:// URL.")],
    data_dir: DataDirOpt = DEFAULT_DIR,
    publisher_key: PublisherOpt = None,
    ca_file: Annotated[
        Path | None,
        typer.Option("--ca-file", envvar="QRC_FEED_CA_FILE", help="CA of a private HTTPS server."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Verify a feed, accept it and apply its statuses to the service of the data directory."""
    from qrc.monitor.feed import ThreatFeed  # noqa: PLC0415
    from qrc.monitor.feed_fetch import FeedUnavailable, fetch_document  # noqa: PLC0415
    from qrc.monitor.feed_format import FeedRefused  # noqa: PLC0415

    publisher = _publisher(publisher_key)
    try:
        document = fetch_document(source, ca_file=ca_file)
    except FeedUnavailable as exc:
        fail(f"cannot read the feed: {exc}")
    with key_service(data_dir) as service:
        feed = ThreatFeed(service, publisher)
        try:
            outcome = feed.submit(document, actor=current_actor(), origin=source)
        except FeedRefused as exc:
            fail(f"{exc} (recorded as a security event; the policy is unchanged)")
    changes = [c.as_dict() for c in outcome.changes]
    if as_json:
        print_json({"accepted": True, "sequence": outcome.sequence, "changes": changes})
        return
    say(f"accepted feed {outcome.sequence}: {len(changes)} status change(s)")
    for change in changes:
        say(f"  {change['algorithm']}: {change['from']} -> {change['to']} ({change['reason']})")


def _table(landscape: Landscape) -> None:
    from rich.table import Table  # noqa: PLC0415

    feed = landscape.feed
    if feed is not None:
        state = "EXPIRED" if feed["expired"] else "valid"
        out.print(
            f"feed {feed['sequence']} from {feed['publisher']!r}, {state} until "
            f"{feed['expires_at']}, accepted {feed['accepted_at']}",
            markup=False,
        )
    statuses = Table("algorithm", "feed", "policy", "in force", "in use", "why", title="Statuses")
    for s in landscape.statuses:
        statuses.add_row(s["algorithm"], s["feed_status"], s["policy_status"] or "(unknown)",
                         "yes" if s["in_force"] else "NO", "yes" if s["in_use"] else "-",
                         s["reason"])  # fmt: skip
    advisories = Table("severity", "id", "title", "affects keys", title="Advisories")
    for a in landscape.advisories:
        advisories.add_row(a["severity"], a["id"], a["title"], ", ".join(a["affects_keys"]) or "-")
    upcoming = Table("date", "days left", "what", "source", title="Dates ahead")
    for item in landscape.upcoming:
        upcoming.add_row(item["date"], str(item["days_left"]), item["title"], item["source"])
    for table in (statuses, advisories, upcoming):
        out.print(table)
    for line in landscape.errors + landscape.warnings:
        out.print(f"! {line}", markup=False)


@feed_app.command("status")
def status(
    data_dir: DataDirOpt = DEFAULT_DIR, publisher_key: PublisherOpt = None, as_json: JsonOpt = False
) -> None:
    """The accepted feed: statuses against the policy, advisories, dates ahead (reads only)."""
    from qrc.monitor.feed import ThreatFeed  # noqa: PLC0415
    from qrc.monitor.landscape import monitor_quantum_threat_landscape  # noqa: PLC0415

    publisher = _publisher(publisher_key) if publisher_key is not None else None
    with key_service(data_dir) as service:
        feed = ThreatFeed(service, publisher) if publisher is not None else None
        landscape = monitor_quantum_threat_landscape(service, feed, refresh=False, apply=False)
    if as_json:
        print_json(landscape.as_dict())
        return
    _table(landscape)
