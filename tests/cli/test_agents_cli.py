"""``qrc agents`` as a user runs it: real processes, files on disk, and the relay of a real
server over PQ TLS. The attacks: a replayed message (also by two runs at once), a message
altered on the way, one for another agent, one from an agent whose card is not known, a
forged card, a key file read with the wrong passphrase."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from qrc.crypto.keyfile import load_private_pem
from tests.api.test_relay_client import server  # noqa: F401  (the relay server fixture)

QRC = [sys.executable, "-m", "qrc"]


def qrc(*args: str | Path, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
    return subprocess.run(
        [*QRC, *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with agents alice and bob (bob's keys under a passphrase) and their cards."""
    root = tmp_path_factory.mktemp("agents")
    (root / "pass").write_text("correct horse\n")
    assert qrc("agents", "init", "alice", cwd=root).returncode == 0
    made = qrc("agents", "init", "bob", "--passphrase-file", "pass", "--json", cwd=root)
    assert made.returncode == 0, made.stderr
    (root / "cards").mkdir()
    for name in ("alice", "bob"):
        card = qrc("agents", "card", name, cwd=root)
        assert card.returncode == 0
        (root / "cards" / f"{name}.json").write_bytes(card.stdout)
    return root


def send(place: Path, body: bytes, *extra: str) -> bytes:
    done = qrc("agents", "send", "alice", "--to", "bob", "--peers", "cards", *extra, cwd=place,
               stdin=body)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def receive(place: Path, wire: bytes, *extra: str) -> subprocess.CompletedProcess[bytes]:
    return qrc("agents", "receive", "bob", "--peers", "cards", "--passphrase-file", "pass",
               *extra, cwd=place, stdin=wire)  # fmt: skip


def test_a_message_goes_from_alice_to_bob_once(place: Path) -> None:
    wire = send(place, b'{"task": 7}', "--content-type", "application/json")
    assert b"task" not in wire  # sealed
    got = receive(place, wire, "--json")
    assert got.returncode == 0, got.stderr
    message = json.loads(got.stdout)
    assert (message["sender"], message["content_type"]) == ("alice", "application/json")
    again = receive(place, wire)  # a new process: the replay cache was kept on disk
    assert (again.returncode, again.stdout) == (1, b"")
    assert b"message rejected" in again.stderr


def _holds_open(pid: int, name: str) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    return any(os.readlink(fd).endswith(name) for fd in fds if fd.is_symlink())


def test_two_runs_at_once_accept_one_message_once(place: Path) -> None:
    """Both runs have opened bob's replay cache before either is given the message (a run
    opens the agent, then reads stdin): only the lock keeps them from both accepting it."""
    wire = send(place, b"only once")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QRC_")}
    argv = [*QRC, "agents", "receive", "bob", "--peers", "cards", "--passphrase-file", "pass"]
    runs = [
        subprocess.Popen(
            argv,
            cwd=place,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(2)
    ]
    for _ in range(600):
        if all(_holds_open(run.pid, "replay.json") for run in runs):
            break
        time.sleep(0.05)
    time.sleep(0.3)  # past the open, into the read (or the wait for the lock)
    for run in runs:  # the one waiting for the lock reads its copy when it gets the lock
        assert run.stdin is not None
        run.stdin.write(wire)
        run.stdin.close()
    assert sorted(run.wait(120) for run in runs) == [0, 1]


def test_altered_misdirected_or_unknown_messages_are_refused_alike(place: Path) -> None:
    wire = send(place, b"pay 10")
    for position in (10, len(wire) // 2, len(wire) - 1):
        altered = bytearray(wire)
        altered[position] ^= 1
        got = receive(place, bytes(altered))
        assert (got.returncode, got.stdout) == (1, b"")
    # Meant for bob, opened by alice: refused.
    wrong = qrc("agents", "receive", "alice", "--peers", "cards", cwd=place, stdin=wire)
    assert wrong.returncode == 1
    # Bob without alice's card does not know the sender.
    only_bob = qrc("agents", "receive", "bob", "--peers", "cards/bob.json",
                   "--passphrase-file", "pass", cwd=place, stdin=wire)  # fmt: skip
    assert only_bob.returncode == 1
    assert receive(place, wire).returncode == 0  # the original still opens once


def test_a_forged_card_cannot_pass_for_alice(place: Path, tmp_path: Path) -> None:
    # Mallory makes an agent she calls alice and gets her card next to the real one.
    assert qrc("agents", "init", "alice", "--home", tmp_path / "m", cwd=place).returncode == 0
    forged = qrc("agents", "card", "alice", "--home", tmp_path / "m", cwd=place).stdout
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "alice.json").write_bytes(forged)
    both = qrc("agents", "receive", "bob", "--peers", "cards", "--peers", tmp_path / "cards",
               "--passphrase-file", "pass", cwd=place, stdin=b"x")  # fmt: skip
    assert both.returncode == 2 and b"differs" in both.stderr
    # With only the forged card, a message really from alice does not verify.
    wire = send(place, b"from the real alice")
    fooled = qrc("agents", "receive", "bob", "--peers", tmp_path / "cards", "--peers",
                 "cards/bob.json", "--passphrase-file", "pass", cwd=place, stdin=wire)  # fmt: skip
    assert fooled.returncode == 1


def test_keys_are_private_and_cards_public(place: Path) -> None:
    homes = sorted((place / "agents").iterdir())
    assert len(homes) == 2
    for home in homes:
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        for name in ("signing.key", "kem.key", "replay.json"):
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
        card = (home / "card.json").read_text()
        assert "PRIVATE" not in card and json.loads(card)["version"] == "qrc-agent-card-v1"
    bob = next(h for h in homes if "ENCRYPTED" in (h / "signing.key").read_text())
    with pytest.raises(Exception):  # whatever the library raises, it does not load
        load_private_pem((bob / "signing.key").read_bytes(), b"wrong")
    wrong = place / "wrong-pass"
    wrong.write_text("wrong\n")
    got = qrc("agents", "receive", "bob", "--peers", "cards", "--passphrase-file", wrong,
              cwd=place, stdin=b"")  # fmt: skip
    assert got.returncode == 2 and b"Traceback" not in got.stderr


def test_init_refuses_to_overwrite_and_bad_input_is_a_clear_error(place: Path) -> None:
    again = qrc("agents", "init", "alice", cwd=place)
    assert again.returncode == 2 and b"already exists" in again.stderr
    bad = qrc("agents", "init", "carol", "--signature", "ML-KEM-768", cwd=place)
    assert bad.returncode == 2 and b"ML-DSA" in bad.stderr
    (place / "junk.json").write_text("{}")
    junk = qrc("agents", "send", "alice", "--to", "bob", "--peers", "junk.json", cwd=place)
    assert junk.returncode == 2 and b"junk.json" in junk.stderr
    (place / "agents" / "x").mkdir(exist_ok=True)
    nobody = qrc("agents", "card", "nobody", cwd=place)
    assert nobody.returncode == 2 and b"qrc agents init nobody" in nobody.stderr


@pytest.fixture
def relay_place(tmp_path: Path) -> Iterator[Path]:
    for name in ("alice", "bob"):
        assert qrc("agents", "init", name, cwd=tmp_path).returncode == 0
        card = qrc("agents", "card", name, cwd=tmp_path).stdout
        (tmp_path / f"{name}.json").write_bytes(card)
    yield tmp_path


def test_agents_talk_through_the_relay(
    relay_place: Path,
    server: tuple[str, str, dict[str, str]],  # noqa: F811
) -> None:
    url, ca, tokens = server
    common = ["--peers", "alice.json", "--peers", "bob.json", "--relay", url, "--ca", ca]
    sent = qrc("agents", "send", "alice", "--to", "bob", *common, "--token", tokens["alice"],
               "--json", cwd=relay_place, stdin=b"through the relay")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["id"]
    got = qrc("agents", "receive", "bob", *common, "--token", tokens["bob"], cwd=relay_place)
    assert got.returncode == 0, got.stderr
    lines = [json.loads(line) for line in got.stdout.splitlines()]
    assert [(m["sender"], m["body"]) for m in lines] == [("alice", "dGhyb3VnaCB0aGUgcmVsYXk=")]
    empty = qrc("agents", "receive", "bob", *common, "--token", tokens["bob"], cwd=relay_place)
    assert (empty.returncode, empty.stdout) == (0, b"")
    # Alice's token does not read bob's queue.
    other = qrc("agents", "receive", "bob", *common, "--token", tokens["alice"], cwd=relay_place)
    assert other.returncode == 2 and b"404" in other.stderr
