"""Agents kept in files: what ``qrc agents`` reads and writes (``docs/formats.md``, "Agent
card v1 and agent home").

An agent's home holds its card (the public side, to share), its two private keys (mode
0600, encrypted under a passphrase when one is given) and its replay cache between runs::

    home = AgentHome(Path("agents"))
    home.create("alice")                          # ML-DSA-65 + X25519MLKEM768
    directory = load_cards([Path("cards/")])      # the peers it knows
    with home.open("alice", directory) as alice:  # replay cache locked, saved on exit
        wire = alice.send("bob", b"hello")

The replay cache is what keeps a message from being accepted twice by two runs of the
command line: :meth:`AgentHome.open` locks it for the whole run and saves it at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

from qrc.crypto.base import KemPrivateKey, KemPublicKey, SigningKey, VerifyingKey
from qrc.crypto.keyfile import (
    PrivateKey,
    load_private_pem,
    load_public_pem,
    private_key_to_pem,
    public_key_to_pem,
)
from qrc.crypto.registry import get_info
from qrc.crypto.selftest import generate_private_key
from qrc.transit.agents import DEFAULT_WINDOW, Agent, AgentIdentity, Directory, ReplayCache

__all__ = ["CARD_VERSION", "AgentHome", "card_of", "load_cards", "parse_card"]

CARD_VERSION: Final = "qrc-agent-card-v1"
_REPLAY_VERSION: Final = "qrc-agent-replay-v1"
_CARD_MEMBERS: Final = frozenset({"version", "agent_id", "signing_key", "kem_key"})
_MAX_CARD: Final = 64 * 1024
_KEM: Final = "X25519MLKEM768"


def card_of(identity: AgentIdentity) -> dict[str, str]:
    """The card of ``identity`` (its public keys as SPKI PEM)."""
    return {
        "version": CARD_VERSION,
        "agent_id": identity.agent_id,
        "signing_key": public_key_to_pem(identity.signing_key).decode("ascii"),
        "kem_key": public_key_to_pem(identity.kem_key).decode("ascii"),
    }


def parse_card(data: bytes) -> AgentIdentity:
    """The identity a card names; ``ValueError`` saying what is wrong with it."""
    if len(data) > _MAX_CARD:
        raise ValueError("an agent card is at most 64 KiB")
    try:
        card = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON agent card: {exc}") from None
    if not isinstance(card, dict) or set(card) != _CARD_MEMBERS:
        raise ValueError(f"an agent card has exactly the members {sorted(_CARD_MEMBERS)}")
    if card["version"] != CARD_VERSION or not all(isinstance(v, str) for v in card.values()):
        raise ValueError(f"not a {CARD_VERSION} card")
    signing = load_public_pem(card["signing_key"].encode("ascii", "replace"))
    kem = load_public_pem(card["kem_key"].encode("ascii", "replace"))
    if not isinstance(signing, VerifyingKey) or not isinstance(kem, KemPublicKey):
        raise ValueError("signing_key must be a signature key and kem_key a KEM key")
    return AgentIdentity(card["agent_id"], signing, kem)


def load_cards(paths: Iterable[Path]) -> Directory:
    """A directory of the cards in ``paths`` (card files, or directories searched for
    ``*.json`` cards, and agent homes' ``card.json``). Two different cards for one agent ID
    are refused: which one to believe is not for this function to guess."""
    directory = Directory()
    for path in paths:
        files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for file in files:
            if file.name == "replay.json":
                continue
            try:
                identity = parse_card(file.read_bytes())
            except ValueError as exc:
                raise ValueError(f"{file}: {exc}") from None
            known = directory.get(identity.agent_id)
            if known is not None and card_of(known) != card_of(identity):
                raise ValueError(f"{file}: another card for agent {identity.agent_id!r} differs")
            directory.add(identity)
    return directory


def _write_new(path: Path, data: bytes, mode: int) -> None:
    # O_EXCL: never overwrite a key, never follow a link planted in its place.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


class AgentHome:
    """A directory of agents (one subdirectory each; see the module docstring)."""

    def __init__(self, root: Path, passphrase: bytes | None = None) -> None:
        self.root = root
        self._passphrase = passphrase

    def path(self, agent_id: str) -> Path:
        """The agent's directory (whether or not it exists)."""
        digest = hashlib.sha256(agent_id.encode("utf-8")).hexdigest()[:16]
        return self.root / f"agent-{digest}"

    def create(self, agent_id: str, signature: str = "ML-DSA-65") -> AgentIdentity:
        """Make a new agent: keys, card, empty replay cache. Refuses an existing one."""
        info = get_info(signature)
        if info.id not in {"ML-DSA-44", "ML-DSA-65", "ML-DSA-87"} and not info.id.startswith(
            "MLDSA"
        ):
            raise ValueError(f"{info.id}: an agent signs with ML-DSA or a composite ML-DSA key")
        directory = self.path(agent_id)
        if directory.exists():
            raise FileExistsError(f"agent {agent_id!r} already exists in {directory}")
        signing = generate_private_key(info.id)
        kem = generate_private_key(_KEM)
        if not isinstance(signing, SigningKey) or not isinstance(kem, KemPrivateKey):
            raise TypeError("the registry gave keys of the wrong kinds")
        identity = AgentIdentity(agent_id, signing.public_key(), kem.public_key())
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
        _write_new(directory / "signing.key", private_key_to_pem(signing, self._passphrase), 0o600)
        _write_new(directory / "kem.key", private_key_to_pem(kem, self._passphrase), 0o600)
        card = json.dumps(card_of(identity), indent=2).encode("utf-8") + b"\n"
        _write_new(directory / "card.json", card, 0o644)
        return identity

    def card(self, agent_id: str) -> bytes:
        """The agent's card file as it is on disk."""
        return self._existing(agent_id).joinpath("card.json").read_bytes()

    def _existing(self, agent_id: str) -> Path:
        directory = self.path(agent_id)
        if not (directory / "card.json").exists():
            raise FileNotFoundError(
                f"no agent {agent_id!r} in {self.root} (create it: qrc agents init {agent_id})"
            )
        return directory

    def _private(self, path: Path) -> PrivateKey:
        return load_private_pem(path.read_bytes(), self._passphrase)

    @contextlib.contextmanager
    def open(
        self, agent_id: str, peers: Directory, *, window: float = DEFAULT_WINDOW
    ) -> Iterator[Agent]:
        """The agent, ready to send to and receive from ``peers`` (its own card is added).

        Its replay cache is locked for the whole block and saved at its end, so that runs for
        one agent take turns and none accepts what another accepted.
        """
        directory = self._existing(agent_id)
        own = parse_card((directory / "card.json").read_bytes())
        signing = self._private(directory / "signing.key")
        kem = self._private(directory / "kem.key")
        if not isinstance(signing, SigningKey) or not isinstance(kem, KemPrivateKey):
            raise ValueError(f"{directory}: the key files are not a signing key and a KEM key")
        peers.add(own)
        replay_path = directory / "replay.json"
        fd = os.open(replay_path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            cache = ReplayCache(window)
            _load_replays(handle.read(), cache, replay_path)
            yield Agent(agent_id, signing, kem, peers, window=window, replay_cache=cache)
            _save_replays(handle, cache)


def _load_replays(data: bytes, cache: ReplayCache, path: Path) -> None:
    if not data:
        return
    try:
        state: Any = json.loads(data)
        if state.get("version") != _REPLAY_VERSION:
            raise ValueError("unknown version")
        seen = [(str(s), bytes.fromhex(m), int(t)) for s, m, t in state["seen"]]
        cache.restore(int(state["floor_ms"]), seen)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # An empty cache would accept every replay in the window: stop instead.
        raise ValueError(
            f"{path}: unreadable replay cache ({exc}); restore it or move it"
        ) from None


def _save_replays(handle: Any, cache: ReplayCache) -> None:
    floor_ms, seen = cache.snapshot()
    state = {
        "version": _REPLAY_VERSION,
        "floor_ms": floor_ms,
        "seen": [[sender, message_id.hex(), timestamp] for sender, message_id, timestamp in seen],
    }
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps(state).encode("utf-8"))
    handle.flush()
    os.fsync(handle.fileno())
