import { useState } from "react";
import { api, need } from "../api/client";
import { DownloadButton } from "../components/DownloadButton";
import { LoadState } from "../components/LoadState";
import { Stat } from "../components/Stat";
import { useLoad } from "../hooks/useLoad";

const FORMATS = [
  ["json", "JSON"],
  ["html", "HTML"],
  ["pdf", "PDF"],
] as const;

/**
 * The fields of `GET /compliance/report?format=json` this view shows. The route answers
 * three media types and declares no model, so the generated client types the body
 * `unknown`; these follow `qrc.monitor.compliance.ComplianceReport.as_dict`, checked first.
 */
interface Report {
  generated_at: string;
  overall_status: string;
  counts: { pass: number; fail: number; manual: number; notApplicable: number };
  frameworks: { id: string; name: string; status: string }[];
  controls: {
    id: string;
    framework: string;
    reference: string;
    title: string;
    outcome: string;
    finding: string;
    remediation: string | null;
  }[];
}

function isReport(body: unknown): body is Report {
  if (typeof body !== "object" || body === null) return false;
  const r = body as Partial<Report>;
  return typeof r.counts === "object" && Array.isArray(r.frameworks) && Array.isArray(r.controls);
}

/** The compliance report: every control evaluated now, and the report as JSON, HTML or PDF. */
export function Compliance() {
  const [framework, setFramework] = useState("");
  const report = useLoad(async () => {
    const body: unknown = need(
      await api.GET("/api/v1/security/qrc/compliance/report", {
        params: { query: { format: "json", framework: framework ? [framework] : null } },
      }),
    );
    if (!isReport(body)) throw new Error("the report's answer has an unexpected shape");
    return body;
  }, [framework]);
  const data = report.data;
  const query = framework ? `&framework=${encodeURIComponent(framework)}` : "";

  return (
    <section aria-labelledby="compliance-view-title">
      <h1 id="compliance-view-title">Compliance report</h1>
      <LoadState error={report.error} loading={report.loading && !data} what="the compliance report" />
      {data && (
        <>
          <div className="filters">
            <label>
              Framework
              <select value={framework} onChange={(e) => setFramework(e.target.value)}>
                <option value="">all</option>
                {data.frameworks.map((f) => (
                  <option key={f.id} value={f.id}>
                    {f.name}
                  </option>
                ))}
              </select>
            </label>
            {FORMATS.map(([format, label]) => (
              <DownloadButton
                key={format}
                path={`/compliance/report?format=${format}${query}`}
                filename={`qrc-compliance${framework ? `-${framework}` : ""}.${format}`}
                label={`Download ${label}`}
                testId={`download-${format}`}
              />
            ))}
          </div>
          <p>
            Overall: <span className={`badge result-${data.overall_status}`}>{data.overall_status}</span>{" "}
            <span className="muted">as of {new Date(data.generated_at).toLocaleString()}</span>
          </p>
          <div className="stats">
            <Stat label="Passed" value={data.counts.pass} tone="ok" />
            <Stat label="Failed" value={data.counts.fail} tone={data.counts.fail ? "bad" : "ok"} />
            <Stat label="Manual" value={data.counts.manual} />
            <Stat label="Not applicable" value={data.counts.notApplicable} />
          </div>
          <div className="table-wrap">
            <table data-testid="compliance-table">
              <thead>
                <tr>
                  <th scope="col">Control</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Finding</th>
                  <th scope="col">Remediation</th>
                </tr>
              </thead>
              <tbody>
                {data.controls.map((c) => (
                  <tr key={c.id}>
                    <td className="wrap">
                      <strong>{c.reference}</strong> {c.title}
                    </td>
                    <td>
                      <span className={`badge result-${c.outcome}`}>{c.outcome.replace("_", " ")}</span>
                    </td>
                    <td className="wrap">{c.finding}</td>
                    <td className="wrap">{c.remediation ?? ""}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </section>
  );
}
