"""Keep a running listener's TLS current: renew certificates before they expire and follow
the stored policy's TLS mode, without a restart and without dropping a connection.

Every ``interval`` seconds :class:`TLSMaintainer` re-runs
:func:`qrc.transit.pki.ensure_listener_tls` (which reissues what is missing, expiring or for
other names; after ``qrc ca init``, :func:`qrc.transit.ca_server.ensure_ca_server_tls` from
the key service's CA), re-signs the CRLs when they are due, and, if the certificate files
differ from those the listener loaded (renewed here, or by another worker of the same data
directory), rebuilds the listener's context. A CA made by ``qrc ca init`` while the server
runs is taken up at the next pass: server certificates from it, and mutual TLS turned on
(``QRC_TLS_CLIENT_AUTH=optional``), with ``on_mutual`` called so that the API maps client
certificates to their tokens.
New handshakes use the new context; open connections keep theirs until they close.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from qrc.keys.service import KeyService
from qrc.server.config import Settings
from qrc.server.telemetry import HandshakeTelemetry
from qrc.transit.authority import FAMILIES, PrivateCA, ServiceCAKeys
from qrc.transit.ca import TLSFiles, default_server_names
from qrc.transit.ca_server import ensure_ca_server_tls
from qrc.transit.listener import ListenerTLS
from qrc.transit.pki import ensure_listener_tls
from qrc.transit.tls import MODES, Mode

__all__ = ["ServingTLS", "TLSMaintainer", "start_listener_tls", "tls_snapshot"]

logger = logging.getLogger(__name__)


def tls_snapshot(files: TLSFiles, client_ca: Sequence[Path] = ()) -> tuple[bytes, ...]:
    """The bytes of the certificate, key, client CA and CRL files, to tell a change."""
    paths = [files.cert, files.key, files.ecdsa_cert, files.ecdsa_key, *client_ca]
    return tuple(p.read_bytes() if p is not None and p.exists() else b"" for p in paths)


class TLSMaintainer:
    """A daemon thread that renews certificates and applies TLS mode changes."""

    def __init__(
        self,
        listener: ListenerTLS,
        service: KeyService,
        *,
        ensure: Callable[[], TLSFiles],
        interval: float,
        follow_policy: bool,
        ca: PrivateCA | None = None,
        mutual_wanted: bool = False,
    ) -> None:
        self.listener, self.service = listener, service
        self.ensure = ensure
        self.interval, self.follow_policy = interval, follow_policy
        self.ca = ca
        self.mutual_wanted = mutual_wanted
        self.on_mutual: Callable[[], None] | None = None
        self.loaded = tls_snapshot(listener.files, self._client_files())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="qrc-tls")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:
                logger.exception("TLS maintenance failed; the current certificates stay")

    def check(self) -> None:
        """One pass: the TLS mode, then the certificates."""
        mode: Mode | None = None
        if self.follow_policy:
            stored = str(self.service.current_policy().get("tls_mode") or "pq-only")
            if stored in MODES and stored != self.listener.mode:
                mode = stored  # type: ignore[assignment]
        files = self.ensure()
        ca_ready = self.ca is not None and self.ca.exists()
        if self.ca is not None and ca_ready and self.ca.crls_due():
            self.ca.publish_crls()
        if self.ca is not None and ca_ready and self.mutual_wanted and not self.mutual:
            self._turn_on_mutual(self.ca, files, mode)
            return
        snapshot = tls_snapshot(files, self._client_files())
        renewed = snapshot != self.loaded
        if mode is None and not renewed:
            return
        self.listener.reload(files=files, mode=mode)
        self.loaded = snapshot
        if mode is not None:
            logger.info("TLS mode is now %s (new connections)", mode)
        if renewed:
            logger.info("TLS certificates renewed or CRLs updated (new connections)")

    @property
    def mutual(self) -> bool:
        """Whether the listener asks for client certificates."""
        return self.listener.client_ca is not None

    def _turn_on_mutual(self, ca: PrivateCA, files: TLSFiles, mode: Mode | None) -> None:
        # The API learns to map certificates before the listener asks for them.
        if self.on_mutual is not None:
            self.on_mutual()
        crls = [ca.crl_file(family) for family in FAMILIES]
        self.listener.reload(files=files, mode=mode, client_ca=ca.trust_file, client_crls=crls)
        self.loaded = tls_snapshot(files, self._client_files())
        logger.warning("private CA found: server certificates from it, mutual TLS on")

    def _client_files(self) -> list[Path]:
        if self.listener.client_ca is None:
            return []
        return [Path(self.listener.client_ca), *(Path(p) for p in self.listener.client_crls)]


@dataclass(frozen=True)
class ServingTLS:
    """A listener's TLS as the runner starts it."""

    files: TLSFiles
    listener: ListenerTLS
    maintainer: TLSMaintainer

    @property
    def mutual(self) -> bool:
        """Whether the listener asks for client certificates from the private CA."""
        return self.listener.client_ca is not None


def start_listener_tls(
    settings: Settings,
    service: KeyService,
    host: str,
    mode: str,
    follow_policy: bool,
    telemetry: HandshakeTelemetry,
) -> ServingTLS:
    """Certificates made or renewed, the listener's context, and its maintenance thread."""
    secret = settings.ca_passphrase
    ca_passphrase = secret.get_secret_value().encode() if secret else None
    names = default_server_names(host)
    validity = datetime.timedelta(days=settings.tls_cert_days)
    ca = PrivateCA(settings.data_dir / "ca", ServiceCAKeys(service.keys, "serve"))

    def ensure() -> TLSFiles:
        files = ensure_listener_tls(
            settings.data_dir,
            names,
            certificates=settings.tls_certificates,
            ca_passphrase=ca_passphrase,
            validity=validity,
            renew_before=validity / 3,
        )
        if not ca.exists():
            return files
        # After `qrc ca init`: the listener's certificates come from that CA.
        return ensure_ca_server_tls(
            ca, names, bundle=files.ca, validity=validity, renew_before=validity / 3
        )

    files = ensure()
    if mode not in MODES:
        raise ValueError(f"unknown TLS mode {mode!r}")
    mutual_wanted = settings.tls_client_auth == "optional"
    mutual = mutual_wanted and ca.exists()
    listener = ListenerTLS(
        files,
        mode=mode,  # type: ignore[arg-type]
        certificates=settings.tls_certificates,
        on_record=telemetry.record,
        on_failure=telemetry.failure,
        client_ca=ca.trust_file if mutual else None,
        client_crls=[ca.crl_file(family) for family in FAMILIES] if mutual else (),
    )
    maintainer = TLSMaintainer(
        listener,
        service,
        ensure=ensure,
        interval=settings.tls_check_seconds,
        follow_policy=follow_policy,
        ca=ca,
        mutual_wanted=mutual_wanted,
    )
    maintainer.start()
    return ServingTLS(files, listener, maintainer)
