import type { Dashboard } from "../../api/types";
import { Stat } from "../../components/Stat";

/** The quantum threat level (harvest-now-decrypt-later exposure, Mosca's inequality). */
export function ThreatLevel({ data }: { data: Dashboard }) {
  const threat = data.quantumThreatLevel;
  return (
    <section className="card" aria-labelledby="threat-title">
      <h2 id="threat-title">Quantum threat level</h2>
      {threat ? (
        <>
          <p className={`level level-${threat.level}`} data-testid="threat-level">
            {threat.level} <span className="muted">(score {threat.score})</span>
          </p>
          <ul>
            {threat.reasons.map((reason) => (
              <li key={reason}>{reason}</li>
            ))}
          </ul>
          <p className="muted">
            Exposed: {threat.exposedKeys} keys, {threat.exposedDataTypes} data types,{" "}
            {threat.exposedObjects} objects · migration ≈ {threat.migrationYears} years
          </p>
          {threat.horizons.length > 0 && (
            <details>
              <summary>Threat horizons</summary>
              <ul>
                {threat.horizons.map((h) => (
                  <li key={h.name}>
                    <strong>
                      {h.name}: {Math.round(h.year)}
                    </strong>{" "}
                    ({h.yearsAway.toFixed(1)} years away) — <span className="muted">{h.source}</span>
                  </li>
                ))}
              </ul>
            </details>
          )}
        </>
      ) : (
        <Unavailable data={data} part="quantumThreatLevel" />
      )}
    </section>
  );
}

/** The compliance summary: counts, each framework's status, the first failing controls. */
export function ComplianceSummary({ data }: { data: Dashboard }) {
  const report = data.complianceReport;
  return (
    <section className="card" aria-labelledby="compliance-title">
      <h2 id="compliance-title">Compliance</h2>
      {report ? (
        <>
          <p>
            Overall:{" "}
            <span className={`badge result-${report.overallStatus}`} data-testid="compliance-status">
              {report.overallStatus.replace("_", " ")}
            </span>
          </p>
          <div className="stats" data-testid="compliance-summary">
            <Stat label="Passed" value={report.counts.pass} tone="ok" />
            <Stat label="Failed" value={report.counts.fail} tone={report.counts.fail ? "bad" : "ok"} />
            <Stat label="Manual" value={report.counts.manual} />
            <Stat label="Not applicable" value={report.counts.notApplicable} />
          </div>
          {report.topFailing.length > 0 && (
            <details>
              <summary>Failing controls</summary>
              <ul>
                {report.topFailing.map((c) => (
                  <li key={c.id}>
                    <strong>{c.reference}</strong> {c.title}: {c.finding}
                  </li>
                ))}
              </ul>
            </details>
          )}
        </>
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
