import type { ApiError } from "../api/client";

interface Props {
  error: ApiError | undefined;
  loading: boolean;
  /** What is being loaded, for the messages ("the audit log"). */
  what: string;
}

/**
 * What a view shows instead of its data: loading, a route this server does not have (404),
 * a role that may not read it (403), or another error. An unreachable or unavailable service
 * is told once, by the page's error banner; the view only says it has no data.
 */
export function LoadState({ error, loading, what }: Props) {
  if (error) {
    switch (error.kind) {
      case "not-found":
        return (
          <p className="notice" data-testid="not-available">
            {capitalize(what)} is not available on this server (its route answered 404). An
            older or newer qrc version may not serve it yet.
          </p>
        );
      case "forbidden":
        return (
          <p className="notice" data-testid="forbidden">
            Your token&apos;s role may not read {what}.
          </p>
        );
      case "unavailable":
        return <p className="notice">Could not load {what}: the service is unavailable.</p>;
      default:
        return (
          <p className="notice error" role="alert">
            Could not load {what}: {error.message}
          </p>
        );
    }
  }
  if (loading) return <p className="muted" aria-live="polite">Loading {what}…</p>;
  return null;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
