"""Event sinks against real receivers: a webhook over PQ TLS on loopback that authenticates
every delivery (HMAC and ML-DSA), fails on purpose, and catches forgeries and replays; the
queue bound; checkpoints of a real key service reaching a SIEM that verifies them.

The receiver classes here are also used by the syslog and incident tests.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from qrc.crypto.base import VerifyingKey
from qrc.crypto.errors import InvalidSignature
from qrc.crypto.keyfile import load_public_pem
from qrc.crypto.selftest import generate_private_key
from qrc.keys.audit.note import verify_note
from qrc.keys.audit.witness import MemoryWitness
from qrc.keys.observers import SecurityNotice
from qrc.keys.service import KeyService
from qrc.monitor.sinks import (
    KIND_CHECKPOINT,
    KIND_DROPPED,
    Backoff,
    SinkDispatcher,
    SinkError,
    SinkEvent,
    WitnessTee,
)
from qrc.monitor.sinks_webhook import WEBHOOK_CONTEXT, WebhookSink, parse_secret, signed_content
from qrc.transit import tls
from qrc.transit.ca import TLSFiles, ensure_server_tls

SECRET = b"0123456789abcdef0123456789abcdef"
FAST = Backoff(0.01, 0.05)
TOLERANCE = 300


# --------------------------------------------------------------------------- a SIEM's webhook
@dataclass
class Delivery:
    """One POST as received: headers (lower-case) and body."""

    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, object]:
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


class Rejected(Exception):
    """The receiver's verification refused a delivery."""


@dataclass
class Verifier:
    """What a receiver does with each delivery: check a signature it trusts, the
    timestamp's age, and that the delivery id is new."""

    secret: bytes | None = None
    public: VerifyingKey | None = None
    seen: set[str] = field(default_factory=set)

    def accept(self, delivery: Delivery, now: float | None = None) -> dict[str, object]:
        h = delivery.headers
        delivery_id, timestamp = h["webhook-id"], int(h["webhook-timestamp"])
        if abs((now if now is not None else time.time()) - timestamp) > TOLERANCE:
            raise Rejected("timestamp outside the tolerance (a replay?)")
        content = signed_content(delivery_id, timestamp, delivery.body)
        ok = False
        for item in h["webhook-signature"].split(" "):
            version, _, value = item.partition(",")
            signature = base64.b64decode(value)
            if version == "v1" and self.secret is not None:
                expected = hmac.new(self.secret, content, hashlib.sha256).digest()
                ok = ok or hmac.compare_digest(expected, signature)
            elif version == "mldsa1" and self.public is not None:
                try:
                    self.public.verify(signature, content, WEBHOOK_CONTEXT)
                    ok = True
                except InvalidSignature:
                    pass
        if not ok:
            raise Rejected("no valid signature")
        if delivery_id in self.seen:
            raise Rejected("duplicate delivery id")
        self.seen.add(delivery_id)
        return delivery.event


class WebhookReceiver:
    """An HTTPS (PQ TLS) or plain HTTP receiver on loopback, keep-alive, one thread per
    connection. The first ``fail_first`` requests are answered ``fail_status``."""

    def __init__(
        self, tls_files: TLSFiles | None = None, *, fail_first: int = 0, fail_status: int = 503
    ) -> None:
        self.context = (
            tls.server_context(tls_files.cert, tls_files.key, mode="hybrid-preferred")
            if tls_files is not None
            else None
        )
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[Delivery] = []  # every request, failed ones included
        self.accepted: list[Delivery] = []  # those answered 2xx
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self.context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}/hooks/qrc"

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._connection, args=(raw,), daemon=True).start()

    def _connection(self, raw: socket.socket) -> None:
        conn: socket.socket | SSL.Connection = raw
        try:
            if self.context is not None:
                conn = SSL.Connection(self.context, raw)
                conn.set_accept_state()
                conn.do_handshake()
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                body, buffer = buffer[:length], buffer[length:]
                delivery = Delivery(headers, body)
                with self.lock:
                    self.requests.append(delivery)
                    failing = len(self.requests) <= self.fail_first
                    if not failing:
                        self.accepted.append(delivery)
                status = self.fail_status if failing else 204
                conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        except (OSError, SSL.Error):
            return
        finally:
            raw.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return ensure_server_tls(tmp_path_factory.mktemp("webhook-pki"), ["127.0.0.1", "localhost"])


@pytest.fixture
def receiver(tls_files: TLSFiles) -> Iterator[WebhookReceiver]:
    made = WebhookReceiver(tls_files)
    yield made
    made.close()


def notice(event_type: str = "key_compromise", severity: str = "high") -> SecurityNotice:
    return SecurityNotice(event_type, severity, "test", "key-1", "ML-KEM-768", {"n": 1})


def webhook(receiver: WebhookReceiver, tls_files: TLSFiles, **kwargs: object) -> WebhookSink:
    args: dict[str, object] = {"secret": SECRET, "ca_file": str(tls_files.ca)} | kwargs
    return WebhookSink(receiver.url, **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tests
def test_webhook_delivers_a_signed_event_over_pq_tls(
    receiver: WebhookReceiver, tls_files: TLSFiles
) -> None:
    signer = generate_private_key("ML-DSA-65")
    sink = webhook(receiver, tls_files, signer=signer, tls_mode="pq-only")
    dispatcher = SinkDispatcher([sink], node="node-a", backoff=FAST)
    dispatcher.security_event(notice())
    assert dispatcher.flush(30)
    dispatcher.stop()
    (delivery,) = receiver.accepted
    # Both signatures verify, each on its own.
    by_hmac = Verifier(secret=SECRET).accept(delivery)
    by_mldsa = Verifier(public=signer.public_key()).accept(delivery)
    assert by_hmac == by_mldsa
    assert by_hmac["kind"] == "security_event" and by_hmac["type"] == "key_compromise"
    assert by_hmac["node"] == "node-a" and by_hmac["id"] == delivery.headers["webhook-id"]
    data = by_hmac["data"]
    assert isinstance(data, dict) and data["key_id"] == "key-1"
    assert delivery.headers["content-type"] == "application/json"
    assert sink._client.negotiated_group == "X25519MLKEM768"


def test_forged_tampered_and_replayed_deliveries_are_detected(
    receiver: WebhookReceiver, tls_files: TLSFiles
) -> None:
    signer = generate_private_key("ML-DSA-65")
    dispatcher = SinkDispatcher([webhook(receiver, tls_files, signer=signer)], backoff=FAST)
    dispatcher.security_event(notice())
    assert dispatcher.flush(30)
    dispatcher.stop()
    (real,) = receiver.accepted
    verifier = Verifier(secret=SECRET)
    verifier.accept(real)
    with pytest.raises(Rejected, match="duplicate"):  # the same delivery again
        verifier.accept(real)
    # An attacker who changes a byte of the body, or signs with another secret or key.
    tampered = Delivery(real.headers, real.body.replace(b"key_compromise", b"key_comPromise"))
    for who in (Verifier(secret=SECRET), Verifier(public=signer.public_key())):
        with pytest.raises(Rejected, match="no valid signature"):
            who.accept(tampered)
    forger = WebhookSink("http://127.0.0.1:9/", secret=b"another secret of 32 bytes......")
    event = SinkEvent("security_event", "key_compromise", "high", {}, node="evil")
    body = event.to_json()
    forged = Delivery({k.lower(): v for k, v in forger.headers(event, body).items()}, body)
    with pytest.raises(Rejected, match="no valid signature"):
        Verifier(secret=SECRET).accept(forged)
    with pytest.raises(Rejected, match="no valid signature"):
        Verifier(public=signer.public_key()).accept(forged)
    # A captured delivery replayed to a receiver that forgot its ids: the timestamp gives it
    # away; and the timestamp cannot be refreshed without the secret.
    later = int(real.headers["webhook-timestamp"]) + TOLERANCE + 1
    with pytest.raises(Rejected, match="tolerance"):
        Verifier(secret=SECRET).accept(real, now=later)
    refreshed = Delivery(real.headers | {"webhook-timestamp": str(later)}, real.body)
    with pytest.raises(Rejected, match="no valid signature"):
        Verifier(secret=SECRET).accept(refreshed, now=later)


def test_a_failing_receiver_is_retried_with_one_delivery_id(tls_files: TLSFiles) -> None:
    receiver = WebhookReceiver(tls_files, fail_first=3)
    try:
        dispatcher = SinkDispatcher([webhook(receiver, tls_files)], backoff=FAST)
        dispatcher.security_event(notice())
        dispatcher.security_event(notice("authentication_failure", "low"))
        assert dispatcher.flush(30)
        (stats,) = dispatcher.stats()
        dispatcher.stop()
    finally:
        receiver.close()
    assert len(receiver.requests) == 5  # three refusals, then the two events
    first_id = receiver.requests[0].headers["webhook-id"]
    assert [r.headers["webhook-id"] for r in receiver.requests[:4]] == [first_id] * 4
    verifier = Verifier(secret=SECRET)
    types = [verifier.accept(d)["type"] for d in receiver.accepted]
    assert types == ["key_compromise", "authentication_failure"]  # in order, once each
    assert stats.retries == 3 and stats.delivered == 2 and not stats.dropped


def test_an_unreachable_receiver_keeps_events_until_it_comes_back(tls_files: TLSFiles) -> None:
    # A port with nothing listening: connection refused, retried, counted; nothing lost.
    placeholder = socket.create_server(("127.0.0.1", 0))
    port = placeholder.getsockname()[1]
    placeholder.close()
    sink = WebhookSink(
        f"https://127.0.0.1:{port}/", secret=SECRET, ca_file=str(tls_files.ca), timeout=5
    )
    dispatcher = SinkDispatcher([sink], backoff=FAST)
    for i in range(5):
        dispatcher.event("incident", "drill", "high", {"n": i})
    assert not dispatcher.flush(0.3)
    (stats,) = dispatcher.stats()
    assert stats.retries >= 1 and stats.delivered == 0 and stats.depth >= 4
    assert stats.last_error is not None and str(port) in stats.last_error
    # The receiver comes up on that port: everything arrives, in order, once.
    receiver = WebhookReceiver.__new__(WebhookReceiver)
    receiver.context = tls.server_context(tls_files.cert, tls_files.key, mode="hybrid-preferred")
    receiver.fail_first, receiver.fail_status = 0, 503
    receiver.requests, receiver.accepted, receiver.lock = [], [], threading.Lock()
    receiver.listener = socket.create_server(("127.0.0.1", port))
    receiver.port = port
    threading.Thread(target=receiver._serve, daemon=True).start()
    try:
        assert dispatcher.flush(30)
        dispatcher.stop()
    finally:
        receiver.close()
    verifier = Verifier(secret=SECRET)
    got = [verifier.accept(d)["data"] for d in receiver.accepted]
    assert got == [{"n": i} for i in range(5)]


class _Blocked:
    """A sink that holds every delivery until released (fills the queue behind it)."""

    name = "blocked"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.sent: list[SinkEvent] = []

    def send(self, event: SinkEvent) -> None:
        self.started.set()
        if not self.release.wait(30):
            raise SinkError("never released")
        self.sent.append(event)

    def close(self) -> None:
        pass


def test_a_full_queue_drops_the_least_severe_and_tells_the_receiver() -> None:
    sink = _Blocked()
    dispatcher = SinkDispatcher([sink], capacity=3, backoff=FAST)
    dispatcher.event("security_event", "first", "low", {})  # taken by the worker at once
    assert sink.started.wait(30)
    low = [dispatcher.event("security_event", f"low-{i}", "low", {}) for i in range(2)]
    high = dispatcher.event("security_event", "compromise", "high", {})
    # The queue (3) is full: a later low event pushes out the oldest low one, a checkpoint
    # the next low one, never the high one; an event less severe than all is dropped itself.
    dispatcher.event("security_event", "low-late", "low", {})
    checkpoint = dispatcher.event(KIND_CHECKPOINT, "audit_checkpoint", "low", {})
    trivia = dispatcher.event("security_event", "trivia", "info", {})
    (stats,) = dispatcher.stats()
    assert stats.dropped == {"queue_full": 3}
    sink.release.set()
    assert dispatcher.flush(30)
    dispatcher.stop()
    names = [e.type for e in sink.sent]
    assert names == ["first", "events_dropped", "compromise", "low-late", "audit_checkpoint"]
    gap = sink.sent[1]
    assert gap.kind == KIND_DROPPED and gap.data["count"] == 3
    dropped_ids = [d["id"] for d in gap.data["dropped"]]
    assert dropped_ids == [low[0].id, low[1].id, trivia.id]
    assert high.id in {e.id for e in sink.sent} and checkpoint.id in {e.id for e in sink.sent}


def test_a_refused_event_is_dropped_after_its_attempts_and_reported() -> None:
    class Refusing:
        name = "refusing"

        def __init__(self) -> None:
            self.calls: list[str] = []

        def send(self, event: SinkEvent) -> None:
            self.calls.append(event.type)
            if event.type == "bad":
                raise SinkError("400", permanent=True)

        def close(self) -> None:
            pass

    sink = Refusing()
    dispatcher = SinkDispatcher([sink], backoff=FAST, max_attempts=3)
    dispatcher.event("security_event", "bad", "high", {})
    dispatcher.event("security_event", "good", "high", {})
    assert dispatcher.flush(30)
    (stats,) = dispatcher.stats()
    dispatcher.stop()
    assert sink.calls[:3] == ["bad"] * 3
    assert sink.calls[3:] == ["events_dropped", "good"]
    assert stats.dropped == {"refused": 1} and stats.delivered == 2


def test_webhook_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="https"):
        WebhookSink("http://siem.example.com/hook", secret=SECRET)
    with pytest.raises(ValueError, match="secret"):
        WebhookSink("https://siem.example.com/hook")
    with pytest.raises(ValueError, match="16 bytes"):
        parse_secret("short")
    raw = b"x" * 32
    assert parse_secret("whsec_" + base64.b64encode(raw).decode()) == raw


def test_checkpoints_reach_the_siem_which_verifies_them(
    service: KeyService, receiver: WebhookReceiver, tls_files: TLSFiles
) -> None:
    witness = MemoryWitness()
    dispatcher = SinkDispatcher([webhook(receiver, tls_files)], backoff=FAST)
    service.audit.witness = WitnessTee(witness, dispatcher.checkpoint)
    service.keys.create_key(name="k", purpose="encryption", algorithm="ML-KEM-768", actor="t")
    first = service.audit.checkpoint(actor="t")
    service.keys.rotate("k", actor="t")
    second = service.audit.checkpoint(actor="t")
    assert dispatcher.flush(30)
    dispatcher.stop()
    notes = [Verifier(secret=SECRET).accept(d) for d in receiver.accepted]
    assert [n["kind"] for n in notes] == [KIND_CHECKPOINT, KIND_CHECKPOINT]
    # The SIEM verifies each note with the audit public key it pinned, and sees the chain
    # only grow: a later note with fewer events, or another head, would be a rollback.
    public = load_public_pem(service.audit.public_key_pem().encode())
    assert isinstance(public, VerifyingKey)
    seqs = []
    for note, made in zip(notes, (first, second), strict=True):
        data = note["data"]
        assert isinstance(data, dict)
        parsed = verify_note(str(data["note"]).encode(), [public])
        assert parsed.seq == made.seq == data["seq"] and parsed.head_hash == made.head_hash
        seqs.append(parsed.seq)
    assert seqs == sorted(seqs) and seqs[0] < seqs[1]
    # The witness file behind the tee still holds the latest note, as before.
    assert witness.latest() == str(notes[-1]["data"]["note"]).encode()  # type: ignore[index]


def test_sink_metrics_render(tmp_path: Path) -> None:
    from qrc.server.sinkjob import render_sink_metrics

    sink = _Blocked()
    sink.release.set()
    dispatcher = SinkDispatcher([sink], backoff=FAST)
    dispatcher.event("security_event", "x", "low", {})
    assert dispatcher.flush(30)
    dispatcher.stop()
    text = "\n".join(render_sink_metrics(dispatcher.stats()))
    assert 'qrc_sink_events_total{sink="blocked",outcome="delivered"} 1' in text
    assert 'qrc_sink_queue_depth{sink="blocked"} 0' in text


def test_a_server_with_sinks_configured_sends_what_its_service_records(
    service: KeyService, receiver: WebhookReceiver, tls_files: TLSFiles, tmp_path: Path
) -> None:
    from qrc.api.deps import AppState
    from qrc.server.config import Settings
    from qrc.server.sinkjob import start_sinks

    settings = Settings(
        data_dir=tmp_path,
        webhook_url=receiver.url,
        webhook_secret=SECRET.decode(),  # type: ignore[arg-type]
        webhook_ca_file=tls_files.ca,
        sink_retry_seconds=0.01,
    )
    state = AppState(service=service)
    (dispatcher,) = start_sinks(settings, service, state)
    try:
        service.keys.create_key(name="k", purpose="encryption", algorithm="ML-KEM-768", actor="t")
        service.keys.revoke("k", "key_compromise", actor="t")
        service.audit.checkpoint(actor="t")
        assert dispatcher.flush(30)
    finally:
        dispatcher.stop()
    verifier = Verifier(secret=SECRET)
    got = [verifier.accept(d) for d in receiver.accepted]
    assert [(e["kind"], e["type"]) for e in got] == [
        ("security_event", "key_compromise"),
        ("audit_checkpoint", "audit_checkpoint"),
    ]
    assert 'qrc_sink_events_total{sink="webhook",outcome="delivered"} 2' in state.metrics.render()


def test_sink_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    from qrc.server.config import ConfigurationError, Settings
    from qrc.server.sinkjob import build_sinks

    assert build_sinks(Settings(data_dir=tmp_path)) == []
    with pytest.raises(ConfigurationError, match="QRC_WEBHOOK_SECRET"):
        build_sinks(Settings(data_dir=tmp_path, webhook_url="https://siem.example/h"))
    with pytest.raises(ConfigurationError, match="QRC_SYSLOG_ADDRESS"):
        build_sinks(Settings(data_dir=tmp_path, syslog_address="siem.example:514"))
    rsa_like = tmp_path / "ed.pem"
    from qrc.crypto.keyfile import private_key_to_pem

    rsa_like.write_bytes(private_key_to_pem(generate_private_key("Ed25519")))
    with pytest.raises(ConfigurationError, match="ML-DSA"):
        build_sinks(
            Settings(
                data_dir=tmp_path,
                webhook_url="https://siem.example/h",
                webhook_signing_key=rsa_like,
            )
        )


def test_a_hung_receiver_never_holds_up_a_key_operation(service: KeyService) -> None:
    sink = _Blocked()  # takes the first event and never answers until released
    dispatcher = SinkDispatcher([sink], capacity=2, backoff=FAST, flush_seconds=0)
    service.observers.add(dispatcher)
    try:
        service.keys.create_key(name="a", purpose="encryption", actor="t")
        service.keys.create_key(name="b", purpose="encryption", actor="t")
        service.keys.revoke("a", "key_compromise", actor="t")
        assert sink.started.wait(30)
        # Further security events still return at once, queue, and overflow into drops.
        for i in range(3):
            service.keys.create_key(name=f"c{i}", purpose="encryption", actor="t")
            service.keys.revoke(f"c{i}", "key_compromise", actor="t")
        (stats,) = dispatcher.stats()
        assert stats.queued == 4 and stats.depth == 2 and stats.dropped == {"queue_full": 1}
    finally:
        sink.release.set()
        dispatcher.stop()


@settings(max_examples=40, deadline=None)
@given(
    severities=st.lists(
        st.sampled_from(["low", "medium", "high", "critical", "info"]), max_size=30
    ),
    capacity=st.integers(1, 8),
)
def test_every_event_is_delivered_once_or_reported_dropped(
    severities: list[str], capacity: int
) -> None:
    sink = _Blocked()
    dispatcher = SinkDispatcher([sink], capacity=capacity, backoff=FAST)
    head = dispatcher.event("security_event", "head", "low", {})
    assert sink.started.wait(30)  # the worker holds the head: the rest queue or drop
    offered = [head.id] + [dispatcher.event("security_event", s, s, {}).id for s in severities]
    sink.release.set()
    assert dispatcher.flush(30)
    dispatcher.stop()
    delivered = [e.id for e in sink.sent if e.kind != KIND_DROPPED]
    reported = [d["id"] for e in sink.sent if e.kind == KIND_DROPPED for d in e.data["dropped"]]
    assert len(delivered) == len(set(delivered))  # never twice
    assert sorted(delivered + reported) == sorted(offered)  # never silently lost
    assert len(delivered) <= capacity + 1
