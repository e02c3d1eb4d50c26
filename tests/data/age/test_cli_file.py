"""``qrc file`` and the streaming ``qrc encrypt``/``decrypt``, run as a user runs them."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from qrc.data.age.header import read_header
from tests.data.age.cctv import TESTDATA, load
from tests.data.age.conftest import (
    AGE,
    needs_age,
    ok,
    on_a_terminal,
    one_line_failure,
    qrc,
    run,
)

CHUNK = 64 << 10


@pytest.fixture(scope="module")
def pq(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    directory = tmp_path_factory.mktemp("pq")
    identity = directory / "pq.txt"
    ok(qrc("keygen", "--age", "--pq", "-o", identity))
    recipient = identity.read_text().splitlines()[1].removeprefix("# public key: ")
    assert recipient.startswith("age1pq1")
    return identity, recipient


def test_post_quantum_round_trip_and_mixing_refused(tmp_path: Path, pq: tuple[Path, str]) -> None:
    identity, recipient = pq
    data = os.urandom(2 * CHUNK + 7)
    sealed = ok(qrc("file", "encrypt", "-r", recipient, stdin=data))
    assert b"\n-> mlkem768x25519 " in sealed
    assert ok(qrc("file", "decrypt", "-i", identity, stdin=sealed)) == data
    classical = ok(qrc("keygen", "--age")).decode().splitlines()[1].removeprefix("# public key: ")
    line = one_line_failure(qrc("file", "encrypt", "-r", recipient, "-r", classical, stdin=b"x"))
    assert "quantum" in line


def test_passphrase_from_the_environment(tmp_path: Path) -> None:
    env = {"QRC_AGE_PASSPHRASE": "correct horse battery staple"}
    sealed = ok(qrc("file", "encrypt", "-p", "--work-factor", "10", "-a", stdin=b"pw", env=env))
    assert b"-----BEGIN AGE ENCRYPTED FILE-----" in sealed
    assert ok(qrc("file", "decrypt", stdin=sealed, env=env)) == b"pw"
    wrong = qrc("file", "decrypt", stdin=sealed, env={"QRC_AGE_PASSPHRASE": "nope"})
    assert one_line_failure(wrong) == "qrc: error: decryption failed"
    # Without a terminal or the variable there is no passphrase: a clear one-line error.
    no_tty = run(
        ["setsid", "-w", *_python_qrc(), "file", "decrypt"],
        stdin=sealed,
        env={"QRC_AGE_PASSPHRASE": ""},
    )
    assert one_line_failure(no_tty) == (
        "qrc: error: no terminal to ask for a passphrase: set QRC_AGE_PASSPHRASE"
    )
    # On a terminal, the passphrase is typed at the prompt (twice to encrypt).
    plain, typed, back = tmp_path / "plain", tmp_path / "typed.age", tmp_path / "back"
    plain.write_bytes(b"typed")
    encrypt_argv = [*_python_qrc(), "file", "encrypt", "-p", "--work-factor", "10"]
    assert on_a_terminal([*encrypt_argv, "-o", str(typed), str(plain)], [b"pw"] * 2) == 0
    decrypt_argv = [*_python_qrc(), "file", "decrypt", "-o", str(back), str(typed)]
    assert on_a_terminal(decrypt_argv, [b"pw"]) == 0
    assert back.read_bytes() == b"typed"
    assert on_a_terminal([*encrypt_argv, str(plain)], [b"pw", b"other"]) == 2  # mismatch


def _python_qrc() -> list[str]:
    import sys

    return [sys.executable, "-m", "qrc"]


def _split(sealed: bytes) -> tuple[bytes, list[bytes]]:
    header = read_header(io.BufferedReader(io.BytesIO(sealed)))
    start = len(header.covered) + 45 + 16
    body = sealed[start:]
    return sealed[:start], [body[i : i + CHUNK + 16] for i in range(0, len(body), CHUNK + 16)]


def test_tampered_files_fail_opaquely_and_leave_no_output(
    tmp_path: Path, pq: tuple[Path, str]
) -> None:
    identity, recipient = pq
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(3 * CHUNK + 100))
    sealed_path = tmp_path / "plain.age"
    ok(qrc("file", "encrypt", "-r", recipient, "-o", sealed_path, plain))
    sealed = sealed_path.read_bytes()
    head, chunks = _split(sealed)
    other = ok(qrc("file", "encrypt", "-r", recipient, plain))
    mac = sealed.index(b"\n--- ") + 5
    forgeries = {
        "truncated": sealed[: len(head) + 2 * (CHUNK + 16)],
        "reordered": head + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "header changed": sealed.replace(b"-> mlkem768x25519 ", b"-> mlkem768x25519 x", 1),
        "MAC swapped": sealed[:mac] + other[other.index(b"\n--- ") + 5 :][:43] + sealed[mac + 43 :],
        "trailing garbage": sealed + b"\n",
        "not age at all": b"hello world",
    }
    for name, forged in forgeries.items():
        source, out = tmp_path / f"{name}.age", tmp_path / f"{name}.out"
        source.write_bytes(forged)
        result = qrc("file", "decrypt", "-i", identity, "-o", out, source)
        assert one_line_failure(result) == "qrc: error: decryption failed", name
        assert not out.exists(), name
        assert not list(tmp_path.glob(f".{name}.out.*")), name  # the temporary file is gone
    # The genuine file still decrypts, and an existing output is replaced only on success.
    out = tmp_path / "out"
    out.write_bytes(b"previous")
    source = tmp_path / "bad.age"
    source.write_bytes(sealed[:-1])
    one_line_failure(qrc("file", "decrypt", "-i", identity, "-o", out, source))
    assert out.read_bytes() == b"previous"
    ok(qrc("file", "decrypt", "-i", identity, "-o", out, sealed_path))
    assert out.read_bytes() == plain.read_bytes()
    assert oct(out.stat().st_mode)[-3:] == "600"


def test_bad_keys_and_usage_give_one_line(tmp_path: Path, pq: tuple[Path, str]) -> None:
    identity, _ = pq
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("AGE-SECRET-KEY-1NOTAKEY\n")
    assert "line 1" in one_line_failure(qrc("file", "decrypt", "-i", garbage, stdin=b"x"))
    assert "malformed" in one_line_failure(qrc("file", "encrypt", "-r", "age1nope", stdin=b"x"))
    assert "no recipients" in one_line_failure(qrc("file", "encrypt", stdin=b"x"))
    assert "too large" in one_line_failure(qrc("file", "decrypt", "-i", "/dev/zero", stdin=b"x"))
    missing = one_line_failure(qrc("file", "decrypt", "-i", tmp_path / "absent", stdin=b"x"))
    assert "absent" in missing
    # Another identity: no match, the same opaque line.
    sealed = ok(qrc("file", "encrypt", "-r", str(_other_recipient()), stdin=b"x"))
    assert one_line_failure(qrc("file", "decrypt", "-i", identity, stdin=sealed)).endswith(
        "decryption failed"
    )


def _other_recipient() -> str:
    from qrc.data.age import HybridIdentity

    return str(HybridIdentity.generate().recipient())


@pytest.mark.parametrize(
    "name", ["x25519", "armor_crlf", "hybrid", "stream_two_chunks", "stream_no_final", "hmac_bad"]
)
def test_cctv_vectors_through_the_command_line(tmp_path: Path, name: str) -> None:
    if not TESTDATA.is_dir():
        pytest.skip(f"{TESTDATA} is absent")
    vector = load(TESTDATA / name)
    identity = tmp_path / "identity.txt"
    identity.write_text("\n".join(vector.identities) + "\n")
    result = qrc("file", "decrypt", "-i", identity, "-o", tmp_path / "out", stdin=vector.data)
    if vector.expect == "success":
        ok(result)
        import hashlib

        assert hashlib.sha256((tmp_path / "out").read_bytes()).hexdigest() == vector.payload
    else:
        assert one_line_failure(result) == "qrc: error: decryption failed"
        assert not (tmp_path / "out").exists()


def test_qrc_encrypt_streams_large_inputs_as_age(tmp_path: Path) -> None:
    key = tmp_path / "alice"
    ok(qrc("keygen", "-a", "X25519MLKEM768", "-o", key))
    small = ok(qrc("encrypt", "-r", f"{key}.pub", "-c", "c", stdin=b"small"))
    assert small.startswith(b"QRCE")  # one-shot envelope for small messages
    big = tmp_path / "big"
    big.write_bytes(os.urandom((1 << 20) + 1))
    sealed = tmp_path / "big.sealed"
    ok(qrc("encrypt", "-r", f"{key}.pub", "-c", "accounts/42", "-i", big, "-o", sealed))
    assert sealed.read_bytes().startswith(b"age-encryption.org/v1\n-> qrc-key - 0\n")
    out = tmp_path / "out"
    ok(qrc("decrypt", "-k", key, "-c", "accounts/42", "-i", sealed, "-o", out))
    assert out.read_bytes() == big.read_bytes()
    # The context is bound: another one fails, and leaves nothing behind.
    wrong = qrc("decrypt", "-k", key, "-c", "accounts/43", "-i", sealed, "-o", tmp_path / "x")
    assert one_line_failure(wrong) == "qrc: error: decryption failed"
    assert not (tmp_path / "x").exists()
    # qrc file decrypt reads it with the PEM key and the context too.
    got = ok(qrc("file", "decrypt", "-i", key, "-c", "accounts/42", sealed))
    assert got == big.read_bytes()


@needs_age
def test_age_decrypts_what_qrc_file_wrote_with_a_key_list(tmp_path: Path) -> None:
    # age ignores stanzas it does not know (qrc-key) and uses its own: one file, two readers.
    key, age_id = tmp_path / "alice", tmp_path / "age.txt"
    ok(qrc("keygen", "-a", "X25519MLKEM768", "-o", key))
    ok(run(["age-keygen", "-o", age_id]))
    recipient = age_id.read_text().splitlines()[1].removeprefix("# public key: ")
    # A PQ qrc-key and a classical X25519 recipient may not share a file...
    mixed = qrc("file", "encrypt", "-R", f"{key}.pub", "-r", recipient, stdin=b"x")
    assert "quantum" in one_line_failure(mixed)
    # ...but a classical P-256 qrc key may.
    ok(qrc("keygen", "-a", "P-256", "-o", tmp_path / "p256"))
    sealed = ok(qrc("file", "encrypt", "-R", tmp_path / "p256.pub", "-r", recipient, stdin=b"x"))
    assert ok(run([AGE or "age", "-d", "-i", age_id], stdin=sealed)) == b"x"
    assert ok(qrc("file", "decrypt", "-i", tmp_path / "p256", stdin=sealed)) == b"x"


def test_file_commands_start_without_pydantic_or_the_service(
    tmp_path: Path, pq: tuple[Path, str]
) -> None:
    identity, recipient = pq
    sealed = tmp_path / "x.age"
    ok(qrc("file", "encrypt", "-r", recipient, "-r", recipient, "-a", "-o", sealed, stdin=b"x"))
    for args in (
        ("file", "encrypt", "-r", recipient, "-a", "-o", tmp_path / "y.age", sealed),
        ("file", "decrypt", "-i", identity, "-o", tmp_path / "out", sealed),
    ):
        result = run([*_python_qrc()[:1], "-X", "importtime", "-m", "qrc", *args])
        ok(result)
        loaded = {line.split("|")[-1].strip() for line in result.stderr.decode().splitlines()}
        assert "qrc.data.age" in loaded  # it did run
        assert not {"pydantic", "sqlalchemy", "qrc.keys", "qrc.transit", "rich"} & loaded


def test_progress_bar_on_a_terminal_only(tmp_path: Path, pq: tuple[Path, str]) -> None:
    import pty

    _identity, recipient = pq
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom(3 << 20))
    argv = [
        *_python_qrc(),
        "file",
        "encrypt",
        "-r",
        recipient,
        "-o",
        str(tmp_path / "x"),
        str(plain),
    ]
    pid, fd = pty.fork()
    if pid == 0:  # stdin, stdout and stderr on the terminal
        os.execv(argv[0], argv)
    seen = b""
    try:
        while chunk := os.read(fd, 4096):
            seen += chunk
    except OSError:  # the child closed the terminal
        pass
    finally:
        os.close(fd)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert b"[###" in seen and b"MiB" in seen
    # Not a terminal: nothing on stderr.
    result = qrc("file", "encrypt", "-r", recipient, "-o", tmp_path / "y", plain)
    assert ok(result) == b"" and result.stderr == b""
