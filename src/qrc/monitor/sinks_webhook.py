"""The webhook sink: each event is an HTTPS POST of its JSON, signed so the receiver can
authenticate it (``docs/event-sinks.md``, "Webhook").

Signatures follow Standard Webhooks (standardwebhooks.com): the signed content is
``webhook-id "." webhook-timestamp "." body``; ``webhook-signature`` carries
``v1,base64(HMAC-SHA256(secret, content))`` and, when an ML-DSA key is configured,
``mldsa1,base64(ML-DSA signature over content, context "qrc-webhook-v1")``, space-separated.
A receiver checks one it trusts, refuses a timestamp outside its tolerance (a replay) and
drops a ``webhook-id`` it has seen (the same id is sent on every retry of one event).

The request goes through :class:`qrc.transit.client.PQClient`: TLS 1.3 on the OpenSSL that
offers ``X25519MLKEM768`` (``hybrid-preferred`` by default, since a SIEM endpoint may not
speak it yet; ``pq-only`` to insist). Plain ``http://`` is only accepted on loopback (a
local relay); elsewhere the events would travel in the clear.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

from qrc.crypto.base import SigningKey
from qrc.monitor.sinks import SinkError, SinkEvent
from qrc.transit.client import PQClient, TransportError

__all__ = [
    "HMAC_PREFIX",
    "MLDSA_PREFIX",
    "WEBHOOK_CONTEXT",
    "WebhookSink",
    "parse_secret",
    "signed_content",
]

HMAC_PREFIX = "v1"
MLDSA_PREFIX = "mldsa1"
WEBHOOK_CONTEXT = b"qrc-webhook-v1"
_MIN_SECRET = 16
_RETRYABLE = frozenset({408, 425, 429})


def parse_secret(text: str) -> bytes:
    """The HMAC key of a configured secret: ``whsec_<base64>`` (Standard Webhooks) or the
    text's UTF-8 bytes.

    Raises:
        ValueError: shorter than 16 bytes, or bad base64 after ``whsec_``.
    """
    if text.startswith("whsec_"):
        try:
            key = base64.b64decode(text[6:], validate=True)
        except binascii.Error:
            raise ValueError("a whsec_ secret must be base64 after the prefix") from None
    else:
        key = text.encode("utf-8")
    if len(key) < _MIN_SECRET:
        raise ValueError(f"the webhook secret must be at least {_MIN_SECRET} bytes")
    return key


def signed_content(delivery_id: str, timestamp: int, body: bytes) -> bytes:
    """What both signatures cover."""
    return f"{delivery_id}.{timestamp}.".encode() + body


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WebhookSink:
    """POSTs each event to ``url``, signed with ``secret`` (HMAC) and/or ``signer`` (ML-DSA).

    Raises (at construction):
        ValueError: a bad URL, plain HTTP off loopback, or neither secret nor signer.
    """

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        secret: bytes | None = None,
        signer: SigningKey | None = None,
        ca_file: str | None = None,
        tls_mode: Literal["pq-only", "hybrid-preferred"] = "hybrid-preferred",
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"the webhook URL must be https://host[:port]/path, not {url!r}")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError(
                "the webhook URL must be https:// (plain http:// only to a loopback relay)"
            )
        if parts.query or parts.fragment or parts.username:
            raise ValueError("the webhook URL must not carry a query, fragment or user name")
        if secret is None and signer is None:
            raise ValueError("a webhook needs a secret (HMAC) or a signing key (ML-DSA)")
        self.url = url
        self._secret = secret
        self._signer = signer
        self._clock = clock
        self._client = PQClient(url, ca_file=ca_file, timeout=timeout, mode=tls_mode)

    def headers(self, event: SinkEvent, body: bytes) -> dict[str, str]:
        """The signature headers of one delivery attempt of ``event``."""
        timestamp = int(self._clock())
        content = signed_content(event.id, timestamp, body)
        signatures = []
        if self._secret is not None:
            mac = hmac.new(self._secret, content, hashlib.sha256).digest()
            signatures.append(f"{HMAC_PREFIX},{base64.b64encode(mac).decode('ascii')}")
        if self._signer is not None:
            signature = self._signer.sign(content, WEBHOOK_CONTEXT)
            signatures.append(f"{MLDSA_PREFIX},{base64.b64encode(signature).decode('ascii')}")
        return {
            "Content-Type": "application/json",
            "webhook-id": event.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": " ".join(signatures),
        }

    def send(self, event: SinkEvent) -> None:
        """POST ``event``; :class:`SinkError` unless the receiver answered 2xx."""
        body = event.to_json()
        try:
            response = self._client.request(
                "POST", "", body=body, headers=self.headers(event, body)
            )
        except (TransportError, OSError) as exc:
            raise SinkError(f"{self.url}: {exc}") from None
        if 200 <= response.status < 300:
            return
        permanent = 400 <= response.status < 500 and response.status not in _RETRYABLE
        raise SinkError(f"{self.url} answered {response.status}", permanent=permanent)

    def close(self) -> None:
        """Close the connection."""
        self._client.close()
