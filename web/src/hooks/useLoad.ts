import { useCallback, useEffect, useRef, useState } from "react";
import { ApiError } from "../api/client";

export interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  reload: () => void;
}

function asApiError(error: unknown): ApiError {
  return error instanceof ApiError ? error : new ApiError(500, String(error));
}

/**
 * Run `load` now and whenever `deps` change (and on `reload`); every `pollMs` if given.
 * An answer that arrives after a newer request started is dropped; polling stops at a 403
 * or 404.
 */
export function useLoad<T>(
  load: () => Promise<T>,
  deps: readonly unknown[],
  pollMs?: number,
): Loaded<T> {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<ApiError>();
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const latest = useRef(0);
  // A refusal (403) or a missing route (404) will not change by asking again: no polling.
  const settled = error?.kind === "forbidden" || error?.kind === "not-found";
  const run = useCallback(load, deps);

  useEffect(() => {
    const request = ++latest.current;
    setLoading(true);
    run().then(
      (value) => {
        if (request !== latest.current) return;
        setData(value);
        setError(undefined);
        setLoading(false);
      },
      (reason: unknown) => {
        if (request !== latest.current) return;
        setError(asApiError(reason));
        setLoading(false);
      },
    );
  }, [run, tick]);

  useEffect(() => {
    if (!pollMs || settled) return undefined;
    const timer = setInterval(() => setTick((n) => n + 1), pollMs);
    return () => clearInterval(timer);
  }, [pollMs, settled]);

  const reload = useCallback(() => setTick((n) => n + 1), []);
  return { data, error, loading, reload };
}
