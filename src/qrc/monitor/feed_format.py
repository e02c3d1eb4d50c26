"""Threat feed v1: the signed algorithm-status and threat feed (``docs/formats.md``).

A publisher signs a JSON ``feed`` object (algorithm statuses, NIST IR 8547 transition dates,
CNSA 2.0 milestones, advisories) with an ML-DSA or SLH-DSA key; the signature travels beside
it in the same document, over the feed's canonical bytes (RFC 8785 on a restricted JSON).
This module is pure: it parses, verifies and signs bytes. Which sequence was accepted last,
and what an accepted feed changes, is :mod:`qrc.monitor.feed`'s business.

Every refusal is one :class:`FeedRefused` with a ``reason`` from :data:`REASONS`; nothing
inside ``feed`` is interpreted before its signature has verified.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qrc.crypto.base import SigningKey, VerifyingKey
from qrc.crypto.errors import KeyFormatError, UnsupportedAlgorithm
from qrc.crypto.keyfile import load_public_der, load_public_pem, public_key_to_der
from qrc.crypto.registry import Kind, Status, get_info

__all__ = [
    "CLOCK_SKEW",
    "CONTEXT",
    "FORMAT",
    "MAX_DOCUMENT",
    "REASONS",
    "SIGNED_TAG",
    "STATUS_RANK",
    "Advisory",
    "AlgorithmEntry",
    "Feed",
    "FeedRefused",
    "Milestone",
    "Publisher",
    "Transition",
    "VerifiedFeed",
    "canonical",
    "check_sequence",
    "load_publisher",
    "publisher_key_id",
    "sign_feed",
    "verify_document",
]

FORMAT: Final = "qrc-threat-feed"
VERSION: Final = 1
SIGNED_TAG: Final = b"qrc-threat-feed-v1\x00"
CONTEXT: Final = b"qrc-threat-feed"
MAX_DOCUMENT: Final = 1 << 20
MAX_VALIDITY: Final = timedelta(days=400)
CLOCK_SKEW: Final = timedelta(minutes=5)
_MAX_INT: Final = (1 << 53) - 1
_MAX_DEPTH: Final = 8
REASONS: Final = ("malformed", "signature", "not_yet_valid", "expired", "rollback", "replay")
# How strict a status is: a feed only ever moves an algorithm up this scale.
STATUS_RANK: Final[Mapping[str, int]] = {
    Status.ACTIVE.value: 0,
    Status.EXPERIMENTAL.value: 1,
    Status.DEPRECATED.value: 2,
    Status.DISALLOWED.value: 3,
}
SEVERITIES: Final = ("low", "medium", "high", "critical")

_Day = date  # Milestone has a field named ``date``
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TEXT = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$"


class FeedRefused(Exception):
    """The feed is refused; ``reason`` is one of :data:`REASONS`, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"threat feed refused ({reason}): {detail}")
        self.reason, self.detail = reason, detail


# --------------------------------------------------------------------------- schema
_Id = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
_Title = Annotated[str, Field(min_length=1, max_length=300, pattern=_TEXT)]
_Long = Annotated[str, Field(max_length=2000, pattern=_TEXT)]
_Link = Annotated[str, Field(max_length=500, pattern=r"^https://[^\s\x00-\x1f\x7f-\x9f]+$")]
_Date = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
_Time = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$")]
_AlgorithmIds = Annotated[list[_Id], Field(min_length=1, max_length=64)]
_Status = Literal["active", "experimental", "deprecated", "disallowed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, regex_engine="python-re")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date") from None


class AlgorithmEntry(_Strict):
    """A status the feed gives an algorithm now."""

    id: _Id
    status: _Status
    reason: _Long = ""


class Transition(_Strict):
    """A status the listed algorithms take from ``effective`` on (NIST IR 8547's dates)."""

    id: _Id
    title: _Title
    algorithms: _AlgorithmIds
    status: Literal["deprecated", "disallowed"]
    effective: _Date
    source: _Title
    link: _Link | None = None

    @property
    def effective_date(self) -> date:
        return _day(self.effective)


class Milestone(_Strict):
    """A date to show (CNSA 2.0's); it changes nothing by itself."""

    id: _Id
    title: _Title
    date: _Date
    source: _Title
    link: _Link | None = None
    algorithms: list[_Id] = Field(default_factory=list, max_length=64)

    @property
    def day(self) -> _Day:
        return _day(self.date)


class Advisory(_Strict):
    """A published advisory about algorithms."""

    id: _Id
    title: _Title
    severity: Literal["low", "medium", "high", "critical"]
    algorithms: _AlgorithmIds
    published: _Date
    link: _Link
    summary: _Long = ""


def _unique(items: list[Any], what: str, attribute: str = "id") -> None:
    seen: set[str] = set()
    for item in items:
        value = getattr(item, attribute)
        if value in seen:
            raise ValueError(f"{what}: {value!r} appears twice")
        seen.add(value)


class Feed(_Strict):
    """The signed ``feed`` object (``docs/formats.md``, "Threat feed v1")."""

    format: Literal["qrc-threat-feed"]
    version: int  # strict: a JSON true, which equals 1 in Python, is not 1 here
    publisher: Annotated[str, Field(min_length=1, max_length=200, pattern=_TEXT)]
    publisher_key_id: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    sequence: Annotated[int, Field(ge=1, le=_MAX_INT)]
    issued_at: _Time
    expires_at: _Time
    algorithms: list[AlgorithmEntry] = Field(max_length=500)
    transitions: list[Transition] = Field(max_length=200)
    milestones: list[Milestone] = Field(max_length=200)
    advisories: list[Advisory] = Field(max_length=1000)

    @model_validator(mode="after")
    def _consistent(self) -> Feed:
        if self.version != VERSION:
            raise ValueError(f"version {self.version}: this reader knows version {VERSION} only")
        for day in [t.effective for t in self.transitions] + [m.date for m in self.milestones]:
            _day(day)
        for advisory in self.advisories:
            _day(advisory.published)
        issued, expires = self.issued, self.expires
        if not issued < expires:
            raise ValueError("expires_at must be after issued_at")
        if expires - issued > MAX_VALIDITY:
            raise ValueError(f"a feed may be valid for at most {MAX_VALIDITY.days} days")
        _unique(self.algorithms, "algorithms")
        _unique(self.transitions, "transitions")
        _unique(self.milestones, "milestones")
        _unique(self.advisories, "advisories")
        return self

    @property
    def issued(self) -> datetime:
        return _instant(self.issued_at)

    @property
    def expires(self) -> datetime:
        return _instant(self.expires_at)

    def statuses_at(self, day: date) -> dict[str, tuple[str, str]]:
        """Algorithm → (status, why) the feed gives on ``day``: the strictest that holds."""
        out: dict[str, tuple[str, str]] = {}

        def take(algorithm: str, status: str, why: str) -> None:
            held = out.get(algorithm)
            if held is None or STATUS_RANK[status] > STATUS_RANK[held[0]]:
                out[algorithm] = (status, why)

        for entry in self.algorithms:
            take(entry.id, entry.status, entry.reason or f"feed {self.sequence}")
        for transition in self.transitions:
            if transition.effective_date <= day:
                for algorithm in transition.algorithms:
                    take(algorithm, transition.status, f"{transition.id}: {transition.source}")
        return out


def _instant(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 UTC time") from None


# --------------------------------------------------------------------------- publisher keys
@dataclass(frozen=True)
class Publisher:
    """The key a service accepts feeds from: its algorithm and key ID."""

    key: VerifyingKey
    key_id: str

    @property
    def algorithm(self) -> str:
        return self.key.algorithm

    @classmethod
    def of(cls, key: VerifyingKey) -> Publisher:
        """The publisher of ``key`` (an ML-DSA or SLH-DSA public key)."""
        _check_publisher_algorithm(key.algorithm)
        return cls(key, publisher_key_id(key))


def _check_publisher_algorithm(algorithm: str) -> None:
    info = get_info(algorithm, Kind.SIGNATURE)
    if not info.id.startswith(("ML-DSA-", "SLH-DSA-")):
        raise KeyFormatError(f"a feed publisher key must be ML-DSA or SLH-DSA, not {info.id}")


def publisher_key_id(key: VerifyingKey) -> str:
    """SHA-256 (hex) of ``key``'s SPKI DER: the ID a feed names its publisher key by."""
    return hashlib.sha256(public_key_to_der(key)).hexdigest()


def load_publisher(path: Path) -> Publisher:
    """The publisher key in ``path``: SPKI PEM or DER (``docs/formats.md``, "Key files").

    Raises:
        KeyFormatError: not a public key file, or not ML-DSA/SLH-DSA.
        OSError: the file cannot be read.
    """
    data = path.read_bytes()
    if len(data) > 1 << 20:
        raise KeyFormatError(f"{path} is too large to be a public key file")
    loaded = load_public_pem(data) if data.lstrip().startswith(b"-----") else load_public_der(data)
    if not isinstance(loaded, VerifyingKey):
        raise KeyFormatError(f"{path} holds a {loaded.algorithm} key, not a signature key")
    return Publisher.of(loaded)


# --------------------------------------------------------------------------- canonical JSON
def canonical(feed: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of ``feed`` (exact for this format's JSON: see ``docs/formats.md``)."""
    return json.dumps(
        feed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"member {key!r} appears twice")
        if not key.isascii():
            raise ValueError("member names must be ASCII")
        out[key] = value
    return out


def _integer(text: str) -> int:
    if text.startswith("-0"):
        raise ValueError("-0 is not allowed")
    value = int(text)
    if abs(value) > _MAX_INT:
        raise ValueError("integer out of range")
    return value


def _no_float(text: str) -> float:
    raise ValueError(f"numbers must be integers, not {text[:20]}")


def _no_constant(text: str) -> float:
    raise ValueError(f"{text} is not JSON")


def _depth(value: object, level: int = 1) -> int:
    if level > _MAX_DEPTH:
        raise ValueError(f"nested deeper than {_MAX_DEPTH}")
    if isinstance(value, dict):
        return max([_depth(v, level + 1) for v in value.values()], default=level)
    if isinstance(value, list):
        return max([_depth(v, level + 1) for v in value], default=level)
    return level


def parse_json(raw: bytes) -> Any:
    """Strict JSON (no duplicate members, integers only, bounded); raises ``malformed``."""
    if len(raw) > MAX_DOCUMENT:
        raise FeedRefused("malformed", f"larger than {MAX_DOCUMENT} bytes")
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_pairs,
            parse_int=_integer,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
        _depth(value)
        if isinstance(value, dict):
            canonical(value)  # a lone surrogate (\ud800) cannot be encoded: refused here
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise FeedRefused("malformed", f"not valid JSON for a feed: {str(exc)[:200]}") from None
    return value


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "feed"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


# --------------------------------------------------------------------------- verify and sign
@dataclass(frozen=True)
class VerifiedFeed:
    """A feed whose signature verified and whose content follows the format."""

    feed: Feed
    document: bytes
    digest: str  # SHA-256 (hex) of the signed document's bytes


def verify_document(raw: bytes, publisher: Publisher, now: datetime) -> VerifiedFeed:
    """Check a signed document (rules 1-4 of "Reading rules"; the sequence is the caller's).

    Raises:
        FeedRefused: with the reason of the first rule that fails.
    """
    document = parse_json(raw)
    if not isinstance(document, dict) or set(document) != {"feed", "signature"}:
        raise FeedRefused("malformed", "the document must be exactly {feed, signature}")
    body, signature = document["feed"], document["signature"]
    if not isinstance(body, dict):
        raise FeedRefused("malformed", "feed must be an object")
    if not isinstance(signature, dict) or set(signature) != {"algorithm", "value"}:
        raise FeedRefused("malformed", "signature must be exactly {algorithm, value}")
    algorithm, value = signature["algorithm"], signature["value"]
    if not isinstance(algorithm, str) or not isinstance(value, str):
        raise FeedRefused("malformed", "signature algorithm and value must be strings")
    if algorithm != publisher.algorithm:
        raise FeedRefused(
            "signature",
            f"signed with {algorithm[:64]!r}; the publisher key is {publisher.algorithm}",
        )
    try:
        signature_bytes = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise FeedRefused("signature", "the signature value is not base64") from None
    if not publisher.key.is_valid(signature_bytes, SIGNED_TAG + canonical(body), CONTEXT):
        raise FeedRefused(
            "signature", "the signature does not verify under the configured publisher key"
        )
    try:
        feed = Feed.model_validate(body)
    except ValidationError as exc:
        raise FeedRefused("malformed", _describe(exc)) from None
    if feed.publisher_key_id != publisher.key_id:
        raise FeedRefused("malformed", "publisher_key_id does not name the configured key")
    if feed.issued > now + CLOCK_SKEW:
        raise FeedRefused("not_yet_valid", f"issued_at {feed.issued_at} is in the future")
    if feed.expires <= now:
        raise FeedRefused("expired", f"the feed expired at {feed.expires_at}")
    return VerifiedFeed(feed, raw, hashlib.sha256(raw).hexdigest())


def check_sequence(feed: Feed, last: int) -> None:
    """Refuse ``feed`` unless its sequence is above ``last`` (the last accepted one)."""
    if feed.sequence < last:
        raise FeedRefused("rollback", f"sequence {feed.sequence} is older than the accepted {last}")
    if feed.sequence == last:
        raise FeedRefused("replay", f"sequence {feed.sequence} was accepted already")


def sign_feed(feed: Mapping[str, Any], key: SigningKey) -> bytes:
    """The signed document of ``feed`` (checked against the format first), as JSON bytes.

    ``format``, ``version`` and ``publisher_key_id`` are filled in when absent.

    Raises:
        ValueError: the feed does not follow the format (the message says where).
        KeyFormatError: ``key`` is not ML-DSA or SLH-DSA.
    """
    _check_publisher_algorithm(key.algorithm)
    body = {"format": FORMAT, "version": VERSION, **feed}
    body.setdefault("publisher_key_id", publisher_key_id(key.public_key()))
    for name in ("algorithms", "transitions", "milestones", "advisories"):
        body.setdefault(name, [])
    # The same checks a reader makes, so that nothing a reader refuses is ever signed.
    parse_json(canonical(body))
    try:
        Feed.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"the feed does not follow the format: {_describe(exc)}") from None
    if body["publisher_key_id"] != publisher_key_id(key.public_key()):
        raise ValueError("publisher_key_id names another key than the signing key")
    signature = key.sign(SIGNED_TAG + canonical(body), CONTEXT)
    document = {
        "feed": body,
        "signature": {
            "algorithm": key.algorithm,
            "value": base64.b64encode(signature).decode("ascii"),
        },
    }
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def known_algorithm(name: str) -> str | None:
    """The registry's ID for ``name``, or None if this version does not know it."""
    try:
        return get_info(name).id
    except UnsupportedAlgorithm:
        return None


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (for callers that echo feed text)."""
    return bool(_CONTROL.search(text))
