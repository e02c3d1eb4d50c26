"""A live inventory of the service's cryptographic assets.

Built only through the key service's public collaborators (``service.keys``,
``service.data``, ``service.audit``, ``service.custody_health``) and the files the operator
names: keys with their algorithm, NIST category, state, age, custody and last audited
activity; the certificates of the data directory's ``tls/``; TLS handshakes the listener
counted (when it runs in this process) and classical handshakes the audit trail recorded;
encrypted objects of the encrypted-data index counted by key, algorithm and data type; and
classical assets found in scanned PEM bundles and key files.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qrc.crypto.errors import UnsupportedAlgorithm
from qrc.crypto.registry import AlgorithmInfo, get_info
from qrc.keys.audit.events import EventType
from qrc.keys.context import SYSTEM_LABEL
from qrc.monitor.endpoints import EndpointProbe, probe_endpoint
from qrc.monitor.scan import FoundAsset, scan_file, scan_paths
from qrc.transit.tls import is_pq_group

if TYPE_CHECKING:
    from qrc.keys.service import KeyService
    from qrc.transit.listener import HandshakeCounters

__all__ = ["AlgorithmUse", "Handshakes", "Inventory", "KeyAsset", "ObjectCount", "build_inventory"]

_PAGE = 1000
_TLS_FILES = ("ca.pem", "server.pem", "ca-ecdsa.pem", "server-ecdsa.pem")


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


@dataclass(frozen=True)
class KeyAsset:
    """One managed key, as the inventory shows it (no key material)."""

    id: str
    name: str
    algorithm: str
    purpose: str
    state: str
    version: int
    nist_level: int | None
    algorithm_status: str
    quantum_safe: bool
    custody: str
    created_at: datetime.datetime
    age_days: float
    expires_at: datetime.datetime | None
    last_activity_at: datetime.datetime | None
    system: bool

    @property
    def deprecated(self) -> bool:
        return self.algorithm_status in ("deprecated", "disallowed")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"deprecated": self.deprecated}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = _iso(value) if isinstance(value, datetime.datetime) else value
        return out


@dataclass(frozen=True)
class ObjectCount:
    """Encrypted objects in the index under one key, algorithm and data type."""

    key_id: str
    key_name: str
    algorithm: str
    data_type: str
    count: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Handshakes:
    """TLS handshakes: counted by the listener in this process, or recorded in the audit trail."""

    tls_mode: str | None = None
    """The listener's TLS mode (``pq-only``, ``hybrid``...): the serving one, else the policy's."""
    completed: dict[tuple[str, str, str], int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    classical_events: int = 0
    refused_events: int = 0

    @property
    def classical_share(self) -> float | None:
        total = sum(self.completed.values())
        if not total:
            return None
        classical = sum(n for (g, _s, _c), n in self.completed.items() if not is_pq_group(g))
        return classical / total

    def as_dict(self) -> dict[str, Any]:
        return {
            "tls_mode": self.tls_mode,
            "completed": [
                {
                    "group": g,
                    "signature": s,
                    "certificate": c,
                    "count": n,
                    "post_quantum": is_pq_group(g),
                }
                for (g, s, c), n in sorted(self.completed.items())
            ],
            "refused": dict(sorted(self.refused.items())),
            "classical_share": self.classical_share,
            "audited_classical_handshakes": self.classical_events,
            "audited_refused_handshakes": self.refused_events,
        }


@dataclass(frozen=True)
class AlgorithmUse:
    """An algorithm in use anywhere in the inventory, with its registry entry if it has one."""

    id: str
    info: AlgorithmInfo | None
    keys: int = 0
    certificates: int = 0
    objects: int = 0
    found: int = 0

    @property
    def quantum_safe(self) -> bool:
        return self.info is not None and self.info.quantum_safe

    def as_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "id": self.id,
            "kind": info.kind.value if info else None,
            "family": info.family.value if info else "classical",
            "nist_level": info.nist_level if info else None,
            "status": info.status.value if info else "unregistered",
            "standard": info.standard if info else None,
            "oid": info.oid if info else None,
            "quantum_safe": self.quantum_safe,
            "keys": self.keys,
            "certificates": self.certificates,
            "objects": self.objects,
            "found": self.found,
        }


@dataclass(frozen=True)
class Inventory:
    """Everything the inventory found, at one moment."""

    generated_at: datetime.datetime
    keys: list[KeyAsset]
    certificates: list[FoundAsset]
    objects: list[ObjectCount]
    handshakes: Handshakes
    found: list[FoundAsset]
    custody: str
    endpoints: list[EndpointProbe] = field(default_factory=list)

    def algorithms(self) -> list[AlgorithmUse]:
        """Each algorithm in use, with how many keys, certificates, objects use it."""
        counts: dict[str, Counter[str]] = {}

        def add(algorithm: str, what: str, n: int = 1) -> None:
            counts.setdefault(algorithm, Counter())[what] += n

        for key in self.keys:
            add(key.algorithm, "keys")
        for cert in self.certificates:
            add(cert.algorithm, "certificates")
        for obj in self.objects:
            add(obj.algorithm, "objects", obj.count)
        for asset in self.found:
            add(asset.algorithm, "found")
        return [AlgorithmUse(name, _info(name), **dict(c)) for name, c in sorted(counts.items())]

    @property
    def classical_found(self) -> list[FoundAsset]:
        return [a for a in self.found + self.certificates if a.classical]

    def summary(self) -> dict[str, Any]:
        return {
            "keys": len(self.keys),
            "deprecated_keys": sum(k.deprecated for k in self.keys),
            "classical_keys": sum(not k.quantum_safe for k in self.keys),
            "certificates": len(self.certificates),
            "encrypted_objects": sum(o.count for o in self.objects),
            "classical_assets_found": len(self.classical_found),
            "classical_endpoints": sum(not e.post_quantum for e in self.endpoints),
            "handshake_classical_share": self.handshakes.classical_share,
        }

    def as_dict(self) -> dict[str, Any]:
        """The inventory as JSON-ready data (the ``json`` format)."""
        return {
            "generated_at": self.generated_at.isoformat(),
            "custody": self.custody,
            "summary": self.summary(),
            "algorithms": [a.as_dict() for a in self.algorithms()],
            "keys": [k.as_dict() for k in self.keys],
            "certificates": [c.as_dict() for c in self.certificates],
            "encrypted_objects": [o.as_dict() for o in self.objects],
            "tls": self.handshakes.as_dict(),
            "found": [a.as_dict() for a in self.found],
            "endpoints": [e.as_dict() for e in self.endpoints],
        }


def _info(algorithm: str) -> AlgorithmInfo | None:
    try:
        return get_info(algorithm)
    except UnsupportedAlgorithm:
        return None


def _all_keys(service: KeyService) -> list[Any]:
    keys, after = [], None
    while True:
        page, after = service.keys.list_keys(limit=_PAGE, after=after)
        keys.extend(page)
        if after is None:
            return keys


def _last_activity(service: KeyService, key_id: str) -> datetime.datetime | None:
    events, _ = service.audit.query(key=key_id, limit=1, descending=True)
    return events[0].at if events else None


def _key_asset(service: KeyService, key: Any, custody: str, now: datetime.datetime) -> KeyAsset:
    info = _info(key.algorithm)
    return KeyAsset(
        id=key.id,
        name=key.name,
        algorithm=key.algorithm,
        purpose=key.purpose,
        state=key.status,
        version=key.version,
        nist_level=info.nist_level if info else None,
        algorithm_status=info.status.value if info else "unregistered",
        quantum_safe=info is not None and info.quantum_safe,
        custody=custody,
        created_at=key.created_at,
        age_days=round((now - key.created_at).total_seconds() / 86400, 3),
        expires_at=key.expires_at,
        last_activity_at=_last_activity(service, key.id),
        system=SYSTEM_LABEL in (key.labels or {}),
    )


def _objects(service: KeyService, keys: Sequence[KeyAsset]) -> list[ObjectCount]:
    out = []
    for key in keys:
        counts: Counter[tuple[str, str]] = Counter()
        after = 0
        while True:
            page = service.data.under(key.id, after=after, limit=_PAGE)
            counts.update((r.algorithm, r.data_type or "unknown") for r in page)
            if len(page) < _PAGE:
                break
            after = page[-1].seq
        out += [
            ObjectCount(key.id, key.name, alg, data_type, n)
            for (alg, data_type), n in sorted(counts.items())
        ]
    return out


def _handshakes(
    service: KeyService, counters: HandshakeCounters | None, tls_mode: str | None
) -> Handshakes:
    def audited(event_type: EventType) -> int:
        events, _ = service.audit.query(event_type=event_type.value, limit=1000)
        return len(events)

    if tls_mode is None:
        tls_mode = str(service.current_policy().get("tls_mode") or "") or None
    return Handshakes(
        tls_mode=tls_mode,
        completed=dict(counters.completed) if counters else {},
        refused=dict(counters.refused) if counters else {},
        classical_events=audited(EventType.CLASSICAL_TLS_HANDSHAKE),
        refused_events=audited(EventType.TLS_HANDSHAKE_REFUSED),
    )


def tls_certificates(tls_dir: Path | None) -> list[FoundAsset]:
    """The service's own certificates in ``tls_dir`` (CA roots and server leaves)."""
    if tls_dir is None or not tls_dir.is_dir():
        return []
    seen: set[str | None] = set()
    out = []
    for name in _TLS_FILES:
        path = tls_dir / name
        if path.is_file():
            for asset in scan_file(path):
                if asset.kind == "certificate" and asset.fingerprint not in seen:
                    seen.add(asset.fingerprint)
                    out.append(asset)
    return out


def build_inventory(
    service: KeyService,
    *,
    tls_dir: Path | None = None,
    scan: Iterable[str | Path] = (),
    endpoints: Iterable[str] = (),
    counters: HandshakeCounters | None = None,
    tls_mode: str | None = None,
    now: datetime.datetime | None = None,
) -> Inventory:
    """Inventory the running service, its ``tls_dir`` and the paths in ``scan``.

    ``endpoints`` (``host:port``) are probed with one TLS handshake each; the certificates
    they present join the found assets. ``counters`` are the listener's handshake counters
    when it runs in this process; ``tls_mode`` the mode it serves (by default the policy's).
    """
    now = now or service.clock()
    custody = service.custody_health().custody
    keys = [_key_asset(service, k, custody, now) for k in _all_keys(service)]
    live = [k for k in keys if k.state != "destroyed"]
    probes = [probe_endpoint(endpoint) for endpoint in endpoints]
    return Inventory(
        generated_at=now,
        keys=keys,
        certificates=tls_certificates(tls_dir),
        objects=_objects(service, live),
        handshakes=_handshakes(service, counters, tls_mode),
        found=scan_paths(scan) + [c for p in probes for c in p.certificates],
        custody=custody,
        endpoints=probes,
    )
