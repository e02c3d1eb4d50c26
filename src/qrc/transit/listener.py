"""A listener's TLS: both certificate families in one context, server preference, a record
of every handshake, and a context that can be replaced while the server runs.

One pyOpenSSL context holds the ML-DSA-65 chain and the ECDSA chain (OpenSSL keeps one
certificate per key type). Which one a handshake uses is the signature algorithm chosen
from those the client offers; with ``SSL_OP_CIPHER_SERVER_PREFERENCE`` OpenSSL walks the
*server's* list, which puts ECDSA first. So:

- a browser, which offers ECDSA and (Chromium) ML-DSA but cannot trust an ML-DSA root, gets
  the ECDSA certificate;
- qrc's own client in ``pq-only`` mode, which offers only ML-DSA, gets the ML-DSA one;
- the key exchange is the same for both: ``X25519MLKEM768`` whenever the client has it.

:class:`ListenerTLS` is what the server's connection factory asks for a context at every
new connection: :meth:`ListenerTLS.reload` (renewed certificates, a changed TLS mode)
applies to new handshakes, while open connections keep the context they started with.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.bindings.openssl.binding import Binding
from OpenSSL import SSL, crypto

from qrc.transit import tls as pqtls
from qrc.transit.ca import TLSFiles
from qrc.transit.pki import CERTIFICATE_POLICIES, CertificatePolicy

__all__ = [
    "SERVER_SIGALGS",
    "HandshakeCounters",
    "HandshakeRecord",
    "ListenerTLS",
    "RecordHook",
    "listener_context",
    "signature_scheme",
]

_log = logging.getLogger("qrc.transit.server")
_lib: Any = Binding.lib
_ffi: Any = Binding.ffi

# ECDSA first: with server preference a client that offers it gets the certificate every
# browser can trust; a client offering only ML-DSA still gets ML-DSA. Ed25519 and RSA-PSS
# stay for client certificates of other CAs (mutual TLS checks them against our CA anyway).
SERVER_SIGALGS: Final = (
    "ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512:"
    "mldsa65:mldsa87:mldsa44:ed25519:ed448:"
    "rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512"
)
# TLS 1.3 ties an ECDSA signature's hash to the curve (RFC 8446, 4.2.3).
_SCHEMES: Final = {
    "ECDSA-secp256r1": "ecdsa_secp256r1_sha256",
    "ECDSA-secp384r1": "ecdsa_secp384r1_sha384",
    "ECDSA-secp521r1": "ecdsa_secp521r1_sha512",
    "ML-DSA-44": "mldsa44",
    "ML-DSA-65": "mldsa65",
    "ML-DSA-87": "mldsa87",
    "Ed25519": "ed25519",
    "Ed448": "ed448",
}


def signature_scheme(certificate_algorithm: str) -> str:
    """The TLS 1.3 signature scheme a certificate of this algorithm signs with."""
    return _SCHEMES.get(certificate_algorithm, certificate_algorithm)


@dataclass(frozen=True)
class HandshakeRecord:
    """What one completed server handshake negotiated."""

    group: str
    cipher: str
    signature: str
    """The server's signature scheme (``ecdsa_secp256r1_sha256``, ``mldsa65``...)."""
    certificate: str
    """The server certificate's algorithm (``ECDSA-secp256r1``, ``ML-DSA-65``)."""
    certificate_serial: int
    client: str | None = None
    """The client certificate's subject (mutual TLS), else None."""

    @property
    def post_quantum(self) -> bool:
        return pqtls.is_pq_group(self.group)


RecordHook = Callable[[HandshakeRecord], None]


class HandshakeCounters:
    """Handshakes by group, signature scheme and certificate; refusals by alert (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.completed: dict[tuple[str, str, str], int] = defaultdict(int)
        self.refused: dict[str, int] = defaultdict(int)

    def count(self, record: HandshakeRecord) -> None:
        with self._lock:
            self.completed[(record.group, record.signature, record.certificate)] += 1

    def count_refused(self, alert: str) -> None:
        with self._lock:
            self.refused[alert] += 1

    def render(self) -> str:
        """Prometheus text exposition of the counters."""
        out = [
            "# HELP qrc_tls_handshakes_by_certificate_total Completed TLS handshakes by "
            "key-exchange group, server signature scheme and certificate algorithm.",
            "# TYPE qrc_tls_handshakes_by_certificate_total counter",
        ]
        with self._lock:
            for (group, signature, certificate), n in sorted(self.completed.items()):
                out.append(
                    "qrc_tls_handshakes_by_certificate_total"
                    f'{{group="{group}",signature="{signature}",certificate="{certificate}"}} {n}'
                )
            out += [
                "# HELP qrc_tls_handshakes_refused_total TLS handshakes the server refused, "
                "by the alert it sent.",
                "# TYPE qrc_tls_handshakes_refused_total counter",
            ]
            out += [
                f'qrc_tls_handshakes_refused_total{{alert="{alert}"}} {n}'
                for alert, n in sorted(self.refused.items())
            ]
        return "\n".join(out) + "\n"


def _load_pair(ctx: SSL.Context, cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> None:
    try:
        # Sets the certificate in the slot of its key type, with its chain.
        ctx.use_certificate_chain_file(os.fspath(cert))
        ctx.use_privatekey_file(os.fspath(key))
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise pqtls.TLSConfigError(f"cannot use {cert} / {key}: {exc}") from None


def listener_context(
    files: TLSFiles,
    *,
    mode: pqtls.Mode = "pq-only",
    certificates: CertificatePolicy = "dual",
    on_record: RecordHook | None = None,
    on_failure: pqtls.HandshakeFailureHook | None = None,
    client_ca: str | os.PathLike[str] | None = None,
    configure: Callable[[SSL.Context], None] | None = None,
    client_crls: Sequence[str | os.PathLike[str]] = (),
) -> SSL.Context:
    """A TLS 1.3 server context with the certificates ``certificates`` asks for.

    ``client_ca``: ask for a client certificate (mutual TLS) and verify it against these
    CA certificates; a client without one still connects (the application decides what an
    unauthenticated connection may do), one with an expired, revoked (``client_crls``, PEM
    CRLs of the issuing CAs) or unknown certificate is refused with the matching alert.
    ``configure`` may adjust the context last.
    """
    if certificates not in CERTIFICATE_POLICIES:
        raise pqtls.TLSConfigError(f"unknown certificate policy {certificates!r}")
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    if certificates in ("ml-dsa", "dual"):
        _load_pair(ctx, files.cert, files.key)
    if certificates in ("ecdsa", "dual"):
        if files.ecdsa_cert is None or files.ecdsa_key is None:
            raise pqtls.TLSConfigError(f"certificate policy {certificates} needs ECDSA files")
        _load_pair(ctx, files.ecdsa_cert, files.ecdsa_key)
    if _lib.SSL_CTX_set1_sigalgs_list(ctx._context, SERVER_SIGALGS.encode()) != 1:
        raise pqtls.TLSConfigError("OpenSSL refused the server signature algorithms")
    if (
        _lib.SSL_CTX_set1_curves_list(ctx._context, pqtls.groups_for(mode, server=True).encode())
        != 1
    ):
        raise pqtls.TLSConfigError("OpenSSL refused the group list (ML-KEM needs OpenSSL 3.5+)")
    if client_ca is not None:
        try:
            ctx.load_verify_locations(os.fspath(client_ca))
        except SSL.Error as exc:
            raise pqtls.TLSConfigError(f"cannot load client CAs from {client_ca}: {exc}") from None
        ctx.set_verify(SSL.VERIFY_PEER)
        if client_crls:
            store = ctx.get_cert_store()
            if store is None:  # OpenSSL always gives a context a store
                raise pqtls.TLSConfigError("the TLS context has no certificate store")
            for path in client_crls:
                store.add_crl(x509.load_pem_x509_crl(Path(path).read_bytes()))
            store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
    if on_record is not None or on_failure is not None:
        ctx.set_info_callback(_recorder(on_record, on_failure))
    if configure is not None:
        configure(ctx)
    return ctx


def _recorder(
    on_record: RecordHook | None, on_failure: pqtls.HandshakeFailureHook | None
) -> Callable[[SSL.Connection, int, int], None]:
    reported: weakref.WeakSet[SSL.Connection] = weakref.WeakSet()
    # The context's certificates, by address: their algorithm is read once.
    names: dict[int, tuple[str, int]] = {}

    def certificate_of(conn: SSL.Connection) -> tuple[str, int]:
        pointer = int(_ffi.cast("uintptr_t", _lib.SSL_get_certificate(conn._ssl)))
        known = names.get(pointer)
        if known is None:
            cert = conn.get_certificate(as_cryptography=True)
            known = (
                ("none", 0)
                if cert is None
                else (
                    pqtls.certificate_algorithm(cert),
                    cert.serial_number,
                )
            )
            names[pointer] = known
        return known

    def callback(conn: SSL.Connection, where: int, ret: int) -> None:
        try:
            if where & SSL.SSL_CB_HANDSHAKE_DONE:
                if on_record is None or conn in reported:
                    return
                reported.add(conn)
                algorithm, serial = certificate_of(conn)
                peer = conn.get_peer_certificate(as_cryptography=True)
                on_record(
                    HandshakeRecord(
                        group=pqtls.negotiated_group(conn) or "unknown",
                        cipher=conn.get_cipher_name() or "",
                        signature=signature_scheme(algorithm),
                        certificate=algorithm,
                        certificate_serial=serial,
                        client=None if peer is None else peer.subject.rfc4514_string(),
                    )
                )
            elif (
                where & _lib.SSL_CB_WRITE_ALERT
                and on_failure is not None
                and (ret >> 8) == pqtls._FATAL
                and conn not in reported
            ):
                reported.add(conn)
                on_failure(pqtls._ALERTS.get(ret & 0xFF, f"alert_{ret & 0xFF}"))
        except Exception:
            _log.exception("TLS handshake hook failed")

    return callback


class ListenerTLS:
    """The current context of one listener, rebuilt by :meth:`reload` while it serves."""

    def __init__(
        self,
        files: TLSFiles,
        *,
        mode: pqtls.Mode = "pq-only",
        certificates: CertificatePolicy = "dual",
        on_record: RecordHook | None = None,
        on_failure: pqtls.HandshakeFailureHook | None = None,
        client_ca: str | os.PathLike[str] | None = None,
        configure: Callable[[SSL.Context], None] | None = None,
        client_crls: Sequence[str | os.PathLike[str]] = (),
    ) -> None:
        self._lock = threading.Lock()
        self.client_ca, self.client_crls = client_ca, tuple(client_crls)
        self._files, self._mode, self._certificates = files, mode, certificates
        self._hooks = (on_record, on_failure)
        self._configure = configure
        self.generation = 0
        self.context = self._build()

    @property
    def mode(self) -> pqtls.Mode:
        return self._mode

    @property
    def certificates(self) -> CertificatePolicy:
        return self._certificates

    @property
    def files(self) -> TLSFiles:
        return self._files

    def _build(self) -> SSL.Context:
        return listener_context(
            self._files,
            mode=self._mode,
            certificates=self._certificates,
            on_record=self._hooks[0],
            on_failure=self._hooks[1],
            client_ca=self.client_ca,
            configure=self._configure,
            client_crls=self.client_crls,
        )

    def reload(
        self,
        *,
        files: TLSFiles | None = None,
        mode: pqtls.Mode | None = None,
        certificates: CertificatePolicy | None = None,
        client_ca: str | os.PathLike[str] | None = None,
        client_crls: Sequence[str | os.PathLike[str]] | None = None,
    ) -> None:
        """Rebuild the context (from the files as they are now) for new handshakes;
        ``client_ca`` (with its ``client_crls``) turns mutual TLS on.

        Raises TLSConfigError and keeps the current context if the new one cannot be built
        (a key file half written by another process, say).
        """
        with self._lock:
            previous = (self._files, self._mode, self._certificates)
            before = (self.client_ca, self.client_crls)
            self._files = files or self._files
            self._mode = mode or self._mode
            self._certificates = certificates or self._certificates
            if client_ca is not None:
                self.client_ca = client_ca
                self.client_crls = tuple(client_crls or ())
            try:
                context = self._build()
            except Exception:
                self._files, self._mode, self._certificates = previous
                self.client_ca, self.client_crls = before
                raise
            self.context = context  # one reference swap: new connections see it at once
            self.generation += 1
