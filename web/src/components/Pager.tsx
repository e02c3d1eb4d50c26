interface Props {
  label: string;
  page: number;
  /** The server's cursor of the next page, when there is one. */
  next: string | null | undefined;
  onPrevious: () => void;
  onNext: (cursor: string) => void;
}

/** Previous / next for a cursor-paged list (the server keeps the cursors' meaning). */
export function Pager({ label, page, next, onPrevious, onNext }: Props) {
  return (
    <nav className="pager" aria-label={`${label} pages`}>
      <button type="button" onClick={onPrevious} disabled={page === 0}>
        Previous
      </button>
      <span aria-live="polite">Page {page + 1}</span>
      <button type="button" onClick={() => next && onNext(next)} disabled={!next}>
        Next
      </button>
    </nav>
  );
}
