"""The live state a compliance report is evaluated from, gathered once per report.

Everything comes through the key service's public collaborators and the inventory
(:mod:`qrc.monitor.inventory`): keys with their cryptoperiods, the stored policy, the
algorithm statuses, the audit chain's full verification (checkpoint signatures and the
witness included), recorded backups, security events, the root KEK's custody and
known-answer tests of the algorithms in use. Nothing here judges; the controls
(:mod:`qrc.monitor.compliance_controls`) do.
"""

from __future__ import annotations

import datetime
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import AlgorithmInfo, Family, Status, get_info
from qrc.crypto.selftest import known_answer_test
from qrc.keys.audit.events import EventType
from qrc.keys.context import SYSTEM_LABEL
from qrc.monitor.inventory import Inventory, build_inventory

if TYPE_CHECKING:
    from qrc.keys.context import KeyInfo
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = [
    "NOT_RUN",
    "AuditFacts",
    "BackupFacts",
    "Facts",
    "KeyFacts",
    "gather_facts",
    "info_of",
    "parameter_set",
]

_PAGE = 1000
_EVENTS = 1000
LIVE_STATES = ("pre_active", "active", "suspended")
NOT_RUN = "not run: "
"""How a self-test result that was not run begins (``"ok"`` when it ran and passed)."""


def parameter_set(algorithm: str, standard: str) -> str | None:
    """The FIPS ``standard`` parameter set ``algorithm`` is or contains (hybrids included)."""
    folded = algorithm.upper().replace("-", "")
    if standard == "FIPS 203":
        for size in ("512", "768", "1024"):
            if f"MLKEM{size}" in folded:
                return f"ML-KEM-{size}"
    elif standard == "FIPS 204":
        for level in ("44", "65", "87"):
            if f"MLDSA{level}" in folded:
                return f"ML-DSA-{level}"
    elif standard == "FIPS 205" and folded.startswith("SLHDSA"):
        return algorithm
    return None


def info_of(algorithm: str) -> AlgorithmInfo | None:
    """The registry entry of ``algorithm``, or ``None`` for one it does not know."""
    try:
        return get_info(algorithm)
    except UnsupportedAlgorithm:
        return None


@dataclass(frozen=True)
class KeyFacts:
    """One managed key as the controls need it (never key material)."""

    id: str
    name: str
    algorithm: str
    purpose: str
    state: str
    status: str
    """The algorithm's status (active, experimental, deprecated, disallowed, unregistered)."""
    family: str
    kind: str | None
    quantum_safe: bool
    system: bool
    version: int
    rotation_period_days: float | None
    primary_age_days: float
    """Days since the primary version was made (the last rotation, else creation)."""
    expires_at: datetime.datetime | None
    destruction_due_at: datetime.datetime | None
    objects: int

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    def ref(self) -> dict[str, Any]:
        """A short reference for evidence lists."""
        return {"id": self.id, "name": self.name, "algorithm": self.algorithm, "state": self.state}


@dataclass(frozen=True)
class AuditFacts:
    """The audit chain's full verification, and what backs it outside the database."""

    valid: bool
    events: int
    reason: str
    first_bad_event: int | None
    checkpoints_verified: int
    last_checkpoint_seq: int | None
    witnessed_seq: int | None
    witness_configured: bool
    uncheckpointed_events: int
    anchor_fingerprint: str | None


@dataclass(frozen=True)
class BackupFacts:
    """Backups recorded in the audit chain (``backup.create`` events)."""

    count: int
    latest_at: datetime.datetime | None = None
    latest_id: str | None = None
    thresholds: list[tuple[int, int]] = field(default_factory=list)
    """(k, n) of each recorded backup's Shamir split, newest first."""


@dataclass(frozen=True)
class Facts:
    """Everything a report is evaluated from, at one moment."""

    now: datetime.datetime
    inventory: Inventory
    keys: list[KeyFacts]
    policy: dict[str, Any]
    tls_mode: str | None
    custody: str
    custody_state: str
    custody_detail: str
    kek_id: str | None
    audit: AuditFacts
    backups: BackupFacts
    selftests: dict[str, str]
    """Algorithm → ``"ok"`` or why its known-answer test failed, for each algorithm in use."""
    floor: dict[str, str]
    """Algorithms disallowed in this process because their power-on self-test failed."""
    security_events: dict[str, int]

    @property
    def live_keys(self) -> list[KeyFacts]:
        return [k for k in self.keys if k.live]

    def algorithms_in_use(self) -> set[str]:
        """The algorithms of live keys and the policy's defaults."""
        used = {k.algorithm for k in self.live_keys}
        used.update(str(a) for a in (self.policy.get("default_algorithms") or {}).values())
        return used


def _all_keys(service: KeyService) -> list[KeyInfo]:
    keys: list[KeyInfo] = []
    after = None
    while True:
        page, after = service.keys.list_keys(limit=_PAGE, after=after)
        keys.extend(page)
        if after is None:
            return keys


def _primary_made(service: KeyService, key: KeyInfo) -> datetime.datetime:
    if key.version <= 1:
        return key.created_at
    events, _ = service.audit.query(key=key.id, event_type="key.rotate", limit=1, descending=True)
    return events[0].at if events else key.created_at


def _key_facts(
    service: KeyService, key: KeyInfo, objects: dict[str, int], now: datetime.datetime
) -> KeyFacts:
    info = info_of(key.algorithm)
    period = key.rotation_period_seconds
    made = _primary_made(service, key)
    return KeyFacts(
        id=key.id,
        name=key.name,
        algorithm=key.algorithm,
        purpose=key.purpose,
        state=key.status,
        status=info.status.value if info else "unregistered",
        family=info.family.value if info else Family.CLASSICAL.value,
        kind=info.kind.value if info else None,
        quantum_safe=info is not None and info.quantum_safe,
        system=SYSTEM_LABEL in (key.labels or {}),
        version=key.version,
        rotation_period_days=None if period is None else period / 86400,
        primary_age_days=round((now - made).total_seconds() / 86400, 3),
        expires_at=key.expires_at,
        destruction_due_at=key.destruction_due_at,
        objects=objects.get(key.id, 0),
    )


# service → (monotonic time, facts) of its latest full audit verification, for callers that
# accept a recent one (the dashboard's summary): a verification reads the whole chain, and
# records a failure as a security event, which should not happen on every dashboard poll.
_VERIFIED: weakref.WeakKeyDictionary[KeyService, tuple[float, AuditFacts]] = (
    weakref.WeakKeyDictionary()
)
_VERIFIED_LOCK = threading.Lock()


def _audit(service: KeyService, max_age: float) -> AuditFacts:
    if max_age > 0:
        with _VERIFIED_LOCK:
            cached = _VERIFIED.get(service)
        if cached is not None and time.monotonic() - cached[0] <= max_age:
            return cached[1]
    facts = _verify(service)
    with _VERIFIED_LOCK:
        _VERIFIED[service] = (time.monotonic(), facts)
    return facts


def _verify(service: KeyService) -> AuditFacts:
    report = service.audit.verify()
    witness = service.audit.witness
    try:
        fingerprint: str | None = service.audit.anchor_fingerprint()
    except Exception:  # nothing pinned and no audit key yet: nothing to fingerprint
        fingerprint = None
    return AuditFacts(
        valid=report.valid,
        events=report.events,
        reason=report.reason,
        first_bad_event=report.first_bad_event,
        checkpoints_verified=report.checkpoints_verified,
        last_checkpoint_seq=report.last_checkpoint_seq,
        witnessed_seq=report.witnessed_seq,
        witness_configured=witness is not None,
        uncheckpointed_events=service.audit.moved(),
        anchor_fingerprint=fingerprint,
    )


def _backups(service: KeyService) -> BackupFacts:
    events, _ = service.audit.query(event_type="backup.create", limit=_EVENTS, descending=True)
    if not events:
        return BackupFacts(0)
    splits = []
    for event in events:
        details = event.details if isinstance(event.details, dict) else {}
        splits.append((int(details.get("threshold", 0)), int(details.get("shares", 0))))
    latest = events[0].details if isinstance(events[0].details, dict) else {}
    return BackupFacts(len(events), events[0].at, latest.get("backup_id"), splits)


def _selftests(algorithms: Iterable[str]) -> dict[str, str]:
    results = {}
    for algorithm in sorted(algorithms):
        info = info_of(algorithm)
        if info is None:
            results[algorithm] = NOT_RUN + "not registered"
            continue
        if info.status is Status.DISALLOWED:  # nothing may run it, a known-answer test neither
            results[algorithm] = NOT_RUN + "disallowed"
            continue
        try:
            known_answer_test(info.id)
            results[algorithm] = "ok"
        except Exception as exc:  # any failure is the finding, whatever its class
            results[algorithm] = f"{type(exc).__name__}: {exc}"[:200]
    return results


def _security_events(service: KeyService) -> dict[str, int]:
    counts = {}
    for event_type in (
        EventType.KEY_COMPROMISE,
        EventType.AUDIT_VERIFICATION_FAILURE,
        EventType.CLASSICAL_TLS_HANDSHAKE,
        EventType.TLS_HANDSHAKE_REFUSED,
        EventType.HSM_OFFLINE,
    ):
        counts[event_type.value] = len(
            service.audit.security_events(event_type=event_type.value, limit=_EVENTS)
        )
    return counts


def gather_facts(
    service: KeyService,
    *,
    tls_dir: Path | None = None,
    scan: Iterable[str | Path] = (),
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    now: datetime.datetime | None = None,
    audit_max_age: float = 0.0,
    inventory: Inventory | None = None,
) -> Facts:
    """Read the live state once: the inventory, keys, policy, audit, backups, self-tests.

    ``inventory``: one already built for ``now`` (the dashboard builds one for all its
    parts); otherwise it is built here with the other arguments.

    The audit chain is verified in full unless a verification of this service at most
    ``audit_max_age`` seconds old is at hand (0, the default: always verify).

    ``now`` moves the report's clock (transition dates are judged against it); the
    inventory's ages use it too. Verifying the audit chain reads the whole chain.
    """
    now = now or service.clock()
    if inventory is None:
        inventory = build_inventory(
            service, tls_dir=tls_dir, scan=scan, counters=counters, tls_mode=tls_mode, now=now
        )
    objects: dict[str, int] = {}
    for count in inventory.objects:
        objects[count.key_id] = objects.get(count.key_id, 0) + count.count
    keys = [_key_facts(service, k, objects, now) for k in _all_keys(service)]
    health = service.custody_health()
    policy = service.current_policy()
    in_use = {k.algorithm for k in keys if k.live}
    in_use.update(str(a) for a in (policy.get("default_algorithms") or {}).values())
    # The ML-KEM and ML-DSA halves of hybrids, composites and TLS groups are tested too.
    groups = {g for (g, _s, _c) in inventory.handshakes.completed}
    in_use.update(
        p
        for a in in_use | groups
        for std in ("FIPS 203", "FIPS 204")
        if (p := parameter_set(a, std))
    )
    return Facts(
        now=now,
        inventory=inventory,
        keys=keys,
        policy=policy,
        tls_mode=inventory.handshakes.tls_mode,
        custody=health.custody,
        custody_state=health.state.value,
        custody_detail=health.detail,
        kek_id=health.kek_id,
        audit=_audit(service, audit_max_age),
        backups=_backups(service),
        selftests=_selftests(in_use),
        floor=service.policy.floor,
        security_events=_security_events(service),
    )
