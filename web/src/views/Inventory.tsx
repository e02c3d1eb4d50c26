import { api, need } from "../api/client";
import { DownloadButton } from "../components/DownloadButton";
import { LoadState } from "../components/LoadState";
import { useLoad } from "../hooks/useLoad";
import { Stat } from "../components/Stat";

/**
 * The fields of `GET /inventory` (JSON) this view shows. The route declares no response
 * model (it also answers a CBOM), so the generated client types its body `unknown`; these
 * are read from `qrc.monitor.inventory.Inventory.as_dict` and checked before use.
 */
interface InventoryBody {
  generated_at: string;
  custody: string;
  summary: Record<string, number | null>;
  algorithms: {
    id: string;
    kind: string | null;
    family: string;
    status: string;
    quantum_safe: boolean;
    keys: number;
    certificates: number;
    objects: number;
    found: number;
  }[];
}

function isInventory(body: unknown): body is InventoryBody {
  if (typeof body !== "object" || body === null) return false;
  const b = body as Partial<InventoryBody>;
  return typeof b.summary === "object" && Array.isArray(b.algorithms);
}

const SUMMARY_LABELS: Record<string, string> = {
  keys: "Keys",
  deprecated_keys: "On deprecated algorithms",
  classical_keys: "Classical keys",
  certificates: "Certificates",
  encrypted_objects: "Encrypted objects",
  classical_assets_found: "Classical assets found",
  classical_endpoints: "Classical endpoints",
};

/** The cryptographic inventory: what the service holds and uses, and its CBOM. */
export function Inventory() {
  const inventory = useLoad(async () => {
    const body: unknown = need(
      await api.GET("/api/v1/security/qrc/inventory", { params: { query: { format: "json" } } }),
    );
    if (!isInventory(body)) throw new Error("the inventory's answer has an unexpected shape");
    return body;
  }, []);
  const data = inventory.data;

  return (
    <section aria-labelledby="inventory-title">
      <div className="panel-head">
        <h1 id="inventory-title">Cryptographic inventory</h1>
        <DownloadButton
          path="/inventory?format=cbom"
          filename="qrc-cbom.cdx.json"
          label="Download CBOM (CycloneDX 1.6)"
          testId="download-cbom"
        />
      </div>
      <LoadState error={inventory.error} loading={inventory.loading} what="the inventory" />
      {data && (
        <>
          <p className="muted">
            As of {new Date(data.generated_at).toLocaleString()} · root KEK custody: {data.custody}
          </p>
          <div className="stats">
            {Object.entries(SUMMARY_LABELS).map(([field, label]) => (
              <Stat key={field} label={label} value={data.summary[field] ?? "—"} />
            ))}
          </div>
          <div className="table-wrap">
            <table data-testid="inventory-table">
              <thead>
                <tr>
                  <th scope="col">Algorithm</th>
                  <th scope="col">Kind</th>
                  <th scope="col">Family</th>
                  <th scope="col">Status</th>
                  <th scope="col">Quantum safe</th>
                  <th scope="col">Keys</th>
                  <th scope="col">Certificates</th>
                  <th scope="col">Objects</th>
                  <th scope="col">Found in scans</th>
                </tr>
              </thead>
              <tbody>
                {data.algorithms.map((a) => (
                  <tr key={a.id}>
                    <th scope="row">{a.id}</th>
                    <td>{a.kind ?? "—"}</td>
                    <td>{a.family}</td>
                    <td>
                      <span className={`badge status-${a.status}`}>{a.status}</span>
                    </td>
                    <td>{a.quantum_safe ? "yes" : "no"}</td>
                    <td>{a.keys}</td>
                    <td>{a.certificates}</td>
                    <td>{a.objects}</td>
                    <td>{a.found}</td>
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
