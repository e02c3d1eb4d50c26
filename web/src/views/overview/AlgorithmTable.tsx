import type { AlgorithmInfo } from "../../api/types";

/** The algorithm status table: every registered algorithm, as policy has it now. */
export function AlgorithmTable({ algorithms }: { algorithms: AlgorithmInfo[] }) {
  return (
    <section className="card wide" aria-labelledby="algstatus-title">
      <h2 id="algstatus-title">Algorithm status</h2>
      <div className="table-wrap">
        <table data-testid="algorithm-status-table">
          <thead>
            <tr>
              <th scope="col">Algorithm</th>
              <th scope="col">Type</th>
              <th scope="col">NIST level</th>
              <th scope="col">Status</th>
              <th scope="col">Quantum safe</th>
              <th scope="col">Keys</th>
              <th scope="col">Benchmark (ops/s)</th>
              <th scope="col">Last used</th>
            </tr>
          </thead>
          <tbody>
            {algorithms.map((a) => (
              <tr key={a.algorithmName}>
                <th scope="row">{a.algorithmName}</th>
                <td>{a.type.replace("_", " ")}</td>
                <td>{a.strength ?? "—"}</td>
                <td>
                  <span className={`badge status-${a.policyStatus}`}>{a.policyStatus}</span>
                </td>
                <td>{a.quantumSafe ? "yes" : "no"}</td>
                <td>{a.keys}</td>
                <td className="mono wrap">{benchmark(a)}</td>
                <td>{a.lastAuditDate ? new Date(a.lastAuditDate).toLocaleDateString() : "—"}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </section>
  );
}

function benchmark(a: AlgorithmInfo): string {
  const ops = a.performanceBenchmark?.opsPerSecond;
  if (!ops) return "—";
  return Object.entries(ops)
    .map(([operation, n]) => `${operation} ${Math.round(n).toLocaleString()}`)
    .join(", ");
}
