import { useEffect, useId, useRef, type KeyboardEvent, type ReactNode } from "react";

interface Props {
  title: string;
  children?: ReactNode;
  confirmLabel: string;
  /** A destructive action: its confirm button is styled as a danger. */
  danger?: boolean;
  busy?: boolean;
  /** Focus the first field (a form) rather than Cancel (a question). */
  focusFirst?: boolean;
  error?: string | undefined;
  onConfirm: () => void;
  onCancel: () => void;
}

const FOCUSABLE = 'button, [href], input, select, textarea, [tabindex]:not([tabindex="-1"])';

/**
 * A modal confirmation: focus moves into it (the Cancel button, so Enter does not confirm
 * by accident), Tab stays inside, Escape cancels, and focus returns to where it was.
 */
export function ConfirmDialog(props: Props) {
  const { title, children, confirmLabel, danger, busy, focusFirst, error, onConfirm, onCancel } =
    props;
  const box = useRef<HTMLDivElement>(null);
  const cancel = useRef<HTMLButtonElement>(null);
  const titleId = useId();

  useEffect(() => {
    const before = document.activeElement;
    const field = focusFirst ? box.current?.querySelector<HTMLElement>("input, select") : null;
    (field ?? cancel.current)?.focus();
    return () => {
      if (before instanceof HTMLElement) before.focus();
    };
    // Only when the dialog opens (focusFirst does not change while it is open).
  }, []);

  function onKeyDown(event: KeyboardEvent<HTMLDivElement>) {
    if (event.key === "Escape") {
      event.stopPropagation();
      onCancel();
      return;
    }
    if (event.key !== "Tab" || !box.current) return;
    const items = Array.from(box.current.querySelectorAll<HTMLElement>(FOCUSABLE)).filter(
      (item) => !item.hasAttribute("disabled"),
    );
    const first = items[0];
    const last = items[items.length - 1];
    if (!first || !last) return;
    if (event.shiftKey && document.activeElement === first) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && document.activeElement === last) {
      event.preventDefault();
      first.focus();
    }
  }

  return (
    <div className="backdrop">
      <div
        ref={box}
        className="dialog"
        role="dialog"
        aria-modal="true"
        aria-labelledby={titleId}
        onKeyDown={onKeyDown}
      >
        <h2 id={titleId}>{title}</h2>
        {children}
        {error && (
          <p className="notice error" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button ref={cancel} type="button" onClick={onCancel}>
            Cancel
          </button>
          <button
            type="button"
            className={danger ? "danger" : "primary"}
            data-testid="confirm-button"
            disabled={busy}
            onClick={onConfirm}
          >
            {busy ? "Working…" : confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
