"""The syslog sink against real receivers on loopback: UDP datagrams, TCP and TLS with
octet-counting framing; every message parsed as RFC 5424 with its structured data."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from qrc.monitor.sinks import Backoff, SinkDispatcher, SinkEvent
from qrc.monitor.sinks_syslog import SD_ID, SyslogSink, format_message, parse_address
from qrc.transit import tls
from qrc.transit.ca import TLSFiles, ensure_server_tls

FAST = Backoff(0.01, 0.05)

# RFC 5424 section 6: HEADER SP STRUCTURED-DATA [SP MSG]
SYSLOG = re.compile(
    rb"<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (?P<host>[!-~]{1,255}) "
    rb"(?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
    rb"\[(?P<sdid>[^ =\]\"]+)(?P<params>(?: [^ =\]\"]+=\"(?:[^\"\\\]]|\\[\"\\\]])*\")*)\]"
    rb" \xef\xbb\xbf(?P<msg>.*)\Z",
    re.DOTALL,
)
PARAM = re.compile(rb' ([^ =\]"]+)="((?:[^"\\\]]|\\["\\\]])*)"')


def parse_syslog(message: bytes) -> dict[str, object]:
    match = SYSLOG.match(message)
    assert match is not None, message[:300]
    params = {
        k.decode(): re.sub(rb"\\([\"\\\]])", rb"\1", v).decode()
        for k, v in PARAM.findall(match["params"])
    }
    return {
        "pri": int(match["pri"]),
        "msgid": match["msgid"].decode(),
        "app": match["app"].decode(),
        "sdid": match["sdid"].decode(),
        "params": params,
        "event": json.loads(match["msg"]),
    }


class StreamReceiver:
    """A TCP (or TLS) syslog receiver that splits octet-counted frames (RFC 6587 3.4.1)."""

    def __init__(self, context: SSL.Context | None = None) -> None:
        self.context = context
        self.messages: list[bytes] = []
        self.connections = 0
        self.cond = threading.Condition()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.live: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            with self.cond:
                self.connections += 1
                self.live.append(raw)
            threading.Thread(target=self._read, args=(raw,), daemon=True).start()

    def _read(self, raw: socket.socket) -> None:
        conn: socket.socket | SSL.Connection = raw
        buffer = b""
        try:
            if self.context is not None:
                conn = SSL.Connection(self.context, raw)
                conn.set_accept_state()
                conn.do_handshake()
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b" " in buffer:
                    length, _, rest = buffer.partition(b" ")
                    assert length.isdigit() and not length.startswith(b"0"), buffer[:40]
                    if len(rest) < int(length):
                        break
                    with self.cond:
                        self.messages.append(rest[: int(length)])
                        self.cond.notify_all()
                    buffer = rest[int(length) :]
        except (OSError, SSL.Error):
            return

    def wait_for(self, count: int) -> list[bytes]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.messages) >= count, 30), self.messages
            return list(self.messages)

    def drop_connections(self) -> None:
        """The receiver restarts: every open connection is closed."""
        with self.cond:
            for raw in self.live:
                raw.shutdown(socket.SHUT_RDWR)
                raw.close()
            self.live.clear()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def udp() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(30)
    yield sock
    sock.close()


def checkpoint_event() -> SinkEvent:
    note = "qrc.audit/k1\n7\n" + "A" * 43 + "=\n\n\u2014 qrc.audit/k1 c2ln\n"
    data = {"origin": "qrc.audit/k1", "seq": 7, "head_hash": "A" * 43 + "=", "note": note}
    return SinkEvent("audit_checkpoint", "audit_checkpoint", "low", data, node="node-a")


def test_udp_messages_are_rfc5424_with_structured_data(udp: socket.socket) -> None:
    port = udp.getsockname()[1]
    dispatcher = SinkDispatcher([SyslogSink(f"udp://127.0.0.1:{port}", facility=4)])
    details = {"detail": 'quote " backslash \\ bracket ] done'}
    sent = dispatcher.event(
        "security_event", "key_compromise", "high", {"key_id": "k-1", "details": details}
    )
    dispatcher.publish(checkpoint_event())
    assert dispatcher.flush(30)
    dispatcher.stop()
    first = parse_syslog(udp.recv(65536))
    assert first["pri"] == 4 * 8 + 3 and first["msgid"] == "SECEVT" and first["app"] == "qrc"
    assert first["sdid"] == SD_ID
    params = first["params"]
    assert isinstance(params, dict)
    assert params["id"] == sent.id and params["type"] == "key_compromise"
    assert params["key"] == "k-1" and params["severity"] == "high"
    event = first["event"]
    assert isinstance(event, dict) and event["data"]["details"] == details
    second = parse_syslog(udp.recv(65536))
    assert second["msgid"] == "CHECKPOINT" and second["pri"] == 4 * 8 + 6
    assert second["params"] == second["params"] | {"origin": "qrc.audit/k1", "seq": "7"}


def test_escaping_in_structured_data() -> None:
    event = SinkEvent("incident", "key_compromise", "critical", {"subject": 'a"b]c\\d'}, "n")
    parsed = parse_syslog(format_message(event))
    assert parsed["params"]["subject"] == 'a"b]c\\d'  # type: ignore[index]
    assert parsed["pri"] == 10 * 8 + 1  # an incident is an alert


def test_tcp_octet_counting_and_reconnection_after_a_receiver_restart() -> None:
    receiver = StreamReceiver()
    try:
        sink = SyslogSink(f"tcp://127.0.0.1:{receiver.port}")
        dispatcher = SinkDispatcher([sink], backoff=FAST)
        dispatcher.event("security_event", "one", "medium", {"text": "line\nbreak"})
        dispatcher.event("security_event", "two", "low", {})
        assert dispatcher.flush(30)
        assert [parse_syslog(m)["params"]["type"] for m in receiver.wait_for(2)] == [  # type: ignore[index]
            "one",
            "two",
        ]
        receiver.drop_connections()
        dispatcher.event("security_event", "three", "high", {})
        assert dispatcher.flush(30)
        dispatcher.stop()
        messages = receiver.wait_for(3)
    finally:
        receiver.close()
    assert parse_syslog(messages[2])["params"]["type"] == "three"  # type: ignore[index]
    assert receiver.connections == 2


def test_tls_syslog(tmp_path_factory: pytest.TempPathFactory) -> None:
    files: TLSFiles = ensure_server_tls(tmp_path_factory.mktemp("syslog-pki"), ["127.0.0.1"])
    receiver = StreamReceiver(tls.server_context(files.cert, files.key, mode="pq-only"))
    try:
        sink = SyslogSink(
            f"tls://127.0.0.1:{receiver.port}", ca_file=str(files.ca), tls_mode="pq-only"
        )
        dispatcher = SinkDispatcher([sink], backoff=FAST)
        dispatcher.publish(checkpoint_event())
        assert dispatcher.flush(30)
        dispatcher.stop()
        (message,) = receiver.wait_for(1)
    finally:
        receiver.close()
    parsed = parse_syslog(message)
    assert parsed["msgid"] == "CHECKPOINT"
    assert parsed["event"]["data"]["note"].startswith("qrc.audit/k1\n7\n")  # type: ignore[index]


def test_a_receiver_with_another_ca_is_refused_and_retried(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    ours = ensure_server_tls(tmp_path_factory.mktemp("ours"), ["127.0.0.1"])
    theirs = ensure_server_tls(tmp_path_factory.mktemp("theirs"), ["127.0.0.1"])
    receiver = StreamReceiver(tls.server_context(theirs.cert, theirs.key))
    try:
        sink = SyslogSink(f"tls://127.0.0.1:{receiver.port}", ca_file=str(ours.ca))
        dispatcher = SinkDispatcher([sink], backoff=FAST, flush_seconds=0.1)
        dispatcher.event("security_event", "x", "high", {})
        assert not dispatcher.flush(0.3)
        dispatcher.stop()
        (stats,) = dispatcher.stats()
    finally:
        receiver.close()
    assert stats.delivered == 0 and stats.retries >= 1
    assert receiver.messages == []
    assert stats.dropped == {"shutdown": 1}  # stopping reports it lost, never silently


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("udp://siem.example:514", "udp://siem.example:514"),
        ("tcp://10.0.0.1", "tcp://10.0.0.1:601"),
        ("TLS://[::1]:6514", "tls://[::1]:6514"),
    ],
)
def test_addresses(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", ["siem:514", "http://siem:514", "udp://:514", "tcp://h:99999"])
def test_bad_addresses_say_what_to_write(text: str) -> None:
    with pytest.raises(ValueError, match=r"udp://host:514"):
        parse_address(text)


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(subject=_TEXT, key=_TEXT, node=_TEXT, details=st.dictionaries(_TEXT, _TEXT, max_size=3))
def test_any_event_makes_one_parseable_line(
    subject: str, key: str, node: str, details: dict[str, str]
) -> None:
    # Whatever an attacker puts in a detail, a key name or a subject, the message stays one
    # line (no forged second record), its structured data parses back to the same values,
    # and the JSON message is the event.
    event = SinkEvent(
        "incident", "key_compromise", "critical",
        {"subject": subject, "key_id": key, "details": details}, node=node,
    )  # fmt: skip
    message = format_message(event)
    assert b"\n" not in message and b"\r" not in message and b"\x00" not in message
    parsed = parse_syslog(message)
    params = parsed["params"]
    assert isinstance(params, dict)
    for name, value in (("subject", subject), ("key", key), ("node", node)):
        # Control characters travel as \uXXXX (docs/event-sinks.md).
        shown = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", lambda m: f"\\u{ord(m[0]):04x}", value)
        assert params[name] == shown
    assert parsed["event"] == json.loads(event.to_json())
