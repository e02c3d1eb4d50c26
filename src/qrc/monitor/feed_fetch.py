"""Fetching a threat feed document from a file or an HTTPS URL, bounded in size and time.

HTTPS goes through :class:`qrc.transit.client.PQClient` (pyOpenSSL on OpenSSL 4), which
offers ``X25519MLKEM768`` first and falls back to a classical group for a publisher's server
that lacks it (``hybrid-preferred``): the feed is public and its integrity comes from its
signature, not from the channel, so a classical channel costs nothing but is still checked
against the CA (the system store, or ``ca_file`` for a private server). Plain ``http://`` is
refused all the same: a man in the middle could withhold new feeds.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from qrc.monitor.feed_format import MAX_DOCUMENT
from qrc.transit.client import PQClient, TransportError
from qrc.transit.tls import TLSConfigError

__all__ = ["FeedUnavailable", "fetch_document", "is_url"]


class FeedUnavailable(Exception):
    """The feed could not be fetched (unreachable, TLS failure, HTTP error, too large)."""


def is_url(source: str) -> bool:
    """Whether ``source`` names a URL rather than a file."""
    return "://" in source


def fetch_document(source: str, *, ca_file: Path | None = None, timeout: float = 30.0) -> bytes:
    """The bytes at ``source``: a file path, ``file://`` path or ``https://`` URL.

    Raises:
        FeedUnavailable: what went wrong, in words an operator can act on.
    """
    if not is_url(source) or source.startswith("file://"):
        return _read_file(Path(source.removeprefix("file://")))
    parts = urlsplit(source)
    if parts.scheme != "https" or not parts.hostname:
        raise FeedUnavailable(f"{source!r}: a feed URL must be https:// (or give a file path)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        with PQClient(
            f"https://{parts.netloc}",
            ca_file=str(ca_file) if ca_file is not None else None,
            timeout=timeout,
            mode="hybrid-preferred",
        ) as client:
            response = client.get(target, headers={"Accept": "application/json"})
    except TLSConfigError as exc:
        raise FeedUnavailable(f"QRC_FEED_CA_FILE: {exc}") from None
    except (TransportError, OSError) as exc:
        raise FeedUnavailable(f"{source}: {exc}") from None
    if response.status != 200:
        raise FeedUnavailable(f"{source}: HTTP {response.status} {response.reason[:100]}")
    if len(response.body) > MAX_DOCUMENT:
        raise FeedUnavailable(f"{source}: larger than {MAX_DOCUMENT} bytes")
    return response.body


def _read_file(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_DOCUMENT + 1)
    except OSError as exc:
        raise FeedUnavailable(f"{path}: {exc.strerror or exc}") from None
    if len(data) > MAX_DOCUMENT:
        raise FeedUnavailable(f"{path}: larger than {MAX_DOCUMENT} bytes")
    return data
