import { useState } from "react";
import { api, need } from "../api/client";
import { canManageKeys, type Role } from "../api/types";
import { EmptyRow } from "../components/EmptyRow";
import { LoadState } from "../components/LoadState";
import { Pager } from "../components/Pager";
import { useCursorPages } from "../hooks/useCursorPages";
import { useLoad } from "../hooks/useLoad";
import { CreateKey } from "./CreateKey";
import { KeyDetail } from "./KeyDetail";

const PAGE_SIZE = 25;
const STATUSES = [
  "pre_active",
  "active",
  "suspended",
  "deactivated",
  "compromised",
  "pending_destruction",
  "destroyed",
];
const PURPOSES = ["encryption", "signing", "key_wrapping"];

interface Filters {
  status: string;
  purpose: string;
  namePrefix: string;
}

/** The key list (paged on the server, filtered) and the selected key's detail. */
export function Keys({ role, canAudit }: { role: Role | null; canAudit: boolean }) {
  const [filters, setFilters] = useState<Filters>({ status: "", purpose: "", namePrefix: "" });
  const [selected, setSelected] = useState<string | null>(null);
  const pages = useCursorPages<string>();
  const list = useLoad(
    async () =>
      need(
        await api.GET("/api/v1/security/qrc/keys", {
          params: {
            query: {
              limit: PAGE_SIZE,
              cursor: pages.cursor ?? null,
              status: filters.status || null,
              purpose: filters.purpose || null,
              name_prefix: filters.namePrefix || null,
            },
          },
        }),
      ),
    [pages.cursor, filters],
  );

  function filter(change: Partial<Filters>) {
    setFilters((old) => ({ ...old, ...change }));
    pages.reset();
  }

  return (
    <section aria-labelledby="keys-title">
      <div className="panel-head">
        <h1 id="keys-title">Keys</h1>
        {canManageKeys(role) && (
          <CreateKey
            onCreated={(id) => {
              list.reload();
              setSelected(id);
            }}
          />
        )}
      </div>
      <form className="filters" onSubmit={(event) => event.preventDefault()}>
        <label>
          Status
          <select value={filters.status} onChange={(e) => filter({ status: e.target.value })}>
            <option value="">any</option>
            {STATUSES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Purpose
          <select value={filters.purpose} onChange={(e) => filter({ purpose: e.target.value })}>
            <option value="">any</option>
            {PURPOSES.map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </label>
        <label>
          Name starts with
          <input
            value={filters.namePrefix}
            onChange={(e) => filter({ namePrefix: e.target.value })}
          />
        </label>
      </form>
      <LoadState error={list.error} loading={list.loading && !list.data} what="the keys" />
      {list.data && (
        <>
          <div className="table-wrap">
            <table data-testid="keys-table">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Algorithm</th>
                  <th scope="col">Purpose</th>
                  <th scope="col">Status</th>
                  <th scope="col">Version</th>
                  <th scope="col">Created</th>
                </tr>
              </thead>
              <tbody>
                {list.data.keys.map((key) => (
                  <tr
                    key={key.id}
                    data-testid="key-row"
                    data-key-id={key.id}
                    className={selected === key.id ? "selected" : undefined}
                  >
                    <td>
                      <button type="button" className="link" onClick={() => setSelected(key.id)}>
                        {key.name}
                      </button>
                    </td>
                    <td>{key.algorithm}</td>
                    <td>{key.purpose}</td>
                    <td>
                      <span className={`badge status-${key.status}`}>{key.status}</span>
                    </td>
                    <td>{key.version}</td>
                    <td>{new Date(key.created_at).toLocaleString()}</td>
                  </tr>
                ))}
                {list.data.keys.length === 0 && <EmptyRow columns={6}>No keys match.</EmptyRow>}
              </tbody>
            </table>
          </div>
          <Pager
            label="Keys"
            page={pages.page}
            next={list.data.next_cursor}
            onPrevious={pages.previous}
            onNext={pages.next}
          />
        </>
      )}
      {selected && (
        <KeyDetail
          keyId={selected}
          canManage={canManageKeys(role)}
          canAudit={canAudit}
          onChanged={list.reload}
          onClose={() => setSelected(null)}
        />
      )}
    </section>
  );
}
