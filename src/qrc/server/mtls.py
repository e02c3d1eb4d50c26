"""Mutual TLS to the API: who a verified client certificate is.

A certificate issued by ``qrc ca issue --token-id ID`` stands for that API client: its role
and key scope. OpenSSL has checked the chain to our CA, the expiry and the CRL during the
handshake; here the certificate's record is looked up again (a revocation newer than the
CRL the listener loaded counts at once), then the token (revoked or expired tokens give no
access through their certificates either).
"""

from __future__ import annotations

import datetime
import threading
import time
from pathlib import Path

from qrc.api.deps import AppState
from qrc.keys.access.tokens import Client
from qrc.keys.service import KeyService
from qrc.transit.authority import IssuedRecord, PrivateCA, ServiceCAKeys

__all__ = ["CertificateClients", "attach_ca"]


def attach_ca(state: AppState, service: KeyService, data_dir: Path, *, mutual: bool) -> None:
    """Publish the private CA's files through the API and, under mutual TLS, map verified
    client certificates to API clients."""
    ca = PrivateCA(data_dir / "ca", ServiceCAKeys(service.keys, "serve"))
    state.ca_dir = ca.directory
    if mutual:
        state.certificate_client = CertificateClients(ca, service)


class CertificateClients:
    """``serial -> Client | None`` for :attr:`qrc.api.deps.AppState.certificate_client`."""

    def __init__(self, ca: PrivateCA, service: KeyService, cache_seconds: float = 5.0) -> None:
        self.ca, self.service, self.cache_seconds = ca, service, cache_seconds
        self._lock = threading.Lock()
        self._records: dict[str, IssuedRecord] = {}
        self._records_stamp: float | None = None
        self._clients: dict[str, Client] = {}
        self._clients_at = -float("inf")

    def _record(self, serial: str) -> IssuedRecord | None:
        path = self.ca.directory / "issued.json"
        stamp = path.stat().st_mtime if path.exists() else None
        with self._lock:
            if stamp != self._records_stamp:
                self._records = {r.serial.lstrip("0"): r for r in self.ca.records()}
                self._records_stamp = stamp
            return self._records.get(serial.lstrip("0"))

    def _client(self, client_id: str) -> Client | None:
        now = time.monotonic()
        with self._lock:
            # A token revoked since is seen within cache_seconds; one created since at once.
            if now - self._clients_at > self.cache_seconds or client_id not in self._clients:
                self._clients = {
                    client.id: client
                    for client, revoked_at in self.service.tokens.list()
                    if revoked_at is None
                }
                self._clients_at = now
            client = self._clients.get(client_id)
        if client is None:
            return None
        expires = client.expires_at
        if expires is not None:
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=datetime.UTC)
            if expires <= datetime.datetime.now(datetime.UTC):
                return None
        return client

    def __call__(self, serial: str) -> Client | None:
        record = self._record(serial)
        if record is None or record.revoked_at is not None or record.expired:
            return None
        if record.kind != "client" or record.identity is None:
            return None
        return self._client(record.identity)
