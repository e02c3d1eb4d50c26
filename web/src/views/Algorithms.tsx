import { useState, type ReactNode } from "react";
import { api, need } from "../api/client";
import type { AlgorithmStatus, Role } from "../api/types";
import { LoadState } from "../components/LoadState";
import { useLoad } from "../hooks/useLoad";
import { PolicyChange } from "./PolicyChange";

/** The algorithm registry as policy has it, and (for admins) the policy itself. */
export function Algorithms({ role }: { role: Role | null }) {
  const [policyVersion, setPolicyVersion] = useState(0);
  const algorithms = useLoad(
    async () => need(await api.GET("/api/v1/security/qrc/algorithms/status")).algorithms,
    [],
  );
  return (
    <section aria-labelledby="algorithms-title">
      <h1 id="algorithms-title">Algorithms and policy</h1>
      {role === "admin" && (
        <Policy version={policyVersion}>
          {algorithms.data && (
            <PolicyChange
              algorithms={algorithms.data}
              onApplied={() => {
                algorithms.reload();
                setPolicyVersion((n) => n + 1);
              }}
            />
          )}
        </Policy>
      )}
      <LoadState error={algorithms.error} loading={algorithms.loading} what="the algorithms" />
      {algorithms.data && (
        <div className="table-wrap">
          <table data-testid="algorithms-table">
            <thead>
              <tr>
                <th scope="col">Algorithm</th>
                <th scope="col">Type</th>
                <th scope="col">Family</th>
                <th scope="col">NIST level</th>
                <th scope="col">Status</th>
                <th scope="col">Standard</th>
                <th scope="col">Provider</th>
                <th scope="col">Quantum safe</th>
                <th scope="col">Sizes (bytes)</th>
              </tr>
            </thead>
            <tbody>
              {algorithms.data.map((a) => (
                <AlgorithmRow key={a.id} value={a} />
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

function AlgorithmRow({ value: a }: { value: AlgorithmStatus }) {
  return (
    <tr>
      <th scope="row">{a.id}</th>
      <td>{a.type.replace("_", " ")}</td>
      <td>{a.family}</td>
      <td>{a.nist_level ?? "—"}</td>
      <td>
        <span className={`badge status-${a.status}`}>{a.status}</span>
      </td>
      <td>{a.standard}</td>
      <td>{a.provider}</td>
      <td>{a.quantum_safe ? "yes" : "no"}</td>
      <td className="mono">
        {Object.entries(a.sizes)
          .map(([name, n]) => `${name.replace("_", " ")} ${n}`)
          .join(", ")}
      </td>
    </tr>
  );
}

/**
 * The policy in force. There is no read route for it: an admin's dry-run update with no
 * change answers the current policy (and changes nothing).
 */
function Policy({ version, children }: { version: number; children?: ReactNode }) {
  const plan = useLoad(
    async () =>
      need(await api.POST("/api/v1/security/qrc/protocols/update", { body: { dry_run: true } })),
    [version],
  );
  const policy = plan.data?.policy as
    | {
        default_algorithms?: Record<string, string>;
        algorithm_status?: Record<string, string>;
        tls_mode?: string;
      }
    | undefined;
  return (
    <section className="panel" aria-labelledby="policy-title" data-testid="policy">
      <h2 id="policy-title">Policy</h2>
      <LoadState error={plan.error} loading={plan.loading} what="the policy" />
      {policy && (
        <dl className="fields">
          <div>
            <dt>TLS mode</dt>
            <dd>{policy.tls_mode ?? "—"}</dd>
          </div>
          {Object.entries(policy.default_algorithms ?? {}).map(([purpose, algorithm]) => (
            <div key={purpose}>
              <dt>Default for {purpose.replace("_", " ")}</dt>
              <dd>{algorithm}</dd>
            </div>
          ))}
          <div>
            <dt>Status overrides</dt>
            <dd>
              {Object.entries(policy.algorithm_status ?? {})
                .map(([id, status]) => `${id}: ${status}`)
                .join(", ") || "none"}
            </dd>
          </div>
        </dl>
      )}
      {children}
    </section>
  );
}
