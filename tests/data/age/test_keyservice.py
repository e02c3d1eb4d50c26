"""The qrc-key recipient: library mode (in-process key service) and, through the plugin,
the stock ``age`` binary against a real ``qrc`` API server over PQ TLS."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from qrc.crypto.errors import DecryptionError
from qrc.data.age import NoIdentityMatch, decrypt_bytes, encrypt_bytes
from qrc.data.age.header import read_header
from qrc.data.age.keyservice import (
    ServiceIdentity,
    ServiceRefused,
    library_opener,
    recipient_from_service,
)
from qrc.data.age.plugin_keys import (
    ServiceLocator,
    decode_identity,
    decode_recipient,
    encode_identity,
    encode_recipient,
)
from qrc.keys.custody.keyring import Keyring
from qrc.keys.custody.local import LocalCustody
from qrc.keys.service import KeyService
from qrc.keys.store.db import Database
from tests.data.age.conftest import AGE, needs_age, ok, one_line_failure, qrc, run
from tests.keys.conftest import FAST_ARGON2


@pytest.fixture
def service(tmp_path: Path) -> Iterator[KeyService]:
    db = Database(f"sqlite:///{tmp_path / 'qrc.db'}")
    db.upgrade()
    custody = LocalCustody.create(tmp_path / "kek.sealed", "test passphrase", params=FAST_ARGON2)
    svc = KeyService(db, Keyring(custody), min_destruction_delay=timedelta(0))
    yield svc
    svc.close()


def _audit(service: KeyService) -> list[dict[str, object]]:
    out = io.StringIO()
    service.audit.export(out)
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_library_mode_binds_key_version_and_context(service: KeyService) -> None:
    info = service.keys.create_key(name="backups", purpose="encryption", actor="ops")
    recipient = recipient_from_service(service, "backups", context="tenant=7")
    assert "postquantum" in recipient.labels
    sealed = encrypt_bytes(b"db dump" * 10_000, [recipient])
    (stanza,) = read_header(io.BufferedReader(io.BytesIO(sealed))).stanzas
    assert (stanza.type, stanza.args) == ("qrc-key", (info.id, "1"))
    opener = library_opener(service, "restore-job")
    assert (
        decrypt_bytes(sealed, [ServiceIdentity(opener, context="tenant=7")]) == b"db dump" * 10_000
    )
    decrypts = [e for e in _audit(service) if "key.decrypt" in json.dumps(e)]
    assert decrypts and "restore-job" in json.dumps(decrypts[-1])
    # Another context (another tenant's identity) does not open it.
    with pytest.raises(NoIdentityMatch):
        decrypt_bytes(sealed, [ServiceIdentity(opener, context="tenant=8")])
    # Rotation: the old file still opens; new files name version 2.
    service.keys.rotate("backups", actor="ops")
    assert decrypt_bytes(sealed, [ServiceIdentity(opener, context="tenant=7")])
    rotated = recipient_from_service(service, "backups", context="tenant=7")
    assert rotated.version == 2
    # Revoked: the service refuses, with a reason, and nothing is decrypted.
    service.keys.revoke("backups", "key_compromise", actor="ops")
    with pytest.raises(ServiceRefused, match=r"compromised|revoked|not allowed"):
        decrypt_bytes(sealed, [ServiceIdentity(opener, context="tenant=7")])
    # ...and it is no longer offered as a recipient.
    with pytest.raises(ValueError, match="only an active key"):
        recipient_from_service(service, "backups")


def test_key_id_and_version_in_the_stanza_must_match_the_sealed_key(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="ops")
    sealed = encrypt_bytes(b"x", [recipient_from_service(service, "k")])
    identity = ServiceIdentity(library_opener(service, "t"))
    forged = sealed.replace(b" 1\n", b" 2\n", 1)  # the stanza now claims version 2
    with pytest.raises(DecryptionError):
        decrypt_bytes(forged, [identity])


def test_plugin_encodings_round_trip(service: KeyService) -> None:
    service.keys.create_key(name="k", purpose="encryption", actor="ops")
    recipient = recipient_from_service(service, "k", context="ctx")
    text = encode_recipient(recipient)
    assert text.startswith("age1qrc1")
    back = decode_recipient(text)
    assert (back.key_id, back.version, back.context) == (recipient.key_id, 1, "ctx")
    assert back.public.public_bytes() == recipient.public.public_bytes()
    identity = encode_identity(ServiceLocator("https://kms.example:8443", "ctx"))
    assert identity.startswith("AGE-PLUGIN-QRC-1")
    assert decode_identity(identity) == ServiceLocator("https://kms.example:8443", "ctx")
    # A file for the decoded recipient opens in the service.
    sealed = encrypt_bytes(b"y", [back])
    assert decrypt_bytes(sealed, [ServiceIdentity(library_opener(service, "t"), context="ctx")])


# --------------------------------------------------------------------------- the real thing
@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    """A real API server over PQ TLS and the environment to reach it."""
    from tests.api.api_server import ApiProcess

    data_dir = tmp_path_factory.mktemp("served")
    process = ApiProcess(data_dir, "--tls")
    url = f"https://127.0.0.1:{process.port}"
    env = {
        "QRC_URL": url,
        "QRC_TOKEN": process.tokens["admin"],
        "QRC_CA_FILE": str(data_dir / "tls" / "ca.pem"),
        # age finds the plugin on PATH: the installed console script next to this
        # interpreter, or (an environment installed before it existed) a stand-in.
        "PATH": f"{_plugin_dir(data_dir)}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    try:
        yield url, env
    finally:
        process.stop()


def _plugin_dir(work: Path) -> Path:
    installed = Path(sys.executable).parent
    if (installed / "age-plugin-qrc").exists():
        return installed
    stand_in = work / "bin"
    stand_in.mkdir(exist_ok=True)
    script = stand_in / "age-plugin-qrc"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m qrc.data.age.plugin "$@"\n')
    script.chmod(0o755)
    return stand_in


def _plugin(*args: str, env: dict[str, str]) -> str:
    return ok(run([sys.executable, "-m", "qrc.data.age.plugin", *args], env=env)).decode().strip()


def _create_key(name: str, env: dict[str, str]) -> None:
    ok(qrc("keys", "create", name, "-p", "encryption", env=env))


@needs_age
def test_stock_age_encrypts_and_decrypts_through_the_plugin(
    tmp_path: Path, server: tuple[str, dict[str, str]]
) -> None:
    _url, env = server
    _create_key("age-files", env)
    recipient = _plugin("recipient", "age-files", "--context", "backups", env=env)
    assert recipient.startswith("age1qrc1")
    identity = tmp_path / "identity.txt"
    identity.write_text(_plugin("identity", "--context", "backups", env=env) + "\n")
    plain = os.urandom((64 << 10) + 1)
    # age runs age-plugin-qrc (recipient-v1), which needs no service: the key is in the string.
    sealed = ok(run([AGE or "age", "-r", recipient], stdin=plain, env=env))
    assert b"\n-> qrc-key " in sealed
    # age runs age-plugin-qrc (identity-v1), which asks the service over PQ TLS.
    assert ok(run([AGE or "age", "-d", "-i", identity], stdin=sealed, env=env)) == plain
    # qrc file reads it with the same identity file, and writes files age can read.
    assert ok(qrc("file", "decrypt", "-i", identity, stdin=sealed, env=env)) == plain
    ours = ok(qrc("file", "encrypt", "-r", recipient, "-a", stdin=plain, env=env))
    assert ok(run([AGE or "age", "-d", "-i", identity], stdin=ours, env=env)) == plain
    # Another context in the identity: no match.
    other = tmp_path / "other.txt"
    other.write_text(_plugin("identity", "--context", "other", env=env) + "\n")
    assert run([AGE or "age", "-d", "-i", other], stdin=sealed, env=env).returncode != 0
    assert one_line_failure(qrc("file", "decrypt", "-i", other, stdin=sealed, env=env)).endswith(
        "decryption failed"
    )
    # Revoked: refused by the service; age fails, qrc says why in one line.
    ok(qrc("keys", "revoke", "age-files", "--reason", "key_compromise", env=env))
    assert run([AGE or "age", "-d", "-i", identity], stdin=sealed, env=env).returncode != 0
    line = one_line_failure(qrc("file", "decrypt", "-i", identity, stdin=sealed, env=env))
    assert "refused" in line


@needs_age
def test_plugin_reports_a_bad_token(tmp_path: Path, server: tuple[str, dict[str, str]]) -> None:
    _url, env = server
    _create_key("tokens-matter", env)
    recipient = _plugin("recipient", "tokens-matter", env=env)
    identity = tmp_path / "identity.txt"
    identity.write_text(_plugin("identity", env=env) + "\n")
    sealed = ok(run([AGE or "age", "-r", recipient], stdin=b"x", env=env))
    bad = {**env, "QRC_TOKEN": "qrc_not_a_token"}
    failed = run([AGE or "age", "-d", "-i", identity], stdin=sealed, env=bad)
    assert failed.returncode != 0 and failed.stdout == b""


def test_unreachable_service_is_named_in_one_line(tmp_path: Path, service: KeyService) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    service.keys.create_key(name="k", purpose="encryption", actor="ops")
    recipient = encode_recipient(recipient_from_service(service, "k"))
    identity = tmp_path / "identity.txt"
    identity.write_text(encode_identity(ServiceLocator(f"http://127.0.0.1:{port}")) + "\n")
    sealed = ok(qrc("file", "encrypt", "-r", recipient, stdin=b"x"))
    env = {"QRC_TOKEN": "qrc_whatever"}
    result = qrc("file", "decrypt", "-i", identity, "-o", tmp_path / "out", stdin=sealed, env=env)
    line = one_line_failure(result)
    assert "cannot reach the key service" in line and str(port) in line
    assert not (tmp_path / "out").exists()


def _speak(machine: str, lines: str, env: dict[str, str]) -> tuple[int, str]:
    """Run the plugin's state machine on ``lines`` (as the age client would send them)."""
    result = run(
        [sys.executable, "-m", "qrc.data.age.plugin", f"--age-plugin={machine}"],
        stdin=lines.encode(),
        env=env,
    )
    return result.returncode, result.stdout.decode()


def test_plugin_state_machines_follow_the_spec(service: KeyService) -> None:
    env = {"QRC_TOKEN": "qrc_unused"}
    service.keys.create_key(name="k", purpose="encryption", actor="ops")
    recipient = encode_recipient(recipient_from_service(service, "k"))
    file_key = "AAAAAAAAAAAAAAAAAAAAAA"  # 16 zero bytes, base64
    # recipient-v1: grease is ignored; labels are sent when asked; one stanza per file key.
    code, out = _speak(
        "recipient-v1",
        f"-> add-recipient {recipient}\n\n-> grease-x a b\nZm9v\n-> extension-labels\n\n"
        f"-> wrap-file-key\n{file_key}\n-> done\n\n-> ok\n\n-> ok\n\n",
        env,
    )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == "-> labels postquantum"
    assert lines[2].startswith("-> recipient-stanza 0 qrc-key ")
    assert lines[-2:] == ["-> done", ""]
    # recipient-v1 with a recipient that is not one: an error for that index, no stanza.
    code, out = _speak(
        "recipient-v1",
        f"-> add-recipient age1qrc1qqqqqqqq\n\n-> wrap-file-key\n{file_key}\n-> done\n\n-> ok\n\n",
        env,
    )
    assert out.startswith("-> error recipient 0\n") and "recipient-stanza" not in out
    # identity-v1: a malformed qrc-key stanza is reported as such; others are ignored.
    identity = encode_identity(ServiceLocator("http://127.0.0.1:9"))
    code, out = _speak(
        "identity-v1",
        f"-> add-identity {identity}\n\n-> recipient-stanza 0 X25519 abc\nZm9v\n"
        "-> recipient-stanza 0 qrc-key onlyone\nZm9v\n-> recipient-stanza 0 qrc-key x 1\nZm9v\n"
        "-> done\n\n-> ok\n\n",
        env,
    )
    assert code == 0 and out.startswith("-> error stanza 0 1\n"), out
    # An unknown state machine: refuse to start.
    assert _speak("recipient-v9", "", env)[0] == 1


def test_qrc_file_uses_managed_keys_directly(
    tmp_path: Path, server: tuple[str, dict[str, str]]
) -> None:
    _url, env = server
    _create_key("direct", env)
    plain = os.urandom(100_000)
    sealed = ok(qrc("file", "encrypt", "--key", "direct", "-c", "tenant=3", stdin=plain, env=env))
    assert b"\n-> qrc-key " in sealed
    out = tmp_path / "out"
    ok(qrc("file", "decrypt", "--service", "-c", "tenant=3", "-o", out, stdin=sealed, env=env))
    assert out.read_bytes() == plain
    wrong = qrc("file", "decrypt", "--service", "-c", "tenant=4", stdin=sealed, env=env)
    assert one_line_failure(wrong) == "qrc: error: decryption failed"
    missing = qrc("file", "encrypt", "--key", "no-such-key", stdin=b"x", env=env)
    assert "refused" in one_line_failure(missing)
    down = {**env, "QRC_URL": "https://127.0.0.1:9"}
    line = one_line_failure(qrc("file", "encrypt", "--key", "direct", stdin=b"x", env=down))
    assert "cannot reach the key service" in line
