"""Fetching the feed over real HTTPS (a local server with a test CA), and the server's feed job."""

from __future__ import annotations

import datetime as dt
import functools
import http.server
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from qrc.api.deps import AppState
from qrc.crypto.base import SigningKey
from qrc.crypto.keyfile import public_key_to_pem
from qrc.crypto.registry import Status
from qrc.keys.service import KeyService
from qrc.monitor.feed import FEED_REFUSED, ThreatFeed, feed_for
from qrc.monitor.feed_fetch import FeedUnavailable, fetch_document
from qrc.monitor.feed_format import Publisher
from qrc.monitor.landscape import monitor_quantum_threat_landscape
from qrc.server.config import ConfigurationError, Settings
from qrc.server.feedjob import open_feed, start_feed
from tests.monitor.test_feed import (  # noqa: F401 (fixtures)
    custody,
    events,
    feed_service,
    publisher_key,
    sign,
)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


Key = ec.EllipticCurvePrivateKey


def _certificate(
    subject: str, key: Key, issuer: str, issuer_key: Key, *, ca: bool
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class FeedServer:
    """A real HTTPS server (Python's http.server over ssl) serving a directory, in a thread."""

    def __init__(self, root: Path, where: Path) -> None:
        ca_key, leaf_key = (
            ec.generate_private_key(ec.SECP256R1()),
            ec.generate_private_key(ec.SECP256R1()),
        )
        ca = _certificate("feed test CA", ca_key, "feed test CA", ca_key, ca=True)
        leaf = _certificate("localhost", leaf_key, "feed test CA", ca_key, ca=False)
        self.ca_file = where / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        chain = where / "server.pem"
        chain.write_bytes(
            leaf.public_bytes(serialization.Encoding.PEM)
            + leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        )  # fmt: skip
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        self.context = context
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FeedServer, Path]]:
    root = tmp_path / "www"
    root.mkdir()
    server = FeedServer(root, tmp_path)
    yield server, root
    server.close()


def test_refresh_over_https_with_a_private_ca(
    feed_service: KeyService,  # noqa: F811
    publisher_key: SigningKey,  # noqa: F811
    sign: Callable[..., bytes],  # noqa: F811
    served: tuple[FeedServer, Path],
) -> None:
    server, root = served
    (root / "feed.json").write_bytes(sign(4))
    publisher = Publisher.of(publisher_key.public_key())
    url = server.url + "/feed.json"
    feed = ThreatFeed(feed_service, publisher, source=url, ca_file=server.ca_file)
    landscape = monitor_quantum_threat_landscape(feed_service, feed)
    assert landscape.errors == [], landscape.errors
    assert {c["algorithm"] for c in landscape.changes} == {"ML-KEM-512", "HQC-128"}
    assert landscape.feed is not None and landscape.feed["sequence"] == 4
    # The same feed again: nothing to do, nothing refused.
    again = monitor_quantum_threat_landscape(feed_service, feed)
    assert again.changes == [] and again.errors == [] and events(feed_service, FEED_REFUSED) == []

    # The server falls back to an older feed (a rollback): refused and recorded, once.
    (root / "feed.json").write_bytes(sign(3))
    before = feed_service.current_policy()
    for _ in range(2):
        rolled = monitor_quantum_threat_landscape(feed_service, feed)
        assert rolled.errors and "rollback" in rolled.errors[0]
    assert len(events(feed_service, FEED_REFUSED)) == 1
    assert feed_service.current_policy() == before


def test_an_untrusted_or_failing_server_changes_nothing(
    feed_service: KeyService,  # noqa: F811
    publisher_key: SigningKey,  # noqa: F811
    sign: Callable[..., bytes],  # noqa: F811
    served: tuple[FeedServer, Path],
) -> None:
    server, root = served
    (root / "feed.json").write_bytes(sign(4))
    publisher = Publisher.of(publisher_key.public_key())
    # Not the private CA: the system store does not know it.
    untrusted = ThreatFeed(feed_service, publisher, source=server.url + "/feed.json")
    landscape = monitor_quantum_threat_landscape(feed_service, untrusted)
    assert landscape.errors and "could not be fetched" in landscape.errors[0]
    assert landscape.changes == [] and feed_service.policy.status("HQC-128") is Status.EXPERIMENTAL
    with pytest.raises(FeedUnavailable, match="HTTP 404"):
        fetch_document(server.url + "/missing.json", ca_file=server.ca_file)
    with pytest.raises(FeedUnavailable, match="https"):
        fetch_document("http://127.0.0.1:1/feed.json")
    with pytest.raises(FeedUnavailable, match="printable"):
        fetch_document(server.url + "/feed.json HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /")
    assert feed_service.current_policy()["algorithm_status"] == {}


def test_the_server_job_attaches_the_feed_and_applies_it(
    feed_service: KeyService,  # noqa: F811
    publisher_key: SigningKey,  # noqa: F811
    sign: Callable[..., bytes],  # noqa: F811
    served: tuple[FeedServer, Path],
    tmp_path: Path,
) -> None:
    server, root = served
    (root / "feed.json").write_bytes(sign(6))
    key_file = tmp_path / "publisher.pub"
    key_file.write_bytes(public_key_to_pem(publisher_key.public_key()))
    settings = Settings(
        data_dir=tmp_path,
        feed_publisher_key=key_file,
        feed_url=server.url + "/feed.json",
        feed_ca_file=server.ca_file,
        feed_interval_seconds=3600,
    )
    (job,) = start_feed(settings, feed_service, AppState(feed_service))
    try:
        assert feed_for(feed_service) is job.feed
        deadline = time.monotonic() + 120  # a bound on a hung pass, not a timing assertion
        while job.passes == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert job.passes >= 1
        assert feed_service.current_policy()["algorithm_status"]["HQC-128"] == "disallowed"
    finally:
        job.stop()
    assert start_feed(Settings(data_dir=tmp_path), feed_service, AppState(feed_service)) == []
    with pytest.raises(ConfigurationError, match="QRC_FEED_PUBLISHER_KEY"):
        open_feed(Settings(data_dir=tmp_path, feed_url="https://x/f.json"), feed_service)
    plain = Settings(data_dir=tmp_path, feed_url="http://x/f.json", feed_publisher_key=key_file)
    with pytest.raises(ConfigurationError, match="QRC_FEED_URL"):
        open_feed(plain, feed_service)
    (tmp_path / "ed.pub").write_bytes(
        b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    )
    with pytest.raises(ConfigurationError, match="QRC_FEED_PUBLISHER_KEY"):
        open_feed(Settings(data_dir=tmp_path, feed_publisher_key=tmp_path / "ed.pub"), feed_service)


def _raw_server(context: ssl.SSLContext, answer: bytes, hold: threading.Event) -> str:
    """A TLS server that answers one request with ``answer`` as given, then waits for ``hold``."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, context.wrap_socket(listener.accept()[0], server_side=True) as conn:
            conn.recv(65536)
            conn.sendall(answer)
            hold.wait(30)

    threading.Thread(target=serve, daemon=True).start()
    return f"https://127.0.0.1:{listener.getsockname()[1]}/feed.json"


def test_a_hostile_feed_host_is_bounded(
    sign: Callable[..., bytes],  # noqa: F811
    served: tuple[FeedServer, Path],
) -> None:
    """The feed's host is not trusted: too much, too little or too slow is refused."""
    server, root = served
    (root / "huge.json").write_bytes(b" " * (3 << 20))
    with pytest.raises(FeedUnavailable, match="larger than"):
        fetch_document(server.url + "/huge.json", ca_file=server.ca_file)
    document = sign(1)
    hold = threading.Event()
    try:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(document) + 10)
        cut = _raw_server(server.context, head + document, hold)
        hold.set()  # the server closes right after its answer: 10 bytes short
        with pytest.raises(FeedUnavailable, match="cut short"):
            fetch_document(cut, ca_file=server.ca_file)
        stalled = threading.Event()
        slow = _raw_server(server.context, head + document[:100], stalled)
        with pytest.raises(FeedUnavailable, match=r"stopped answering|within"):
            fetch_document(slow, ca_file=server.ca_file, timeout=0.5)
        stalled.set()
        whole = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
        chunked = _raw_server(server.context, whole % (len(document), document), hold)
        assert fetch_document(chunked, ca_file=server.ca_file) == document
    finally:
        hold.set()
