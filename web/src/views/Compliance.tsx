import { getRaw } from "../api/client";
import { DownloadButton } from "../components/DownloadButton";
import { LoadState } from "../components/LoadState";
import { useLoad } from "../hooks/useLoad";

export const COMPLIANCE_PATH = "/compliance/report";
const FORMATS = [
  ["json", "JSON"],
  ["html", "HTML"],
  ["pdf", "PDF"],
] as const;

interface ControlLike {
  id?: unknown;
  control?: unknown;
  title?: unknown;
  status?: unknown;
  result?: unknown;
}

/**
 * The compliance report (`GET /compliance/report?format=json|html|pdf`). The route is newer
 * than this page's generated client, so the JSON is read loosely: counts by status and the
 * controls' IDs and statuses where it names them. A server without it answers 404.
 */
export function Compliance() {
  const report = useLoad(async () => {
    const response = await getRaw(`${COMPLIANCE_PATH}?format=json`);
    return (await response.json()) as unknown;
  }, []);
  const controls = controlsOf(report.data);
  const counts = new Map<string, number>();
  for (const c of controls) counts.set(c.status, (counts.get(c.status) ?? 0) + 1);

  return (
    <section aria-labelledby="compliance-view-title">
      <h1 id="compliance-view-title">Compliance report</h1>
      <LoadState error={report.error} loading={report.loading} what="the compliance report" />
      {report.data !== undefined && (
        <>
          <div className="actions">
            {FORMATS.map(([format, label]) => (
              <DownloadButton
                key={format}
                path={`${COMPLIANCE_PATH}?format=${format}`}
                filename={`qrc-compliance.${format}`}
                label={`Download ${label}`}
                testId={`download-${format}`}
              />
            ))}
          </div>
          {controls.length > 0 && (
            <>
              <p>
                {[...counts].map(([status, n]) => `${n} ${status}`).join(" · ")} of{" "}
                {controls.length} controls
              </p>
              <div className="table-wrap">
                <table data-testid="compliance-table">
                  <thead>
                    <tr>
                      <th scope="col">Control</th>
                      <th scope="col">Status</th>
                    </tr>
                  </thead>
                  <tbody>
                    {controls.map((c, i) => (
                      <tr key={`${c.id}-${i}`}>
                        <td>{c.id}</td>
                        <td>
                          <span className={`badge result-${c.status}`}>{c.status}</span>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              </div>
            </>
          )}
        </>
      )}
    </section>
  );
}

function text(...values: unknown[]): string | undefined {
  const found = values.find((v) => typeof v === "string");
  return typeof found === "string" ? found : undefined;
}

/** `{controls: [{id|control|title, status|result}]}`, whatever else the report holds. */
function controlsOf(body: unknown): { id: string; status: string }[] {
  if (typeof body !== "object" || body === null) return [];
  const list = (body as { controls?: unknown }).controls;
  if (!Array.isArray(list)) return [];
  return list.flatMap((item: unknown) => {
    if (typeof item !== "object" || item === null) return [];
    const c = item as ControlLike;
    const id = text(c.id, c.control, c.title);
    const status = text(c.status, c.result);
    return id && status ? [{ id, status }] : [];
  });
}
