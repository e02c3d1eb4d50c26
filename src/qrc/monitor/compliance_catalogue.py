"""The control catalogue: each framework's controls, the check that evaluates each, or none.

A control with a ``check`` is evaluated from live state; one without is a process the code
cannot see (training, penetration tests, supplier management, reporting to regulators): it
is reported as ``manual`` with what an auditor should ask for. ``docs/compliance.md``
carries the same catalogue for readers. References name the clause; titles paraphrase it.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrc.monitor import compliance_checks as k
from qrc.monitor import compliance_transition as t
from qrc.monitor.compliance_checks import Check

__all__ = ["CONTROLS", "FRAMEWORKS", "Control"]

FRAMEWORKS: dict[str, str] = {
    "fips-203": "FIPS 203 (ML-KEM)",
    "fips-204": "FIPS 204 (ML-DSA)",
    "fips-205": "FIPS 205 (SLH-DSA)",
    "sp800-57": "NIST SP 800-57 Part 1 Rev. 5 (key management)",
    "sp800-208": "NIST SP 800-208 (stateful hash-based signatures)",
    "sp800-227": "NIST SP 800-227 (recommendations for KEMs)",
    "nistir-8547": "NIST IR 8547 (transition to post-quantum cryptography, draft)",
    "cnsa-2.0": "NSA CNSA 2.0",
    "etsi-ts-103-744": "ETSI TS 103 744 (quantum-safe hybrid key exchanges)",
    "pci-dss-4.0": "PCI DSS v4.0",
    "dora": "DORA (Regulation (EU) 2022/2554; RTS (EU) 2024/1774)",
    "gdpr": "GDPR Art. 32 (security of processing)",
}


@dataclass(frozen=True)
class Control:
    """One control: where it comes from, how it is checked, what to do when it fails."""

    id: str
    framework: str
    reference: str
    title: str
    check: Check | None
    remediation: str
    limits: str
    """What the automatic check cannot establish (for a manual control: what to show)."""


def _c(
    id: str, reference: str, title: str, check: Check | None, remediation: str, limits: str
) -> Control:
    return Control(id, id.split("/", maxsplit=1)[0], reference, title, check, remediation, limits)


_KAT = "Run `qrc selftest`; replace the failing provider or disallow the algorithm."
_ROTATE = (
    "Rotate the listed keys (`qrc admin keys rotate`); a key without a rotation period is "
    "replaced by one created with `--rotation-days` (the period is set at creation)."
)
_BACKUP = "Run `qrc admin backup -o FILE -k 3 -n 5` (a threshold of at least 2) on a schedule."
_AUDIT = (
    "Investigate at once (docs/incident-response.md): compare with the latest export and the "
    "witness, restore the chain from a backup, find who had database access."
)
_NOT_VALIDATION = (
    "A known-answer test shows the implementation gives the recorded answers; it is not a "
    "CMVP/CAVP validation of the module."
)

CONTROLS: tuple[Control, ...] = (
    _c("fips-203/params", "FIPS 203 §8 (parameter sets)", "ML-KEM parameter sets in use pass "
       "their known-answer tests", k.fips_check("FIPS 203"), _KAT, _NOT_VALIDATION),
    _c("fips-204/params", "FIPS 204 §4 (parameter sets)", "ML-DSA parameter sets in use pass "
       "their known-answer tests", k.fips_check("FIPS 204"), _KAT, _NOT_VALIDATION),
    _c("fips-205/params", "FIPS 205 §11 (parameter sets)", "SLH-DSA parameter sets in use "
       "pass their known-answer tests", k.fips_check("FIPS 205"), _KAT, _NOT_VALIDATION),
    _c("sp800-57/states", "Part 1 §7 (key states)", "Compromised keys protect no data; expired "
       "keys are not active", k.key_states,
       "Rewrap data under the compromised keys (`qrc data rewrap`), then revoke and destroy them.",
       "Only data registered in the encrypted-data index is seen."),
    _c("sp800-57/cryptoperiod", "Part 1 §5.3 (cryptoperiods)", "No key is used past its "
       "cryptoperiod", k.cryptoperiods, _ROTATE,
       "The default maxima are the upper ends of SP 800-57's suggestions; your risk "
       "assessment may call for shorter ones."),
    _c("sp800-57/protection", "Part 1 §6 (protection of keys)", "Private keys are stored "
       "wrapped under a healthy root KEK", k.custody,
       "Bring the KEK back (check the HSM or the sealed KEK file); see docs/operations.md.",
       "Whether the host, the HSM and the passphrase are themselves well protected."),
    _c("sp800-57/destruction", "Part 1 §8 (key destruction)", "Scheduled key destruction "
       "happens when due", k.destruction, "Run the scheduler (`qrc serve` runs it; or "
       "`qrc admin scheduler --once`).",
       "Copies of key material outside the service (old backups)."),
    _c("sp800-57/backup", "Part 1 §8 (key backup and recovery)", "The key store is backed up "
       "recently, split among custodians", k.backups, _BACKUP,
       "That a backup can actually be restored: run a restore drill."),
    _c("sp800-208/stateful", "SP 800-208 (hardware modules for LMS/XMSS)", "Stateful "
       "hash-based signatures (LMS/XMSS) are used only with keys in a hardware module",
       t.stateful_hbs,
       "Move LMS/XMSS keys into a PKCS#11 HSM (QRC_CUSTODY=pkcs11) or stop using them.",
       "State management inside the HSM."),
    _c("sp800-227/kems", "SP 800-227 (approved KEMs, hybrid use)", "KEM keys use approved "
       "post-quantum or hybrid KEMs", t.kem_algorithms,
       "Rotate the listed keys to an active KEM (`qrc admin keys rotate --algorithm`).",
       "How applications use shared secrets outside the service."),
    _c("nistir-8547/transition", "NIST IR 8547 ipd (transition dates)", "No managed key "
       "relies on a quantum-vulnerable algorithm alone; classical assets are migrated before "
       "2030/2035", t.quantum_vulnerable,
       "Rotate classical keys to hybrid or PQ algorithms; reissue classical certificates.",
       "Assets outside the inventory (scan more paths and endpoints with `qrc inventory`)."),
    _c("cnsa-2.0/algorithms", "CNSA 2.0 algorithm suite", "Keys and defaults use ML-KEM-1024, "
       "ML-DSA-87 and AES-256", t.cnsa_algorithms,
       "Only if CNSA 2.0 binds you: set defaults to P384MLKEM1024 / MLDSA87-ECDSA-P384-SHA512 "
       "and rotate keys to them.", "CNSA 2.0 binds national security systems; hybrids are "
       "counted by their post-quantum half."),
    _c("cnsa-2.0/tls", "CNSA 2.0 timeline (web servers, cloud)", "TLS key establishment uses "
       "ML-KEM-1024", t.cnsa_tls, "Serve only ML-KEM-1024 groups on CNSA listeners.",
       "Only handshakes seen by this process are counted."),
    _c("etsi-ts-103-744/hybrid", "ETSI TS 103 744", "Key establishment is hybrid (ECDH + "
       "ML-KEM) during the transition", t.hybrid_key_exchange,
       "Set the default encryption algorithm to X25519MLKEM768 and the TLS mode to pq-only.",
       "The combiners are X-Wing's and TLS 1.3's, not TS 103 744's CatKDF/CasKDF: conformance "
       "to those is not claimed."),
    _c("pci-dss-4.0/3.6.1", "Requirement 3.6.1", "Keys are protected against disclosure and "
       "misuse", k.custody, "Bring the KEK back online; restrict who holds admin tokens.",
       "That procedures are documented and followed; who can reach the host."),
    _c("pci-dss-4.0/3.7.1", "Requirement 3.7.1", "Strong keys are generated", k.disallowed_keys,
       "Rotate the listed keys to an allowed algorithm.",
       "Keys generated outside the service."),
    _c("pci-dss-4.0/3.7.2", "Requirement 3.7.2", "Keys are distributed securely", None,
       "Document how data keys and backup shares reach their holders.",
       "Process: the service never exports managed private keys; data keys handed to callers "
       "are audited. Show the distribution procedure and the audit events."),
    _c("pci-dss-4.0/3.7.3", "Requirement 3.7.3", "Keys are stored securely", k.storage,
       _BACKUP, "Where backup files and shares are kept."),
    _c("pci-dss-4.0/3.7.4", "Requirement 3.7.4", "Keys have a defined cryptoperiod and are "
       "changed at its end", k.defined_cryptoperiods, _ROTATE,
       "Keys managed outside the service."),
    _c("pci-dss-4.0/3.7.5", "Requirement 3.7.5", "Retired, replaced and compromised keys are "
       "out of use; destruction happens", k.retirement,
       "Revoke and rewrap as listed; run the scheduler.", "Copies outside the service."),
    _c("pci-dss-4.0/3.7.6", "Requirement 3.7.6", "Manual key operations use split knowledge "
       "and dual control", k.split_knowledge, _BACKUP,
       "Custodians' handling of their shares."),
    _c("pci-dss-4.0/3.7.7", "Requirement 3.7.7", "Unauthorized key substitution is prevented",
       None, "Restrict key_manager and admin tokens; review key.* audit events.",
       "Process: wrapped keys are bound to key ID and version (a swapped row fails to "
       "unwrap) and every key change is audited; show the review of those events."),
    _c("pci-dss-4.0/3.7.8", "Requirement 3.7.8", "Key custodians acknowledge their "
       "responsibilities", None, "Keep signed custodian acknowledgements.",
       "Process: signed acknowledgements by the share holders and key managers."),
    _c("pci-dss-4.0/4.2.1", "Requirement 4.2.1", "Strong cryptography protects data in "
       "transit", t.transit, "Set the TLS mode to pq-only (`POST /protocols/update`).",
       "Other hops (load balancers, clients) outside the service's listener."),
    _c("pci-dss-4.0/10.3.4", "Requirement 10.3.4", "Audit logs cannot be changed without "
       "detection", k.audit_integrity, _AUDIT,
       "Log retention and review (10.5, 10.4) are process."),
    _c("pci-dss-4.0/12.3.3", "Requirement 12.3.3", "Cipher suites and protocols in use are "
       "inventoried, their viability tracked", t.inventory_complete,
       "Register or replace the listed algorithms; keep the CBOM with the yearly review.",
       "The yearly review and the response plan are process: date and sign the CBOM."),
    _c("dora/rts-6.2", "RTS 2024/1774 Art. 6(2)(a)", "Data at rest and in transit is "
       "encrypted", t.at_rest_and_in_transit, "Rewrap the listed objects under an allowed PQ "
       "key; set the TLS mode to pq-only.",
       "Data the index was not told about; the data classification behind the policy."),
    _c("dora/rts-6.4", "RTS 2024/1774 Art. 6(4)", "Cryptographic technology is updated as "
       "cryptanalysis develops", k.outdated_keys,
       "Plan and run the migration (`qrc admin keys rotate --algorithm`).",
       "Monitoring of cryptanalysis itself (threat feeds, advisories)."),
    _c("dora/rts-7.2", "RTS 2024/1774 Art. 7(1)-(2)", "Keys are managed through their whole "
       "lifecycle", k.lifecycle, _ROTATE + " " + _BACKUP, "Archiving outside the service."),
    _c("dora/rts-7.3", "RTS 2024/1774 Art. 7(3)", "Lost, compromised or damaged keys can be "
       "replaced", k.backups, _BACKUP, "A restore drill proves it; this sees the records."),
    _c("dora/rts-7.4", "RTS 2024/1774 Art. 7(4)-(5)", "Certificates are registered and renewed "
       "before expiry", t.certificate_register,
       "Renew the listed certificates (`qrc ca` / listener TLS renewal).",
       "Certificates not in the data directory or the scanned paths."),
    _c("dora/policy", "RTS 2024/1774 Art. 6(1)", "An encryption and cryptographic controls "
       "policy is documented", None, "Write and approve the policy.",
       "Process: the policy, based on data classification and ICT risk assessment."),
    _c("dora/incidents", "DORA Art. 17-19", "ICT incidents are managed and major ones "
       "reported", None, "Keep the incident process and reports.",
       "Process: classification and reporting to the competent authority."),
    _c("dora/testing", "DORA Art. 24-27", "Resilience is tested (TLPT where required)", None,
       "Keep test plans and results.", "Process: penetration and resilience testing."),
    _c("dora/third-party", "DORA Art. 28-30", "ICT third-party risk is managed", None,
       "Keep the register of ICT providers and contracts.",
       "Process: supplier management (HSM vendor, hosting, libraries)."),
    _c("gdpr/32.1.a", "Art. 32(1)(a)", "Personal data is encrypted", t.data_encryption,
       "Rewrap the listed objects under an allowed PQ key.",
       "Which data is personal: the index knows data types, not their legal nature."),
    _c("gdpr/32.1.b", "Art. 32(1)(b)", "Ongoing integrity of processing (audit trail)",
       k.audit_integrity, _AUDIT, "Confidentiality of systems outside the service."),
    _c("gdpr/32.1.c", "Art. 32(1)(c)", "Availability can be restored after an incident",
       k.backups, _BACKUP, "That a restore works in time: run a drill."),
    _c("gdpr/32.1.d", "Art. 32(1)(d)", "Security measures are regularly tested",
       k.selftests, _KAT, "Penetration tests and reviews are process."),
    _c("gdpr/32.4", "Art. 32(4)", "People with access act only on instructions", None,
       "Keep training records and access reviews.", "Process: training, access reviews."),
)  # fmt: skip
