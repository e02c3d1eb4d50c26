import type { Dashboard } from "../api/types";

type Threat = NonNullable<Dashboard["quantumThreatLevel"]>;

/** A threat indicator as `GET /dashboard` answers it. */
export function threat(overrides: Partial<Threat> = {}): Threat {
  return {
    level: "elevated",
    score: 42,
    reasons: ["3 keys fail Mosca's inequality"],
    horizons: [{ name: "median", year: 2035, yearsAway: 8.1, source: "NIST IR 8547" }],
    exposedKeys: 3,
    exposedDataTypes: 1,
    exposedObjects: 10,
    classicalKeys: 0,
    classicalHandshakes: 0,
    classicalCertificates: 0,
    deprecatedAlgorithmsInUse: [],
    migrationYears: 1,
    tlsMode: "pq-only",
    lastAssessed: "2026-12-07T12:00:00Z",
    ...overrides,
  };
}

/** A dashboard payload as `GET /dashboard` answers it (typed by the generated schema). */
export function dashboard(overrides: Partial<Dashboard> = {}): Dashboard {
  return {
    id: "5b1f0c0e-0000-4000-8000-000000000001",
    generatedAt: "2026-12-07T12:00:00Z",
    qrcAlgorithmStatus: [
      {
        algorithmName: "ML-KEM-768",
        type: "key_exchange",
        strength: 3,
        status: "active",
        policyStatus: "active",
        family: "lattice",
        standard: "FIPS 203",
        quantumSafe: true,
        keys: 4,
        performanceBenchmark: { opsPerSecond: { encaps: 21000.4 }, measuredAt: null },
        lastAuditDate: "2026-12-06T10:00:00Z",
      },
      {
        algorithmName: "X25519",
        type: "key_exchange",
        strength: null,
        status: "deprecated",
        policyStatus: "disallowed",
        family: "classical",
        standard: "RFC 7748",
        quantumSafe: false,
        keys: 0,
        performanceBenchmark: null,
        lastAuditDate: null,
      },
    ],
    keyManagementStats: {
      totalKeys: 42,
      systemKeys: 1,
      keysByState: { active: 40, compromised: 2 },
      keysOnDeprecatedAlgorithms: 3,
      keysRotatedLast30Days: 7,
      keysCreatedLast30Days: 12,
      keyGenerationRate: 0.4,
      keyCompromiseAlerts: 2,
      hsmStatus: "online",
      custody: "pkcs11",
      hsmDetail: "SoftHSM2 slot 0",
    },
    dataAtRestEncryption: {
      databaseEncryption: [
        {
          dataType: "sql-column",
          keyId: "k_1",
          keyName: "payments",
          algorithm: "X25519MLKEM768",
          algorithmStatus: "active",
          quantumSafe: true,
          protected: true,
          objects: 90,
        },
      ],
      fileStorageEncryption: [],
      backupEncryption: [
        {
          dataType: "backup",
          keyId: "k_2",
          keyName: "old",
          algorithm: "AES-256-GCM",
          algorithmStatus: "active",
          quantumSafe: false,
          protected: false,
          objects: 10,
        },
      ],
      totalObjects: 100,
      protectedObjects: 90,
      overallCoveragePercentage: 90,
    },
    dataInTransitProtection: {
      tlsMode: "hybrid-preferred",
      handshakesByGroup: [
        { group: "X25519MLKEM768", postQuantum: true, count: 75 },
        { group: "x25519", postQuantum: false, count: 25 },
      ],
      totalHandshakes: 100,
      classicalShare: 0.25,
      auditedClassicalHandshakes: 25,
      auditedRefusedHandshakes: 0,
      certificates: [
        {
          subject: "CN=qrc",
          algorithm: "ML-DSA-65",
          quantumSafe: true,
          notAfter: "2026-12-20T00:00:00Z",
          daysLeft: 12.5,
          expiring: true,
        },
      ],
      certificatesExpiringWithin30Days: 1,
    },
    quantumThreatLevel: null,
    complianceReport: {
      generatedAt: "2026-12-07T12:00:00Z",
      overallStatus: "fail",
      counts: { pass: 31, fail: 2, manual: 12, notApplicable: 5 },
      frameworks: [
        { id: "fips-203", name: "FIPS 203 (ML-KEM)", status: "pass", pass: 1, fail: 0, manual: 0, notApplicable: 0 },
      ],
      topFailing: [
        {
          id: "sp800-57-rotation",
          framework: "sp800-57",
          reference: "SP 800-57 5.3",
          title: "Keys are rotated within their cryptoperiod",
          finding: "2 keys are overdue",
          remediation: "rotate them",
        },
      ],
    },
    unavailable: ["quantumThreatLevel: qrc.monitor.risk is not in this build"],
    ...overrides,
  };
}
