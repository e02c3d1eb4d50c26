import { useCallback, useState } from "react";

/**
 * Cursor paging: the cursor of each page seen so far, so Previous goes back without the
 * server having to page backwards. `reset` goes to the first page (e.g. when filters change).
 */
export function useCursorPages<C>() {
  const [cursors, setCursors] = useState<(C | undefined)[]>([undefined]);
  const page = cursors.length - 1;
  const cursor = cursors[page];
  const next = useCallback((value: C) => setCursors((list) => [...list, value]), []);
  const previous = useCallback(
    () => setCursors((list) => (list.length > 1 ? list.slice(0, -1) : list)),
    [],
  );
  const reset = useCallback(() => setCursors([undefined]), []);
  return { page, cursor, next, previous, reset };
}
