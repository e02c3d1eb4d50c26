import type { ReactNode } from "react";
import { api, need } from "../api/client";
import type { Dashboard, KeyStats } from "../api/types";
import { LoadState } from "../components/LoadState";
import { useLoad } from "../hooks/useLoad";
import { AlgorithmTable } from "./overview/AlgorithmTable";
import { DataAtRest } from "./overview/DataAtRest";
import { DataInTransit } from "./overview/DataInTransit";

export const OVERVIEW_POLL_MS = 30_000;

/** The story's QRCSecurityDashboard, its seven parts, from one `GET /dashboard`. */
export function Overview() {
  const board = useLoad(
    async () => need(await api.GET("/api/v1/security/qrc/dashboard")),
    [],
    OVERVIEW_POLL_MS,
  );
  const data = board.data;
  return (
    <section aria-labelledby="overview-title">
      <div className="panel-head">
        <h1 id="overview-title">Overview</h1>
        {data && (
          <span className="muted">
            As of {new Date(data.generatedAt).toLocaleString()}{" "}
            <button type="button" onClick={board.reload}>
              Refresh
            </button>
          </span>
        )}
      </div>
      <LoadState error={board.error} loading={board.loading && !data} what="the dashboard" />
      {data && (
        <div className="grid">
          <KeyManagement stats={data.keyManagementStats} />
          <ThreatLevel data={data} />
          <ComplianceSummary data={data} />
          <DataAtRest value={data.dataAtRestEncryption} />
          <DataInTransit value={data.dataInTransitProtection} />
          <AlgorithmTable algorithms={data.qrcAlgorithmStatus} />
        </div>
      )}
    </section>
  );
}

function KeyManagement({ stats }: { stats: KeyStats }) {
  return (
    <section className="card" aria-labelledby="keystats-title">
      <h2 id="keystats-title">Key management</h2>
      <div className="stats">
        <Stat label="Keys" value={<span data-testid="total-keys">{stats.totalKeys}</span>} />
        <Stat label="Rotated (30 days)" value={stats.keysRotatedLast30Days} />
        <Stat label="Created (30 days)" value={stats.keysCreatedLast30Days} />
        <Stat label="New keys per day" value={stats.keyGenerationRate} />
        <Stat
          label="Compromise alerts"
          value={stats.keyCompromiseAlerts}
          tone={stats.keyCompromiseAlerts ? "bad" : "ok"}
        />
        <Stat
          label="On deprecated algorithms"
          value={stats.keysOnDeprecatedAlgorithms}
          tone={stats.keysOnDeprecatedAlgorithms ? "warn" : "ok"}
        />
      </div>
      <p>
        HSM / root KEK ({stats.custody}):{" "}
        <span className={`badge hsm-${stats.hsmStatus}`} data-testid="hsm-status">
          {stats.hsmStatus}
        </span>{" "}
        <span className="muted">{stats.hsmDetail}</span>
      </p>
      <p className="muted">
        By state:{" "}
        {Object.entries(stats.keysByState)
          .map(([state, n]) => `${state} ${n}`)
          .join(" · ") || "no keys"}
        {stats.systemKeys > 0 && ` (including ${stats.systemKeys} of the service's own)`}
      </p>
    </section>
  );
}

function ThreatLevel({ data }: { data: Dashboard }) {
  const threat = data.quantumThreatLevel;
  return (
    <section className="card" aria-labelledby="threat-title">
      <h2 id="threat-title">Quantum threat level</h2>
      {threat ? (
        <>
          <p className={`level level-${threat.level.toLowerCase()}`} data-testid="threat-level">
            {threat.level}
          </p>
          <ul>
            {(threat.reasons ?? []).map((reason) => (
              <li key={reason}>{reason}</li>
            ))}
          </ul>
        </>
      ) : (
        <Unavailable data={data} part="quantumThreatLevel" />
      )}
    </section>
  );
}

function ComplianceSummary({ data }: { data: Dashboard }) {
  const report = data.complianceReport;
  return (
    <section className="card" aria-labelledby="compliance-title">
      <h2 id="compliance-title">Compliance</h2>
      {report ? (
        <div className="stats" data-testid="compliance-summary">
          <Stat label="Controls passed" value={report.passed} tone="ok" />
          <Stat label="Failed" value={report.failed} tone={report.failed ? "bad" : "ok"} />
          <Stat label="Not applicable" value={report.notApplicable} />
        </div>
      ) : (
        <Unavailable data={data} part="complianceReport" />
      )}
    </section>
  );
}

/** A part the server did not compute, with the reason it gave (`unavailable`). */
function Unavailable({ data, part }: { data: Dashboard; part: string }) {
  const why = data.unavailable.find((line) => line.startsWith(part));
  return (
    <p className="notice" data-testid="not-available">
      Not available on this server{why ? `: ${why.slice(part.length).replace(/^:\s*/, "")}` : "."}
    </p>
  );
}

export function Stat(props: { label: string; value: ReactNode; tone?: string }) {
  return (
    <div className={`stat ${props.tone ?? ""}`}>
      <div className="stat-value">{props.value}</div>
      <div className="stat-label">{props.label}</div>
    </div>
  );
}
