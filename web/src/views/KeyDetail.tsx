import { useEffect, useRef } from "react";
import { api, ApiError, need } from "../api/client";
import type { Key, KeyVersion } from "../api/types";
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
          {canManage && !key.data.system && <KeyActions value={key.data} onChanged={changed} />}
          {key.data.system && (
            <p className="muted" data-testid="system-key">
              One of the service&apos;s own keys: it is rotated and retired by its own audited
              procedures, not from here.
            </p>
          )}
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
 * Every version, newest first, with its algorithm and what it may still do
 * (`GET …/keys/{key}/versions`). A service without that route (404) gets versions 1..primary,
 * told apart by the key's minimum decryption version alone.
 */
function Versions({ value }: { value: Key }) {
  const versions = useLoad(
    async () => {
      try {
        const answer = await api.GET("/api/v1/security/qrc/keys/{key}/versions", {
          params: { path: { key: value.id } },
        });
        return need(answer).versions;
      } catch (error) {
        if (error instanceof ApiError && error.kind === "not-found") return guessed(value);
        throw error;
      }
    },
    [value.id, value.version, value.min_decryption_version, value.status],
  );
  if (!versions.data) {
    return <LoadState error={versions.error} loading={versions.loading} what="the versions" />;
  }
  return (
    <ol className="versions" reversed>
      {versions.data.map((v) => (
        <li key={v.version} data-testid="key-version" data-version={v.version}>
          <span className="version-number">v{v.version}</span>{" "}
          <span className={`badge ${STATE_CLASS[v.state] ?? ""}`}>{STATE_TEXT[v.state] ?? v.state}</span>{" "}
          {v.algorithm && <span className="muted">{v.algorithm}</span>}{" "}
          {v.created_at && <span className="muted">{date(v.created_at)}</span>}
        </li>
      ))}
    </ol>
  );
}

const STATE_TEXT: Record<string, string> = {
  primary: "primary",
  active: "decrypts and verifies",
  retired: "retired",
  destroyed: "destroyed",
};
const STATE_CLASS: Record<string, string> = {
  primary: "status-active",
  retired: "status-deactivated",
  destroyed: "status-destroyed",
};

function guessed(value: Key): KeyVersion[] {
  return Array.from({ length: value.version }, (_, i) => value.version - i).map((n) => ({
    version: n,
    algorithm: "",
    created_at: "",
    state:
      n === value.version ? "primary" : n >= value.min_decryption_version ? "active" : "retired",
  }));
}

function date(value: string | null | undefined): string | null {
  return value ? new Date(value).toLocaleString() : null;
}
