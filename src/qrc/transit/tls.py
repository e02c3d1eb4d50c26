"""TLS 1.3 contexts with post-quantum key exchange, on pyOpenSSL.

pyOpenSSL runs on the OpenSSL that pyca/cryptography bundles (OpenSSL 4), which has the
hybrid ``X25519MLKEM768`` group and ML-DSA certificates. Two policy modes (DESIGN.md,
"Transport"):

``pq-only``
    Only hybrid or pure ML-KEM groups (:data:`PQ_GROUPS`); a classical-only peer fails the
    handshake (the server answers with a ``handshake_failure`` alert).
``hybrid-preferred``
    The PQ groups first, classical ones (:data:`CLASSICAL_GROUPS`) after them in a separate
    preference tuple: a server picks a PQ group whenever the client supports one, even if
    that costs a HelloRetryRequest; a classical handshake still succeeds and is reported
    through the handshake hook so that it can be recorded and flagged.

The group list is set with ``SSL_CTX_set1_groups_list``, which pyOpenSSL does not wrap;
its bindings (cryptography's) export it under its OpenSSL 1.1 alias
``SSL_CTX_set1_curves_list``. This needs no ``OPENSSL_CONF`` file, so the policy is per
context (per listener), not per process.
"""

from __future__ import annotations

import logging
import os
import socket
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.bindings.openssl.binding import Binding
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, mldsa, rsa
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.cryptography import (
    verify_certificate_hostname,
    verify_certificate_ip_address,
)

__all__ = [
    "CLASSICAL_GROUPS",
    "PQ_GROUPS",
    "HandshakeFailureHook",
    "HandshakeHook",
    "Mode",
    "TLSConfigError",
    "certificate_algorithm",
    "client_connection",
    "client_context",
    "groups_for",
    "is_pq_group",
    "negotiated_group",
    "peer_certificate_algorithm",
    "server_context",
]

Mode = Literal["pq-only", "hybrid-preferred"]
MODES: Final = ("pq-only", "hybrid-preferred")

# Hybrids first (they stay secure if either half holds), then pure ML-KEM.
PQ_GROUPS: Final = (
    "X25519MLKEM768",
    "SecP256r1MLKEM768",
    "SecP384r1MLKEM1024",
    "MLKEM1024",
    "MLKEM768",
)
CLASSICAL_GROUPS: Final = ("X25519", "secp256r1", "secp384r1")
_PQ_NAMES: Final = frozenset(g.lower() for g in (*PQ_GROUPS, "MLKEM512"))
# OpenSSL reports the classical curves in lower case; the registry spells them this way.
_GROUP_NAMES: Final = {"x25519": "X25519", "x448": "X448"}
# A pq-only client also insists on an ML-DSA server signature.
_PQ_SIGALGS: Final = b"mldsa65:mldsa87:mldsa44"

HandshakeHook = Callable[[str, str], None]
"""Called as ``hook(group, cipher)`` once per completed server handshake."""
HandshakeFailureHook = Callable[[str], None]
"""Called as ``hook(alert)`` when the server aborts a handshake with a fatal alert."""

_log = logging.getLogger(__name__)
_lib: Any = Binding.lib

# RFC 8446 section 6 alert descriptions that a failing handshake can send.
_ALERTS: Final = {
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
_FATAL = 2


class TLSConfigError(ValueError):
    """A TLS context could not be configured as asked (unknown group, bad key file...)."""


def groups_for(mode: Mode, *, server: bool) -> str:
    """The OpenSSL group-list string for ``mode`` (see the module docstring)."""
    if mode not in MODES:
        raise TLSConfigError(f"unknown TLS mode {mode!r}; expected one of {', '.join(MODES)}")
    pq = ":".join(PQ_GROUPS)
    if mode == "pq-only":
        return pq
    classical = ":".join(CLASSICAL_GROUPS)
    if server:
        return f"{pq}/{classical}"
    # '*' = send a key share: the hybrid and X25519 ones, as OpenSSL's default does, so a
    # classical-only server needs no HelloRetryRequest.
    return f"*{pq}/*{classical}"


def _set_groups(ctx: SSL.Context, groups: str) -> None:
    # pyOpenSSL has no wrapper for SSL_CTX_set1_groups_list; the pointer is its only handle.
    if _lib.SSL_CTX_set1_curves_list(ctx._context, groups.encode("ascii")) != 1:
        version = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
        raise TLSConfigError(
            f"{version} refused the group list {groups!r} (ML-KEM groups need OpenSSL 3.5+)"
        )


def _base_context() -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_3_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    return ctx


def _group_list(mode: Mode, groups: Sequence[str] | None, *, server: bool) -> str:
    return groups_for(mode, server=server) if groups is None else ":".join(groups)


def server_context(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    mode: Mode = "pq-only",
    groups: Sequence[str] | None = None,
    on_handshake: HandshakeHook | None = None,
    on_handshake_failure: HandshakeFailureHook | None = None,
) -> SSL.Context:
    """A TLS 1.3 server context for a PEM certificate (chain) and PKCS#8 key.

    ``groups`` overrides the mode's group list (tests and benchmarks). The hooks run on the
    thread that drives the connection; exceptions they raise are logged and swallowed.
    """
    ctx = _base_context()
    try:
        ctx.use_certificate_chain_file(os.fspath(cert_file))
        ctx.use_privatekey_file(os.fspath(key_file))
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise TLSConfigError(f"cannot use {cert_file} / {key_file}: {exc}") from None
    _set_groups(ctx, _group_list(mode, groups, server=True))
    if on_handshake is not None or on_handshake_failure is not None:
        ctx.set_info_callback(_info_callback(on_handshake, on_handshake_failure))
    return ctx


def _info_callback(
    on_handshake: HandshakeHook | None, on_failure: HandshakeFailureHook | None
) -> Callable[[SSL.Connection, int, int], None]:
    # OpenSSL may signal HANDSHAKE_DONE more than once for a connection (TLS 1.3 tickets);
    # count each connection once.
    reported: weakref.WeakSet[SSL.Connection] = weakref.WeakSet()

    def callback(conn: SSL.Connection, where: int, ret: int) -> None:
        try:
            if where & SSL.SSL_CB_HANDSHAKE_DONE:
                if on_handshake is not None and conn not in reported:
                    reported.add(conn)
                    on_handshake(negotiated_group(conn) or "unknown", conn.get_cipher_name() or "")
            elif (
                where & _lib.SSL_CB_WRITE_ALERT
                and on_failure is not None
                and (ret >> 8) == _FATAL
                and conn not in reported
            ):
                reported.add(conn)
                on_failure(_ALERTS.get(ret & 0xFF, f"alert_{ret & 0xFF}"))
        except Exception:
            _log.exception("TLS handshake hook failed")

    return callback


def client_context(
    ca_file: str | os.PathLike[str] | None,
    *,
    mode: Mode = "pq-only",
    groups: Sequence[str] | None = None,
) -> SSL.Context:
    """A TLS 1.3 client context that verifies the server's chain against ``ca_file``.

    ``ca_file=None`` uses the system trust store (for servers behind a public CA). Host
    names are checked per connection: use :func:`client_connection`.
    """
    ctx = _base_context()
    if ca_file is None:
        ctx.set_default_verify_paths()
    else:
        try:
            ctx.load_verify_locations(os.fspath(ca_file))
        except SSL.Error as exc:
            raise TLSConfigError(f"cannot load CA certificates from {ca_file}: {exc}") from None
    ctx.set_verify(SSL.VERIFY_PEER)
    _set_groups(ctx, _group_list(mode, groups, server=False))
    if (
        mode == "pq-only"
        and groups is None
        and _lib.SSL_CTX_set1_sigalgs_list(ctx._context, _PQ_SIGALGS) != 1
    ):
        raise TLSConfigError("OpenSSL refused the ML-DSA signature algorithms")
    return ctx


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def client_connection(
    ctx: SSL.Context, sock: socket.socket | None, hostname: str
) -> SSL.Connection:
    """A client connection on ``sock`` (None: memory BIOs) that sends SNI and checks, during
    the handshake, that the server certificate is for ``hostname`` (DNS name or IP address,
    RFC 6125). The caller runs the handshake."""
    host = hostname.strip("[]")
    is_ip = _is_ip(host)

    def verify(_conn: SSL.Connection, cert: Any, _errno: int, depth: int, ok: int) -> bool:
        if not ok:
            return False
        if depth != 0:
            return True
        try:
            leaf = cert.to_cryptography()
            if is_ip:
                verify_certificate_ip_address(leaf, host)
            else:
                verify_certificate_hostname(leaf, host)
        except (VerificationError, ValueError):
            return False
        return True

    conn = SSL.Connection(ctx, sock)
    conn.set_verify(SSL.VERIFY_PEER, verify)
    if not is_ip:
        conn.set_tlsext_host_name(host.encode("idna"))
    conn.set_connect_state()
    return conn


def negotiated_group(conn: SSL.Connection) -> str | None:
    """The key-exchange group of an established connection (``X25519MLKEM768``...)."""
    name = conn.get_group_name()
    if name is None:
        return None
    return _GROUP_NAMES.get(name.lower(), name)


def is_pq_group(group: str | None) -> bool:
    """Whether ``group`` is a hybrid or pure ML-KEM group."""
    return group is not None and group.lower() in _PQ_NAMES


def certificate_algorithm(certificate: x509.Certificate) -> str:
    """The signature algorithm a certificate's key makes: ``ML-DSA-65``, ``Ed25519``..."""
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return certificate.public_key_algorithm_oid.dotted_string
    for cls, name in (
        (mldsa.MLDSA44PublicKey, "ML-DSA-44"),
        (mldsa.MLDSA65PublicKey, "ML-DSA-65"),
        (mldsa.MLDSA87PublicKey, "ML-DSA-87"),
        (ed25519.Ed25519PublicKey, "Ed25519"),
        (ed448.Ed448PublicKey, "Ed448"),
    ):
        if isinstance(key, cls):
            return name
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ECDSA-{key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA-{key.key_size}"
    return certificate.public_key_algorithm_oid.dotted_string


def peer_certificate_algorithm(conn: SSL.Connection) -> str | None:
    """The algorithm of the peer's certificate key (what signed the handshake), or None."""
    cert = conn.get_peer_certificate(as_cryptography=True)
    return None if cert is None else certificate_algorithm(cert)
