import { api, need } from "../api/client";
import type { KeyStats } from "../api/types";
import { LoadState } from "../components/LoadState";
import { Stat } from "../components/Stat";
import { useLoad } from "../hooks/useLoad";
import { AlgorithmTable } from "./overview/AlgorithmTable";
import { DataAtRest } from "./overview/DataAtRest";
import { DataInTransit } from "./overview/DataInTransit";
import { ComplianceSummary, ThreatLevel } from "./overview/ThreatAndCompliance";

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
