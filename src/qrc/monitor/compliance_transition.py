"""Checks of the quantum transition: KEMs, hybrids, transit, transition dates, inventory.

The key-management checks are in :mod:`qrc.monitor.compliance_checks`; these look at which
algorithms protect data and channels, against SP 800-208, SP 800-227, NIST IR 8547,
CNSA 2.0, ETSI TS 103 744 and the transit and inventory rules of PCI DSS, DORA and GDPR.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from qrc.crypto.registry import Family, Kind
from qrc.monitor.cbom import to_bom
from qrc.monitor.compliance_checks import (
    CERT_RENEWAL_DAYS,
    IR8547_DEPRECATED_AFTER,
    IR8547_DISALLOWED_AFTER,
    LIST_LIMIT,
    Finding,
    Outcome,
    parameter_set,
    refs,
    user_keys,
    verdict,
)
from qrc.monitor.compliance_facts import Facts, info_of
from qrc.transit.tls import is_pq_group

__all__ = [
    "CNSA_ALGORITHMS",
    "STATEFUL_HBS_PREFIXES",
    "at_rest_and_in_transit",
    "certificate_register",
    "cnsa_algorithms",
    "cnsa_tls",
    "data_encryption",
    "hybrid_key_exchange",
    "inventory_complete",
    "kem_algorithms",
    "quantum_vulnerable",
    "stateful_hbs",
    "transit",
]

STATEFUL_HBS_PREFIXES = ("LMS", "HSS", "XMSS")
# CNSA 2.0's public-key and symmetric choices as registry IDs; a hybrid counts when its
# post-quantum half is one of them (noted as hybrid in the evidence).
CNSA_ALGORITHMS = frozenset({"ML-KEM-1024", "ML-DSA-87", "AES-256-GCM"})
_CNSA_COMPONENTS = frozenset({"ML-KEM-1024", "ML-DSA-87"})


def _handshake_groups(facts: Facts) -> Counter[str]:
    groups: Counter[str] = Counter()
    for (group, _sig, _cert), n in facts.inventory.handshakes.completed.items():
        groups[group] += n
    return groups


def _classical_seen(facts: Facts) -> int:
    """Classical handshakes: counted by the listener here, or recorded in the audit trail.

    The larger of the two, not their sum: a listener in this process does both.
    """
    groups = _handshake_groups(facts)
    counted = sum(n for g, n in groups.items() if not is_pq_group(g))
    return max(counted, facts.inventory.handshakes.classical_events)


def stateful_hbs(facts: Facts) -> Finding:
    """SP 800-208: stateful hash-based signatures only with keys in a hardware module."""
    found = sorted(
        {
            a.id
            for a in facts.inventory.algorithms()
            if a.id.upper().startswith(STATEFUL_HBS_PREFIXES)
        }
    )
    evidence = {"stateful_algorithms": found, "custody": facts.custody}
    if not found:
        return Finding(
            Outcome.NOT_APPLICABLE,
            "no LMS, HSS or XMSS key or certificate is in the inventory (SLH-DSA is stateless)",
            evidence,
        )
    return verdict(
        facts.custody != "pkcs11",
        f"{', '.join(found)} in use without an HSM (SP 800-208 requires key and signature "
        "generation in a hardware module)",
        f"{', '.join(found)} in use with custody in an HSM",
        evidence,
    )


def kem_algorithms(facts: Facts) -> Finding:
    """SP 800-227: KEM keys use approved, active KEMs; classical KEMs only inside a hybrid."""
    kems = [k for k in facts.live_keys if k.kind == Kind.KEM.value]
    if not kems and not facts.inventory.handshakes.completed:
        return Finding(Outcome.NOT_APPLICABLE, "no KEM key and no observed key exchange")
    bad = [
        k
        for k in kems
        if k.status in ("deprecated", "disallowed", "unregistered") or not k.quantum_safe
    ]
    evidence = {
        "kem_keys": dict(sorted(Counter(f"{k.algorithm} ({k.status})" for k in kems).items())),
        "hybrid_kem_keys": sum(k.family == Family.HYBRID.value for k in kems),
        "unfit": refs(bad),
        "tls_groups": dict(sorted(_handshake_groups(facts).items())),
    }
    return verdict(
        bool(bad),
        f"{len(bad)} KEM key(s) use a classical, deprecated or disallowed KEM",
        f"{len(kems)} KEM key(s), all of approved post-quantum or hybrid KEMs",
        evidence,
    )


def quantum_vulnerable(facts: Facts) -> Finding:
    """NIST IR 8547: quantum-vulnerable assets, against the 2030 and 2035 dates."""
    inv = facts.inventory
    keys = [k for k in user_keys(facts) if not k.quantum_safe]
    certs = [c for c in inv.certificates + inv.found if c.classical]
    endpoints = [e for e in inv.endpoints if not e.post_quantum]
    classical_handshakes = _classical_seen(facts)
    others = len(certs) + len(endpoints) + classical_handshakes
    evidence: dict[str, Any] = {
        "deprecated_after": IR8547_DEPRECATED_AFTER.date().isoformat(),
        "disallowed_after": IR8547_DISALLOWED_AFTER.date().isoformat(),
        "days_to_deprecation": (IR8547_DEPRECATED_AFTER - facts.now).days,
        "days_to_disallowance": (IR8547_DISALLOWED_AFTER - facts.now).days,
        "classical_keys": refs(keys),
        "classical_certificates": [
            {"path": c.path, "algorithm": c.algorithm, "subject": c.subject}
            for c in certs[:LIST_LIMIT]
        ],
        "classical_endpoints": [e.endpoint for e in endpoints[:LIST_LIMIT]],
        "classical_handshakes": classical_handshakes,
    }
    if keys:
        return Finding(
            Outcome.FAIL,
            f"{len(keys)} managed key(s) rely on a quantum-vulnerable algorithm alone",
            evidence,
        )
    if others and facts.now > IR8547_DISALLOWED_AFTER:
        return Finding(
            Outcome.FAIL,
            f"{others} quantum-vulnerable asset(s) in use after the 2035 disallowance",
            evidence,
        )
    if others and facts.now > IR8547_DEPRECATED_AFTER:
        return Finding(
            Outcome.FAIL,
            f"{others} quantum-vulnerable asset(s) in use after the 2030 deprecation",
            evidence,
        )
    return Finding(
        Outcome.PASS,
        "no managed key relies on a quantum-vulnerable algorithm alone"
        + (f"; {others} classical asset(s) to migrate before 2030" if others else ""),
        evidence,
    )


def _cnsa_ok(algorithm: str) -> bool:
    if algorithm in CNSA_ALGORITHMS:
        return True
    info = info_of(algorithm)
    if info is None or info.family != Family.HYBRID:
        return False
    return any(parameter_set(algorithm, s) in _CNSA_COMPONENTS for s in ("FIPS 203", "FIPS 204"))


def cnsa_algorithms(facts: Facts) -> Finding:
    """CNSA 2.0: keys and policy defaults use ML-KEM-1024, ML-DSA-87 and AES-256."""
    used = {k.algorithm for k in user_keys(facts)}
    used.update(str(a) for a in (facts.policy.get("default_algorithms") or {}).values())
    outside = sorted(a for a in used if not _cnsa_ok(a))
    keys = [k for k in user_keys(facts) if not _cnsa_ok(k.algorithm)]
    evidence = {
        "algorithms_in_use": sorted(used),
        "outside_cnsa_2_0": outside,
        "keys_outside": refs(keys),
        "hybrids_counted": sorted(a for a in used if _cnsa_ok(a) and a not in CNSA_ALGORITHMS),
    }
    return verdict(
        bool(outside),
        f"{len(outside)} algorithm(s) in use are outside CNSA 2.0: {', '.join(outside)}",
        "every key and default uses a CNSA 2.0 algorithm",
        evidence,
    )


def cnsa_tls(facts: Facts) -> Finding:
    """CNSA 2.0: TLS key establishment by ML-KEM-1024 (web and cloud: exclusively by 2033)."""
    groups = _handshake_groups(facts)
    evidence = {
        "tls_groups": dict(sorted(groups.items())),
        "tls_mode": facts.tls_mode,
        "exclusive_by": "2033",
    }
    if not groups:
        return Finding(
            Outcome.MANUAL,
            "no handshake observed by this process: check the listener's groups "
            "(GET /inventory on the serving node)",
            evidence,
        )
    weaker = sorted(g for g in groups if "1024" not in g)
    return verdict(
        bool(weaker),
        f"handshakes used {', '.join(weaker)} (CNSA 2.0 asks for ML-KEM-1024)",
        "every observed handshake used an ML-KEM-1024 group",
        evidence,
    )


def hybrid_key_exchange(facts: Facts) -> Finding:
    """ETSI TS 103 744: key establishment is hybrid (ECDH + ML-KEM) during the transition."""
    default = str((facts.policy.get("default_algorithms") or {}).get("encryption", ""))
    info = info_of(default)
    groups = _handshake_groups(facts)
    evidence = {
        "default_encryption_algorithm": default,
        "default_family": info.family.value if info else None,
        "tls_groups": dict(sorted(groups.items())),
        "classical_handshakes": _classical_seen(facts),
    }
    if info is None or not info.quantum_safe or _classical_seen(facts):
        return Finding(
            Outcome.FAIL,
            "key establishment without a post-quantum component is in "
            "use (default or observed handshakes)",
            evidence,
        )
    if info.family != Family.HYBRID:
        return Finding(
            Outcome.NOT_APPLICABLE,
            f"the default KEM {default} is pure post-quantum, not hybrid",
            evidence,
        )
    return Finding(
        Outcome.PASS,
        f"hybrid key establishment: {default} by default"
        + (f"; TLS groups {', '.join(sorted(groups))}" if groups else ""),
        evidence,
    )


def transit(facts: Facts) -> Finding:
    """PCI DSS 4.2.1 / DORA: the listener negotiates post-quantum key exchange only."""
    mode = facts.tls_mode
    classical = _classical_seen(facts)
    evidence = {
        "tls_mode": mode,
        "tls_groups": dict(sorted(_handshake_groups(facts).items())),
        "classical_handshakes": classical,
        "refused_handshakes": facts.inventory.handshakes.refused_events,
        "classical_share": facts.inventory.handshakes.classical_share,
    }
    if mode not in ("pq-only", "hybrid-preferred"):
        return Finding(Outcome.FAIL, f"unknown TLS mode {mode!r}", evidence)
    return verdict(
        classical > 0,
        f"{mode}: {classical} handshake(s) without post-quantum key exchange were accepted",
        f"{mode}: TLS 1.3 with post-quantum key exchange; no classical handshake recorded",
        evidence,
    )


def inventory_complete(facts: Facts) -> Finding:
    """PCI DSS 12.3.3: an up-to-date inventory (the CBOM), every algorithm's viability known."""
    inv = facts.inventory
    bom = to_bom(inv)
    uses = inv.algorithms()
    unknown = sorted(u.id for u in uses if u.info is None)
    evidence = {
        "cbom_components": len(bom.components),
        "algorithms": {u.id: (u.info.status.value if u.info else "unregistered") for u in uses},
        "quantum_vulnerable": sorted(u.id for u in uses if not u.quantum_safe),
        "unregistered": unknown,
        "summary": inv.summary(),
    }
    return verdict(
        bool(unknown),
        f"{len(unknown)} algorithm(s) in use have no tracked status: {', '.join(unknown)}",
        f"CBOM of {len(bom.components)} components; every algorithm's status is tracked",
        evidence,
    )


def certificate_register(facts: Facts) -> Finding:
    """DORA RTS Art. 7(4): certificates are registered and renewed before they expire."""
    certs = [
        c for c in facts.inventory.certificates + facts.inventory.found if c.kind == "certificate"
    ]
    if not certs:
        return Finding(Outcome.NOT_APPLICABLE, "no certificate in the data directory or scans")
    soon = [
        c
        for c in certs
        if c.not_after is not None
        and (c.not_after - facts.now).total_seconds() < CERT_RENEWAL_DAYS * 86400
    ]
    evidence = {
        "certificates": [
            {
                "path": c.path,
                "subject": c.subject,
                "algorithm": c.algorithm,
                "not_after": c.not_after.isoformat() if c.not_after else None,
            }
            for c in certs[:LIST_LIMIT]
        ],
        "expired_or_expiring": [c.subject or c.path for c in soon],
        "renewal_window_days": CERT_RENEWAL_DAYS,
    }
    return verdict(
        bool(soon),
        f"{len(soon)} certificate(s) expired or expire within {CERT_RENEWAL_DAYS:.0f} days",
        f"{len(certs)} certificate(s) registered, none expiring within "
        f"{CERT_RENEWAL_DAYS:.0f} days",
        evidence,
    )


def data_encryption(facts: Facts) -> Finding:
    """GDPR Art. 32(1)(a) / DORA RTS Art. 6(2): indexed data under allowed PQ-safe algorithms."""
    objects = facts.inventory.objects
    if not objects:
        return Finding(
            Outcome.MANUAL,
            "no encrypted object is indexed: the service cannot see data it was not told about",
        )
    by_alg: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for count in objects:
        by_alg[count.algorithm] += count.count
        by_type[count.data_type] += count.count
    weak = {}
    for algorithm, n in by_alg.items():
        info = info_of(algorithm)
        if info is None or info.status.value == "disallowed" or not info.quantum_safe:
            weak[algorithm] = n
    evidence = {
        "encrypted_objects": dict(sorted(by_alg.items())),
        "by_data_type": dict(sorted(by_type.items())),
        "unprotected_objects": weak,
    }
    return verdict(
        bool(weak),
        f"{sum(weak.values())} indexed object(s) are under a disallowed or quantum-vulnerable "
        "algorithm",
        f"{sum(by_alg.values())} indexed object(s), all under allowed post-quantum algorithms",
        evidence,
    )


def at_rest_and_in_transit(facts: Facts) -> Finding:
    """DORA RTS Art. 6(2)(a): data at rest (the index) and in transit (the listener)."""
    rest, moving = data_encryption(facts), transit(facts)
    evidence = {"at_rest": rest.evidence, "in_transit": moving.evidence}
    failed = [f.summary for f in (rest, moving) if f.outcome is Outcome.FAIL]
    if failed:
        return Finding(Outcome.FAIL, "; ".join(failed), evidence)
    return Finding(
        moving.outcome, f"at rest: {rest.summary}; in transit: {moving.summary}", evidence
    )
