import { useEffect, useRef } from "react";
import { api, need } from "../api/client";
import type { Key } from "../api/types";
import { DownloadButton } from "../components/DownloadButton";
import { LoadState } from "../components/LoadState";
import { useLoad } from "../hooks/useLoad";
import { KeyActions } from "./KeyActions";

interface Props {
  keyId: string;
  canManage: boolean;
  canAudit: boolean;
  onChanged: () => void;
  onClose: () => void;
}

/** One key: its fields, its versions, and (for admins and key managers) its lifecycle actions. */
export function KeyDetail({ keyId, canManage, canAudit, onChanged, onClose }: Props) {
  const key = useLoad(
    async () =>
      need(
        await api.GET("/api/v1/security/qrc/keys/{key}", { params: { path: { key: keyId } } }),
      ),
    [keyId],
  );

  const heading = useRef<HTMLHeadingElement>(null);
  // The detail opens below the list: bring it into view and move focus to it.
  useEffect(() => {
    heading.current?.scrollIntoView?.({ block: "nearest" });
    heading.current?.focus();
  }, [keyId]);

  function changed() {
    key.reload();
    onChanged();
  }

  return (
    <section className="panel" data-testid="key-detail" aria-labelledby="key-detail-title">
      <div className="panel-head">
        <h2 id="key-detail-title" ref={heading} tabIndex={-1}>{key.data?.name ?? keyId}</h2>
        <button type="button" onClick={onClose} aria-label="Close key detail">
          Close
        </button>
      </div>
      <LoadState error={key.error} loading={key.loading && !key.data} what="this key" />
      {key.data && (
        <>
          <KeyFields value={key.data} />
          {canAudit && (
            <a className="button-link" href={`#/audit?key=${encodeURIComponent(key.data.id)}`}>
              Audit events of this key
            </a>
          )}
          {key.data.public_key && (
            <DownloadButton
              path={`/keys/${encodeURIComponent(key.data.id)}/public`}
              filename={`${key.data.name}-v${key.data.version}.pub.pem`}
              label="Download public key (PEM)"
            />
          )}
          <h3>Versions</h3>
          <Versions value={key.data} />
          {canManage && <KeyActions value={key.data} onChanged={changed} />}
        </>
      )}
    </section>
  );
}

function KeyFields({ value }: { value: Key }) {
  const rows: [string, string | number | null | undefined][] = [
    ["ID", value.id],
    ["Algorithm", value.algorithm],
    ["Purpose", value.purpose],
    ["Status", value.status],
    ["Primary version", value.version],
    ["Decrypts from version", value.min_decryption_version],
    ["Created", date(value.created_at)],
    ["Expires", date(value.expires_at)],
    ["Next rotation", date(value.next_rotation_at)],
    ["Revoked", value.revoked_at ? `${date(value.revoked_at)} (${value.revocation_reason})` : null],
    ["Destruction due", date(value.destruction_due_at)],
    ["Destroyed", date(value.destroyed_at)],
    [
      "Labels",
      Object.entries(value.labels ?? {})
        .map(([name, label]) => `${name}=${label}`)
        .join(", ") || null,
    ],
  ];
  return (
    <dl className="fields">
      {rows
        .filter(([, shown]) => shown !== null && shown !== undefined)
        .map(([label, shown]) => (
          <div key={label}>
            <dt>{label}</dt>
            <dd>{shown}</dd>
          </div>
        ))}
    </dl>
  );
}

/**
 * Versions 1..primary. The API answers the primary version and the lowest that still
 * decrypts; a version's own algorithm and creation time are not served (yet).
 */
function Versions({ value }: { value: Key }) {
  const numbers = Array.from({ length: value.version }, (_, i) => value.version - i);
  return (
    <ol className="versions" reversed>
      {numbers.map((n) => (
        <li key={n} data-testid="key-version" data-version={n}>
          <span className="version-number">v{n}</span>{" "}
          {n === value.version ? (
            <span className="badge status-active">primary</span>
          ) : n >= value.min_decryption_version ? (
            <span className="badge">decrypts and verifies</span>
          ) : (
            <span className="badge status-deactivated">retired</span>
          )}
        </li>
      ))}
    </ol>
  );
}

function date(value: string | null | undefined): string | null {
  return value ? new Date(value).toLocaleString() : null;
}
