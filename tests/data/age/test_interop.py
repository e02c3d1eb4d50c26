"""``qrc file`` and Debian's ``age`` 1.1.1 read each other's files (X25519, armor)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.data.age.conftest import (
    AGE,
    AGE_KEYGEN,
    needs_age,
    ok,
    on_a_terminal,
    one_line_failure,
    qrc,
    run,
)

pytestmark = needs_age

# Binary at every size; armor at the edges (it is tested at length in test_format).
CASES = [(size, False) for size in (0, 1, 64 << 10, (64 << 10) + 1, 3 << 20)] + [
    (0, True),
    ((64 << 10) + 1, True),
]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An identity made by age-keygen, and its recipient."""
    directory = tmp_path_factory.mktemp("age-keys")
    identity = directory / "age-key.txt"
    ok(run([AGE_KEYGEN or "age-keygen", "-o", identity]))
    recipient = next(
        line.split(": ", 1)[1]
        for line in identity.read_text().splitlines()
        if line.startswith("# public key: ")
    )
    return identity, recipient


@pytest.mark.parametrize(("size", "armor"), CASES)
def test_age_reads_qrc(tmp_path: Path, keys: tuple[Path, str], size: int, armor: bool) -> None:
    identity, recipient = keys
    plain, sealed = tmp_path / "plain", tmp_path / "plain.age"
    plain.write_bytes(os.urandom(size))
    ok(qrc("file", "encrypt", "-r", recipient, *(["-a"] if armor else []), "-o", sealed, plain))
    assert sealed.read_bytes().startswith(
        b"-----BEGIN AGE" if armor else b"age-encryption.org/v1\n-> X25519 "
    )
    assert ok(run([AGE or "age", "-d", "-i", identity, sealed])) == plain.read_bytes()


@pytest.mark.parametrize(("size", "armor"), CASES)
def test_qrc_reads_age(tmp_path: Path, keys: tuple[Path, str], size: int, armor: bool) -> None:
    identity, recipient = keys
    plain, sealed = tmp_path / "plain", tmp_path / "plain.age"
    plain.write_bytes(os.urandom(size))
    ok(run([AGE or "age", "-r", recipient, *(["-a"] if armor else []), "-o", sealed, plain]))
    out = tmp_path / "out"
    # Armor is detected: no flag on decryption.
    ok(qrc("file", "decrypt", "-i", identity, "-o", out, sealed))
    assert out.read_bytes() == plain.read_bytes()
    if size == 1:  # stdin to stdout too
        assert ok(qrc("file", "decrypt", "-i", identity, stdin=sealed.read_bytes())) == (
            plain.read_bytes()
        )


def test_identity_files_of_both_tools_interchange(tmp_path: Path) -> None:
    ours = tmp_path / "ours.txt"
    ok(qrc("keygen", "--age", "-o", ours))
    text = ours.read_text().splitlines()
    assert text[0].startswith("# created: ") and text[1].startswith("# public key: age1")
    assert text[2].startswith("AGE-SECRET-KEY-1") and oct(ours.stat().st_mode)[-3:] == "600"
    recipient = text[1].removeprefix("# public key: ")
    # age -R reads our recipient; age -i reads our identity file.
    sealed = ok(run([AGE or "age", "-r", recipient], stdin=b"across"))
    assert ok(run([AGE or "age", "-d", "-i", ours], stdin=sealed)) == b"across"
    # age-keygen -y derives the same recipient from our identity file.
    assert ok(run([AGE_KEYGEN or "age-keygen", "-y", ours])).decode().strip() == recipient
    # Refuses to overwrite.
    assert "exists" in one_line_failure(qrc("keygen", "--age", "-o", ours))


def test_several_recipients_and_recipient_files(tmp_path: Path, keys: tuple[Path, str]) -> None:
    identity, recipient = keys
    other = tmp_path / "other.txt"
    ok(qrc("keygen", "--age", "-o", other))
    listing = tmp_path / "recipients.txt"
    listing.write_text(f"# team\n{recipient}\n\n")
    other_recipient = other.read_text().splitlines()[1].removeprefix("# public key: ")
    sealed = ok(qrc("file", "encrypt", "-R", listing, "-r", other_recipient, "-a", stdin=b"team"))
    assert ok(run([AGE or "age", "-d", "-i", identity], stdin=sealed)) == b"team"
    assert ok(qrc("file", "decrypt", "-i", other, stdin=sealed)) == b"team"


def test_passphrase_files_both_ways(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(os.urandom((64 << 10) + 3))
    age = AGE or "age"
    # age -p (typed on a terminal) -> qrc file decrypt (QRC_AGE_PASSPHRASE)
    theirs = tmp_path / "theirs.age"
    assert on_a_terminal([age, "-p", "-o", str(theirs), str(plain)], [b"hunter22"] * 2) == 0
    env = {"QRC_AGE_PASSPHRASE": "hunter22"}
    assert ok(qrc("file", "decrypt", theirs, env=env)) == plain.read_bytes()
    # qrc file encrypt -p -> age -d (typed on a terminal)
    ours, out = tmp_path / "ours.age", tmp_path / "out"
    ok(qrc("file", "encrypt", "-p", "--work-factor", "12", "-a", "-o", ours, plain, env=env))
    assert on_a_terminal([age, "-d", "-o", str(out), str(ours)], [b"hunter22"]) == 0
    assert out.read_bytes() == plain.read_bytes()
    # and a wrong passphrase fails in age too
    assert on_a_terminal([age, "-d", "-o", str(tmp_path / "x"), str(ours)], [b"wrong"]) != 0
