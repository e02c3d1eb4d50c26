import { lazy, Suspense } from "react";
import type { InTransit } from "../../api/types";

// Recharts is most of the bundle's weight: load it only when a chart is shown.
const TransitCharts = lazy(() => import("./TransitCharts"));

/** Data in transit: TLS mode, handshakes by group, the classical share, expiring certificates. */
export function DataInTransit({ value }: { value: InTransit }) {
  const share = value.classicalShare;
  const expiring = value.certificates.filter((c) => c.expiring);
  return (
    <section className="card span2" aria-labelledby="transit-title">
      <h2 id="transit-title">Data in transit</h2>
      <p>
        TLS mode: <strong>{value.tlsMode ?? "not serving TLS here"}</strong> ·{" "}
        {value.totalHandshakes} handshakes · classical share:{" "}
        <strong data-testid="classical-share">
          {share === null ? "—" : `${(share * 100).toFixed(1)}%`}
        </strong>
        {value.auditedClassicalHandshakes + value.auditedRefusedHandshakes > 0 &&
          ` · audited: ${value.auditedClassicalHandshakes} classical, ${value.auditedRefusedHandshakes} refused`}
      </p>
      {value.handshakesByGroup.length > 0 ? (
        <Suspense fallback={<p className="muted">Loading charts…</p>}>
          <TransitCharts groups={value.handshakesByGroup} />
        </Suspense>
      ) : (
        <p className="muted">No handshakes recorded by this process yet.</p>
      )}
      <h3>Certificates</h3>
      {value.certificates.length === 0 ? (
        <p className="muted">No certificates found.</p>
      ) : (
        <p>
          {value.certificates.length} certificates,{" "}
          <strong className={expiring.length ? "bad" : "ok"}>
            {value.certificatesExpiringWithin30Days} expiring within 30 days
          </strong>
        </p>
      )}
      {expiring.length > 0 && (
        <ul data-testid="expiring-certificates">
          {expiring.map((c, i) => (
            <li key={`${c.subject ?? "?"}-${i}`}>
              {c.subject ?? "(no subject)"} · {c.algorithm} · expires{" "}
              {c.notAfter ? new Date(c.notAfter).toLocaleDateString() : "?"} (
              {c.daysLeft?.toFixed(0)} days)
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
