import { useEffect, useRef, useState } from "react";
import { api, ApiError, need } from "../api/client";
import type { SecurityEvent } from "../api/types";
import { EmptyRow } from "../components/EmptyRow";
import { LoadState } from "../components/LoadState";

export const EVENTS_POLL_MS = 5_000;
const PAGE = 500;
const KEEP = 200;
const SEVERITIES = ["low", "medium", "high", "critical"];

/**
 * Security events, live: the first load reads every page, then every few seconds only the
 * events after the last one seen (`after`). The newest are shown first; the last 200 kept.
 */
export function Events({ pollMs = EVENTS_POLL_MS }: { pollMs?: number }) {
  const [severity, setSeverity] = useState("");
  const [events, setEvents] = useState<SecurityEvent[]>([]);
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const [updated, setUpdated] = useState<Date>();
  const last = useRef<number | null>(null);

  useEffect(() => {
    let live = true;
    last.current = null;
    setEvents([]);
    setLoading(true);

    let polling = false;

    async function poll() {
      if (polling) return; // a slow answer: the next tick asks again, from the same place
      polling = true;
      try {
        const fresh: SecurityEvent[] = [];
        for (;;) {
          const page = need(
            await api.GET("/api/v1/security/qrc/security/events", {
              params: { query: { limit: PAGE, after: last.current, severity: severity || null } },
            }),
          );
          if (!live) return;
          fresh.push(...page.events);
          const lastEvent = page.events[page.events.length - 1];
          if (lastEvent) last.current = lastEvent.id;
          if (page.next_after == null || page.events.length === 0) break;
        }
        setEvents((old) => [...fresh.reverse(), ...old].slice(0, KEEP));
        setError(undefined);
        setUpdated(new Date());
      } catch (failure) {
        const error = failure instanceof ApiError ? failure : new ApiError(500, String(failure));
        // Asking again will not change a refusal or a missing route: stop polling.
        if (error.kind === "forbidden" || error.kind === "not-found") clearInterval(timer);
        if (live) setError(error);
      } finally {
        polling = false;
        if (live) setLoading(false);
      }
    }

    const timer = setInterval(() => void poll(), pollMs);
    void poll();
    return () => {
      live = false;
      clearInterval(timer);
    };
  }, [severity, pollMs]);

  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title">Security events</h1>
      <div className="filters">
        <label>
          Severity
          <select value={severity} onChange={(e) => setSeverity(e.target.value)}>
            <option value="">any</option>
            {SEVERITIES.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <span className="muted" aria-live="polite">
          Live, every {pollMs / 1000} s
          {updated && ` · updated ${updated.toLocaleTimeString()}`}
        </span>
      </div>
      <LoadState error={error} loading={loading} what="the security events" />
      {(events.length > 0 || (!loading && !error)) && (
        <div className="table-wrap">
          <table data-testid="events-table">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Severity</th>
                <th scope="col">Event</th>
                <th scope="col">Source</th>
                <th scope="col">Key / algorithm</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {events.map((e) => (
                <tr key={e.id} data-testid="event-row">
                  <td>{new Date(e.at).toLocaleString()}</td>
                  <td>
                    <span className={`badge severity-${e.severity}`}>{e.severity}</span>
                  </td>
                  <td>{e.event_type}</td>
                  <td>{e.source}</td>
                  <td className="wrap">{[e.key_id, e.algorithm].filter(Boolean).join(" · ")}</td>
                  <td className="wrap mono">
                    {Object.keys(e.details ?? {}).length ? JSON.stringify(e.details) : ""}
                  </td>
                </tr>
              ))}
              {events.length === 0 && <EmptyRow columns={6}>No security events.</EmptyRow>}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
