import { useState, type FormEvent } from "react";
import { api, need } from "../api/client";
import { EmptyRow } from "../components/EmptyRow";
import { LoadState } from "../components/LoadState";
import { Pager } from "../components/Pager";
import { useCursorPages } from "../hooks/useCursorPages";
import { useLoad } from "../hooks/useLoad";

const PAGE_SIZE = 50;
const RESULTS = ["success", "failure", "denied", "invalid"];

interface Filters {
  event_type: string;
  key: string;
  actor: string;
  result: string;
  since: string;
  until: string;
}
const NO_FILTERS: Filters = { event_type: "", key: "", actor: "", result: "", since: "", until: "" };

/** Filters given in the address (`#/audit?key=k_…`, from a key's detail). */
function filtersFromAddress(): Filters {
  const query = globalThis.location?.hash.split("?")[1] ?? "";
  const given = new URLSearchParams(query);
  return {
    ...NO_FILTERS,
    key: given.get("key") ?? "",
    event_type: given.get("event_type") ?? "",
  };
}

/** A datetime-local value (the browser's zone) as RFC 3339 with a zone, as the API wants. */
function zoned(local: string): string | null {
  if (!local) return null;
  const time = new Date(local);
  return Number.isNaN(time.getTime()) ? null : time.toISOString();
}

/** The hash-chained audit log, newest first: filters, server paging, and the chain's
 * verification. */
export function Audit() {
  const [draft, setDraft] = useState<Filters>(filtersFromAddress);
  const [filters, setFilters] = useState<Filters>(draft);
  const pages = useCursorPages<string>();
  const log = useLoad(
    async () =>
      need(
        await api.GET("/api/v1/security/qrc/audit/logs", {
          params: {
            query: {
              limit: PAGE_SIZE,
              order: "desc",
              cursor: pages.cursor ?? null,
              event_type: filters.event_type || null,
              key: filters.key || null,
              actor: filters.actor || null,
              result: filters.result || null,
              since: zoned(filters.since),
              until: zoned(filters.until),
            },
          },
        }),
      ),
    [pages.cursor, filters],
  );

  function apply(event: FormEvent) {
    event.preventDefault();
    setFilters(draft);
    pages.reset();
  }

  const text = (name: keyof Filters, label: string, type = "text") => (
    <label>
      {label}
      <input
        type={type}
        value={draft[name]}
        onChange={(e) => setDraft({ ...draft, [name]: e.target.value })}
      />
    </label>
  );

  return (
    <section aria-labelledby="audit-title">
      <h1 id="audit-title">Audit log</h1>
      <ChainStatus />
      <form className="filters" onSubmit={apply} aria-label="Audit filters">
        {text("event_type", "Event type")}
        {text("key", "Key (ID or name)")}
        {text("actor", "Actor")}
        <label>
          Result
          <select
            value={draft.result}
            onChange={(e) => setDraft({ ...draft, result: e.target.value })}
          >
            <option value="">any</option>
            {RESULTS.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        {text("since", "Since", "datetime-local")}
        {text("until", "Until", "datetime-local")}
        <button type="submit" className="primary">
          Apply
        </button>
      </form>
      <LoadState error={log.error} loading={log.loading && !log.data} what="the audit log" />
      {log.data && (
        <>
          <div className="table-wrap">
            <table data-testid="audit-table">
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Time</th>
                  <th scope="col">Event</th>
                  <th scope="col">Actor</th>
                  <th scope="col">Result</th>
                  <th scope="col">Key</th>
                  <th scope="col">Details</th>
                </tr>
              </thead>
              <tbody>
                {log.data.events.map((e) => (
                  <tr key={e.seq} data-testid="audit-row" data-event-type={e.event_type}>
                    <td>{e.seq}</td>
                    <td>{new Date(e.at).toLocaleString()}</td>
                    <td>{e.event_type}</td>
                    <td className="wrap">{e.actor}</td>
                    <td>
                      <span className={`badge result-${e.result}`}>{e.result}</span>
                    </td>
                    <td className="wrap">
                      {e.key_id ? `${e.key_id}${e.key_version ? ` v${e.key_version}` : ""}` : ""}
                    </td>
                    <td className="wrap mono">
                      {Object.keys(e.details ?? {}).length ? JSON.stringify(e.details) : ""}
                    </td>
                  </tr>
                ))}
                {log.data.events.length === 0 && <EmptyRow columns={7}>No events match.</EmptyRow>}
              </tbody>
            </table>
          </div>
          <Pager
            label="Audit log"
            page={pages.page}
            next={log.data.next_cursor}
            onPrevious={pages.previous}
            onNext={pages.next}
          />
        </>
      )}
    </section>
  );
}

/** `GET /audit/verify`: the chain recomputed and its signed checkpoints checked. */
function ChainStatus() {
  const check = useLoad(
    async () => need(await api.GET("/api/v1/security/qrc/audit/verify")),
    [],
  );
  const result = check.data;
  return (
    <div className="panel chain" data-testid="chain-status" aria-live="polite">
      <h2>Chain verification</h2>
      <LoadState error={check.error} loading={check.loading} what="the chain verification" />
      {result && !check.loading && (
        <p className={result.valid ? "ok" : "bad"}>
          <strong>{result.valid ? "Intact" : "BROKEN"}</strong> — {result.events} events,{" "}
          {result.checkpoints_verified} signed checkpoints verified.
          {result.first_bad_event != null && ` First bad event: #${result.first_bad_event}.`}{" "}
          <span className="muted">{result.reason}</span>
        </p>
      )}
      <button type="button" onClick={check.reload} disabled={check.loading}>
        Verify again
      </button>
    </div>
  );
}
