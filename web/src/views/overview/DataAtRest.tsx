import type { AtRest, EncryptionDetails } from "../../api/types";

const WHERE: [keyof AtRest, string][] = [
  ["databaseEncryption", "Databases and caches"],
  ["fileStorageEncryption", "File stores"],
  ["backupEncryption", "Backups"],
];

/** Data at rest: the encrypted-data index by where the data lives, and the PQ coverage. */
export function DataAtRest({ value }: { value: AtRest }) {
  const coverage = value.overallCoveragePercentage;
  return (
    <section className="card" aria-labelledby="atrest-title">
      <h2 id="atrest-title">Data at rest</h2>
      {coverage === null ? (
        <p className="muted">No encrypted objects are indexed yet.</p>
      ) : (
        <>
          <p>
            <strong data-testid="coverage">{coverage}%</strong> of {value.totalObjects} indexed
            objects are under an active quantum-safe algorithm ({value.protectedObjects}).
          </p>
          <progress max={100} value={coverage} aria-label="Quantum-safe coverage" />
        </>
      )}
      {WHERE.map(([field, label]) => {
        const rows = value[field] as EncryptionDetails[];
        if (!rows.length) return null;
        return (
          <details key={field}>
            <summary>
              {label}: {rows.reduce((n, r) => n + r.objects, 0)} objects
            </summary>
            <ul className="plain">
              {rows.map((r) => (
                <li key={`${r.dataType}/${r.keyId}/${r.algorithm}`}>
                  {r.dataType} · {r.keyName} · {r.algorithm}{" "}
                  <span className={`badge ${r.protected ? "status-active" : "status-deprecated"}`}>
                    {r.protected ? "protected" : r.algorithmStatus}
                  </span>{" "}
                  {r.objects}
                </li>
              ))}
            </ul>
          </details>
        );
      })}
    </section>
  );
}
